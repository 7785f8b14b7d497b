//! The gateway: mp3conv's one public entry point (a Spin HTTP component).
//!
//! The entry point is a thin adapter; the logic lives in [`api`], plain Rust that is tested
//! natively.

pub mod api;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component {
    use spin_sdk::http::{Request, Response};
    use spin_sdk::http_component;

    #[http_component]
    fn handle(request: Request) -> Response {
        let reply = crate::api::handle(&request.method().to_string(), request.path());
        Response::builder()
            .status(reply.status)
            .header("content-type", reply.content_type)
            .body(reply.body)
            .build()
    }
}
