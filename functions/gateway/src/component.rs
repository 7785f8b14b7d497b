//! The Spin entry point: adapts Spin's request to [`crate::gateway`] (which decides
//! everything), builds the WASI-backed worker, auth and database it is served with, and sends
//! the answer back, streaming an MP3 as it arrives.

use bytes::Bytes;
use futures::StreamExt as _;
use mp3conv_kit::reply;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::ApiError;
use crate::gateway::{self, Answer, Gateway, Request};
use crate::spin::{SpinAuth, SpinWorker};

#[http_component]
async fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
    let trace = reply::trace(&incoming);
    let request = Request {
        method: incoming.method().to_string(),
        path_with_query: incoming.path_with_query().unwrap_or_default(),
        headers: reply::headers(&incoming),
        body: incoming.into_body_stream().map(|chunk| {
            chunk
                .map(Bytes::from)
                .map_err(|err| std::io::Error::other(err.to_debug_string()))
        }),
    };
    let idempotency_key = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"))
        .map(|(_, value)| value.clone());
    let route = match gateway::route(&request) {
        Ok(route) => route,
        Err(answer) => return reply::send(out, answer).await,
    };
    let config = match Config::load(|name| spin_sdk::variables::get(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            let err = ApiError::Internal(format!("configuration: {err}"));
            return reply::send(out, err.logged_reply(&trace)).await;
        }
    };
    let open_db = || mp3conv_sql::open(config.database.sql()).map_err(|err| err.message);
    let gateway = Gateway {
        config: &config,
        worker: &SpinWorker {
            config: &config,
            trace: &trace,
            idempotency_key: idempotency_key.as_deref(),
            limits: Default::default(),
            replayed: Default::default(),
        },
        auth: &SpinAuth {
            config: &config,
            trace: &trace,
        },
        db: &open_db,
        trace: &trace,
        now: OffsetDateTime::now_utc(),
    };
    match gateway.serve(route, request).await {
        Answer::Reply(answer) => reply::send(out, answer).await,
        Answer::Stream(audio) => reply::stream_back(out, audio.body, audio.headers),
    }
}
