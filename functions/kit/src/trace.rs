//! The trace a request carries: the host sets `x-request-id` and W3C `traceparent` on every
//! incoming request; a function reads them once into a [`Trace`] and every outbound call
//! forwards them, so one upload can be followed from the gateway to the worker, the queue and
//! the notifier.

pub use mp3conv_contract::trace::{REQUEST_ID, TRACEPARENT};
use mp3conv_contract::trace::{TraceParent, is_valid_request_id};

/// The trace headers of the request being served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    request_id: Option<String>,
    traceparent: Option<String>,
    trace_id: Option<String>,
}

impl Trace {
    /// Reads the two headers through `header` (a lookup by lower-case name). A request id
    /// that is not a plain token, or a `traceparent` that is not well-formed
    /// ([`mp3conv_contract::trace`] decides both), is ignored, so nothing a client sent can
    /// break an outbound request's headers or a log line.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Trace {
        let request_id = header(REQUEST_ID)
            .map(str::trim)
            .filter(|id| is_valid_request_id(id))
            .map(str::to_owned);
        let parsed = header(TRACEPARENT)
            .and_then(|value| TraceParent::parse(value).ok().map(|p| (value, p)));
        Trace {
            request_id,
            // Written anew (version 00): a later version's tail is not passed on.
            traceparent: parsed.as_ref().map(|(_, p)| p.to_string()),
            trace_id: parsed.map(|(_, p)| p.trace_id().to_string()),
        }
    }

    /// The request id, if the request had one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The `traceparent` value, if the request had a well-formed one.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The 32-hex-digit trace id of the `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// What log lines name the request by: the trace id, else the request id, else `-`.
    pub fn log_id(&self) -> &str {
        self.trace_id().or(self.request_id()).unwrap_or("-")
    }

    /// Headers for a call to another part of mp3conv: both.
    pub fn internal_headers(&self) -> Vec<(String, String)> {
        let mut headers = self.external_headers();
        if let Some(id) = &self.request_id {
            headers.push((REQUEST_ID.to_owned(), id.clone()));
        }
        headers
    }

    /// Headers for a call outside mp3conv (webhooks, the email API): only `traceparent`; the
    /// internal request id stays inside.
    pub fn external_headers(&self) -> Vec<(String, String)> {
        self.traceparent
            .iter()
            .map(|value| (TRACEPARENT.to_owned(), value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn trace(pairs: &[(&str, &str)]) -> Trace {
        Trace::from_headers(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    #[test]
    fn forwards_both_inside_and_only_traceparent_outside() {
        let t = trace(&[(REQUEST_ID, "req-1"), (TRACEPARENT, PARENT)]);
        assert_eq!(t.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(t.log_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.internal_headers(),
            vec![
                (TRACEPARENT.to_owned(), PARENT.to_owned()),
                (REQUEST_ID.to_owned(), "req-1".to_owned())
            ]
        );
        assert_eq!(
            t.external_headers(),
            vec![(TRACEPARENT.to_owned(), PARENT.to_owned())]
        );
    }

    #[test]
    fn drops_what_cannot_be_forwarded() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(trace(&[(TRACEPARENT, bad)]).traceparent(), None, "{bad}");
        }
        // A later version may add fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x";
        assert!(trace(&[(TRACEPARENT, later)]).trace_id().is_some());
        for bad in ["two words", "line\r\nbreak", &"x".repeat(300)] {
            assert_eq!(trace(&[(REQUEST_ID, bad)]).request_id(), None, "{bad}");
        }
        let none = trace(&[]);
        assert_eq!(none.log_id(), "-");
        assert!(none.internal_headers().is_empty());
    }
}
