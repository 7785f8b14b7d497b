//! The gateway's routes. So far: the service description at `/`, and JSON errors for
//! everything else; the job routes come with the gateway issue.

use serde_json::json;

/// A response, independent of the HTTP library that carries it.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "error": { "code": code, "message": message } }),
        )
    }
}

/// Answers one request.
pub fn handle(method: &str, path: &str) -> Reply {
    match (method, path) {
        ("GET" | "HEAD", "/") => Reply::json(
            200,
            json!({
                "service": "mp3conv",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Turns videos into MP3 files.",
            }),
        ),
        (_, "/") => Reply::error(405, "method_not_allowed", "use GET on /"),
        _ => Reply::error(404, "not_found", "no such route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn describes_the_service() {
        let reply = handle("GET", "/");
        assert_eq!(reply.status, 200);
        assert_eq!(body(&reply)["service"], "mp3conv");
    }

    #[test]
    fn unknown_routes_and_methods_are_json_errors() {
        for (method, path, status, code) in [
            ("GET", "/nope", 404, "not_found"),
            ("POST", "/", 405, "method_not_allowed"),
        ] {
            let reply = handle(method, path);
            assert_eq!(reply.status, status);
            assert_eq!(reply.content_type, "application/json");
            assert_eq!(body(&reply)["error"]["code"], code);
        }
    }
}
