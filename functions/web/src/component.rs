//! The Spin entry point: the request's method, path and headers to [`crate::serve::respond`],
//! its answer back.

use mp3conv_kit::reply;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let answer = crate::serve::respond(
        &request.method().to_string(),
        &request.path_with_query().unwrap_or_default(),
        &reply::headers(&request),
    );
    reply::send(out, answer).await;
}
