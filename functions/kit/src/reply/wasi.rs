//! The WASI half of replies and bodies: thin calls on Spin's request and response types.

use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::StreamError;

use super::{BodyError, Reply, drain_stream, read_stream};
use crate::http::Response;

/// Sends `reply`.
pub async fn send(out: ResponseOutparam, reply: Reply) {
    let response = head(reply.status, reply.headers);
    // The client may be gone: nothing to do about it.
    let _ = out.set_with_body(response, reply.body).await;
}

/// The most bytes one splice moves, and so the largest piece the host's server takes at once.
/// The host counts each piece taken as progress against its request time limit, so pieces stay
/// small enough for slow clients to keep taking them (spin-sdk's stream moved 16 KiB at a
/// time), and the host holds a few of them per download, not a few of the peer's frames.
const SPLICE_CHUNK: u64 = 32 * 1024;

/// Sends `response`'s status with `headers` (the caller picks which of the peer's to pass
/// on), then its body as it arrives: the host splices it from the peer's stream into the
/// client's, so the bytes never pass through this component's memory and nothing is held.
/// A body the peer breaks off is left unfinished, so the client sees a broken body rather
/// than a short one that looks complete.
pub fn stream_back(out: ResponseOutparam, response: Response, headers: Vec<(String, String)>) {
    let outgoing = head(response.status(), headers);
    let Ok(body) = outgoing.body() else {
        return;
    };
    out.set(outgoing);
    let Ok(sink) = body.write() else {
        return;
    };
    let Ok(incoming) = response.into_incoming().consume() else {
        return;
    };
    let Ok(source) = incoming.stream() else {
        return;
    };
    let ended = loop {
        match sink.blocking_splice(&source, SPLICE_CHUNK) {
            Ok(_) => {}
            // The peer's body ended, or the client went away: the flush below fails if it did.
            Err(StreamError::Closed) => break true,
            Err(StreamError::LastOperationFailed(_)) => break false,
        }
    };
    // Streams before their bodies.
    drop(source);
    drop(incoming);
    let flushed = ended && sink.blocking_flush().is_ok();
    drop(sink);
    if flushed {
        // The client may be gone, or the body shorter than its length: nothing more to do.
        let _ = OutgoingBody::finish(body, None);
    }
}

fn head(status: u16, headers: Vec<(String, String)>) -> OutgoingResponse {
    let fields: Vec<(String, Vec<u8>)> = super::with_safe_defaults(headers)
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let fields = Fields::from_list(&fields).unwrap_or_else(|err| {
        eprintln!("reply: dropping invalid headers: {err:?}");
        Fields::new()
    });
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(status).is_err() {
        let _ = response.set_status_code(500);
    }
    response
}

/// Reads the request body, at most `limit` bytes; see [`super::read_stream`].
pub async fn read_body(
    request: IncomingRequest,
    limit: usize,
    drain_up_to: usize,
) -> Result<Vec<u8>, BodyError> {
    let declared = header(&request, "content-length");
    read_stream(
        request.into_body_stream(),
        declared.as_deref(),
        limit,
        drain_up_to,
    )
    .await
}

/// Reads and drops a refused body, up to about `up_to` bytes.
pub async fn drain(request: IncomingRequest, up_to: usize) {
    drain_stream(request.into_body_stream(), up_to).await;
}

/// The first value of the request header `name`, as text.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .first()
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Every request header, names lower-cased, values as text.
pub fn headers(request: &IncomingRequest) -> Vec<(String, String)> {
    request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect()
}

/// The request's trace headers ([`crate::trace::Trace`]).
pub fn trace(request: &IncomingRequest) -> crate::trace::Trace {
    let headers = headers(request);
    crate::trace::Trace::from_headers(|name| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    })
}
