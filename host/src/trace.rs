//! Each request's place in a trace: its `x-request-id` and W3C `traceparent`, kept from the
//! client when valid (the rules are `mp3conv_contract::trace`'s), made here otherwise, and
//! handed to the component as request headers so it can pass them on.

use http::{HeaderMap, HeaderName, HeaderValue};
use mp3conv_contract::trace::{self, TraceParent};

const REQUEST_ID: HeaderName = HeaderName::from_static(trace::REQUEST_ID);
const TRACEPARENT: HeaderName = HeaderName::from_static(trace::TRACEPARENT);
const TRACESTATE: HeaderName = HeaderName::from_static(trace::TRACESTATE);

/// A request's id and trace context, as the host logs them and the component receives them.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The client's `x-request-id` when sane, a fresh one otherwise.
    pub request_id: String,
    /// The host's span in the trace: the child of a valid incoming `traceparent`, or a new
    /// trace.
    pub trace: TraceParent,
    /// Whether the incoming trace was kept (its `tracestate` belongs to it only then).
    continued: bool,
}

impl RequestContext {
    /// The context of a request with `headers`.
    pub fn from_headers(headers: &HeaderMap) -> RequestContext {
        let request_id = headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .filter(|id| trace::is_valid_request_id(id))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let incoming = headers
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| TraceParent::parse(value).ok());
        let trace = match incoming {
            Some(parent) => parent.child(random()),
            None => TraceParent::start(random()),
        };
        RequestContext {
            request_id,
            trace,
            continued: incoming.is_some(),
        }
    }

    /// Puts the request id and the host's `traceparent` into the headers the component
    /// receives; a `tracestate` goes along only with the trace it came with.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert(REQUEST_ID, value);
        }
        if let Ok(value) = HeaderValue::from_str(&self.trace.to_string()) {
            headers.insert(TRACEPARENT, value);
        }
        if !self.continued {
            headers.remove(TRACESTATE);
        }
    }

    /// The trace id, for log fields.
    pub fn trace_id(&self) -> trace::TraceId {
        self.trace.trace_id()
    }
}

/// Random bytes for ids. The OS source does not fail once a system is up; if it ever did,
/// ids would repeat (valid, merely not unique) rather than fail requests.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    if let Err(err) = getrandom::fill(&mut bytes) {
        tracing::warn!("no random bytes for a trace id: {err}");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let kept = RequestContext::from_headers(&headers(&[("x-request-id", "abc-123")]));
        assert_eq!(kept.request_id, "abc-123");
        let replaced =
            RequestContext::from_headers(&headers(&[("x-request-id", "bad id with spaces")]));
        assert_eq!(replaced.request_id.len(), 32);
        assert_ne!(
            replaced.request_id,
            RequestContext::from_headers(&HeaderMap::new()).request_id
        );
    }

    #[test]
    fn a_valid_trace_is_continued_with_the_hosts_span_and_its_state() {
        let context = RequestContext::from_headers(&headers(&[
            ("traceparent", INCOMING),
            ("tracestate", "vendor=1"),
        ]));
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut forwarded = headers(&[("traceparent", INCOMING), ("tracestate", "vendor=1")]);
        context.apply(&mut forwarded);
        let sent = forwarded["traceparent"].to_str().unwrap();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent != INCOMING,
            "the host names its own span: {sent}"
        );
        assert_eq!(forwarded["tracestate"], "vendor=1");
        assert_eq!(forwarded["x-request-id"], context.request_id.as_str());
    }

    #[test]
    fn an_invalid_or_missing_trace_starts_a_new_one_without_state() {
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        for incoming in [
            &[("traceparent", zero), ("tracestate", "vendor=1")][..],
            &[("tracestate", "vendor=1")][..],
        ] {
            let mut forwarded = headers(incoming);
            let context = RequestContext::from_headers(&forwarded);
            context.apply(&mut forwarded);
            let sent = TraceParent::parse(forwarded["traceparent"].to_str().unwrap()).unwrap();
            assert_eq!(sent.trace_id(), context.trace_id());
            assert_ne!(
                sent.trace_id().to_string(),
                "00000000000000000000000000000000"
            );
            assert!(forwarded.get("tracestate").is_none());
        }
        let one = RequestContext::from_headers(&HeaderMap::new());
        let other = RequestContext::from_headers(&HeaderMap::new());
        assert_ne!(one.trace_id(), other.trace_id(), "fresh traces are random");
    }
}
