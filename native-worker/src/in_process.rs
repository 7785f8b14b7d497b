//! The worker's API called in process, by a host that embeds the worker (`mp3conv up`).
//!
//! Shutdown waits for the calls being answered, as it waits for the listener's connections;
//! once it has begun, new calls get 503 `unavailable`, as a closed listener refuses them. As
//! hyper's server does, a 1xx, 204 or 304 carries no `Content-Length`. A handler that panics
//! is answered 500 `internal`; a body that panics as it streams breaks off (an error, as a
//! dropped connection would be).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::IntoResponse as _;
use futures::FutureExt as _;
use tower::ServiceExt as _;

use crate::{Error, State, routes};

/// The routes as a function: the same token check and limits as on the listener, without a
/// socket between.
pub(crate) fn handler<B>(
    state: Arc<State>,
) -> impl Fn(http::Request<B>) -> futures::future::BoxFuture<'static, http::Response<axum::body::Body>>
+ Send
+ Sync
+ 'static
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let router = routes::router(Arc::clone(&state));
    move |request| {
        if state.shutdown.is_cancelled() {
            let refused = Error::unavailable("worker", "the worker is shutting down");
            return Box::pin(std::future::ready(refused.into_response()));
        }
        let answered = router.clone().oneshot(request.map(axum::body::Body::new));
        Box::pin(state.in_process.track_future(async move {
            // A handler that panics ends its call as it would end its connection on the
            // listener, not the caller's task with it.
            let mut response = match std::panic::AssertUnwindSafe(answered).catch_unwind().await {
                Ok(Ok(response)) => response,
                Err(_) => Error::internal("a request handler panicked").into_response(),
            };
            let status = response.status();
            if status.is_informational()
                || status == http::StatusCode::NO_CONTENT
                || status == http::StatusCode::NOT_MODIFIED
            {
                response.headers_mut().remove(http::header::CONTENT_LENGTH);
            }
            response.map(|body| axum::body::Body::new(PanicsBreak(Some(body))))
        }))
    }
}

/// A body that ends in an error where its inner body panics, as a connection the panic took
/// down would, instead of unwinding into whoever reads it (in process, the host's task for the
/// caller's request). Once broken it gives nothing more.
struct PanicsBreak(Option<axum::body::Body>);

impl http_body::Body for PanicsBreak {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Pin::new(inner).poll_frame(cx)
        }));
        match polled {
            Ok(poll) => poll,
            Err(_) => {
                self.0 = None;
                tracing::error!("a response body panicked as it streamed");
                Poll::Ready(Some(Err(axum::Error::new("the response body panicked"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[tokio::test]
    async fn a_body_that_panics_breaks_off_instead() {
        let pieces = futures::stream::iter(0..3).map(|n| {
            assert!(n < 2, "the third piece panics");
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a' + n as u8]))
        });
        let mut body = PanicsBreak(Some(axum::body::Body::from_stream(pieces)));
        let mut seen = Vec::new();
        let mut broke = false;
        while let Some(frame) = std::future::poll_fn(|cx| {
            http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
        })
        .await
        {
            match frame {
                Ok(frame) => seen.push(frame.into_data().unwrap()),
                Err(_) => broke = true,
            }
        }
        assert_eq!(seen, ["a", "b"]);
        assert!(broke, "the panic is an error for the reader");
        assert!(http_body::Body::is_end_stream(&body));
    }
}
