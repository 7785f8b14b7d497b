//! How many requests the host runs at once: a host-wide cap and a per-client cap, each in two
//! lanes. Event streams (Server-Sent Events) hold an instance for minutes while doing almost
//! no work, so they have slots of their own: open streams never starve ordinary requests,
//! and ordinary requests never block a stream.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::Request;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HostConfig;
use crate::error::RequestError;

/// Whether the request is an event stream, by the rule the gateway serves streams by
/// ([`mp3conv_contract::event::is_stream_request`]): a `GET` of a path ending in `/events`
/// whose `Accept` takes `text/event-stream` with a `q` above 0. Only such a request may take
/// a stream's slot: a header alone cannot move other work out of the ordinary cap.
pub fn is_event_stream<B>(request: &Request<B>) -> bool {
    // Read as the gateway reads headers (bytes outside ASCII replaced, never the whole value
    // dropped), so that both ends see the same media ranges.
    let accept: Vec<_> = request
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()))
        .collect();
    mp3conv_contract::event::is_stream_request(
        request.method().as_str(),
        request.uri().path(),
        accept.iter().map(AsRef::as_ref),
    )
}

/// The host's slots: ordinary requests and event streams, each with a host-wide and a
/// per-client cap.
pub(crate) struct Capacity {
    requests: Lane,
    streams: Lane,
}

impl Capacity {
    pub(crate) fn new(config: &HostConfig) -> Capacity {
        Capacity {
            requests: Lane::new(
                config.max_concurrent_requests,
                config.max_requests_per_client,
            ),
            streams: Lane::new(config.max_streams, config.max_streams_per_client),
        }
    }

    /// A slot for a request from `ip`, in the streams' lane when `stream`; or why there is
    /// none (429 past the client's cap, checked first, 503 past the host's).
    pub(crate) fn admit(&self, ip: IpAddr, stream: bool) -> Result<Slot, RequestError> {
        if stream {
            self.streams.admit(
                ip,
                RequestError::TooManyStreamsFromClient,
                RequestError::TooManyStreams,
            )
        } else {
            self.requests.admit(
                ip,
                RequestError::TooManyFromClient,
                RequestError::Overloaded,
            )
        }
    }
}

/// One kind of slot: a host-wide semaphore and a per-client count.
struct Lane {
    permits: Arc<Semaphore>,
    max: usize,
    clients: Arc<ClientSlots>,
}

impl Lane {
    fn new(max: usize, max_per_client: usize) -> Lane {
        Lane {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            clients: ClientSlots::new(max_per_client),
        }
    }

    fn admit(
        &self,
        ip: IpAddr,
        client_full: fn(usize) -> RequestError,
        host_full: fn(usize) -> RequestError,
    ) -> Result<Slot, RequestError> {
        let client = self
            .clients
            .acquire(ip)
            .ok_or_else(|| client_full(self.clients.max))?;
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| host_full(self.max))?;
        Ok(Slot {
            _permit: permit,
            _client: client,
        })
    }
}

/// What a client request holds while its guest runs: a host-wide slot and one of its
/// client's, both given back when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// Requests in flight per client IP address, bounded so that one client (e.g. many
/// connections sending bodies slowly) cannot take every slot of the host.
struct ClientSlots {
    max: usize,
    in_flight: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One request's share of its client's slots, given back when dropped.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    fn new(max: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            max,
            in_flight: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = client_key(ip);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(ip).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                in_flight.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }
}

/// Who counts as one client: an IPv4 address, or an IPv6 /64 (the least a site is given, so
/// one holder of a /64 cannot take a slot per address); IPv4-mapped IPv6 is its IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(network))
            }
        },
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut in_flight = self
            .slots
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};

    fn request(method: Method, path: &str, accept: &[&str]) -> Request<()> {
        let mut request = Request::builder().method(method).uri(path);
        for value in accept {
            request = request.header(http::header::ACCEPT, *value);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn a_stream_is_a_get_of_an_events_path_accepting_text_event_stream() {
        let get = |path, accept| is_event_stream(&request(Method::GET, path, accept));
        let cases: &[(&[&str], bool)] = &[
            (&["text/event-stream"], true),
            (&["text/event-stream; charset=utf-8"], true),
            (&["text/event-stream;q=0.5"], true),
            (&["application/json, text/event-stream"], true),
            (&["application/json,text/event-stream;q=0.1 , */*"], true),
            (&["Text/Event-Stream"], true),
            (&["TEXT/EVENT-STREAM ; Q=1"], true),
            (&["  text/event-stream  "], true),
            (&["application/json", "text/event-stream"], true),
            (&[], false),
            (&[""], false),
            (&["application/json"], false),
            (&["text/event-streamx"], false),
            (&["text/event-stream-x"], false),
            (&["xtext/event-stream"], false),
            (&["text/event"], false),
            (&["*/*"], false),
            (&["text/*"], false),
            (&["application/json; profile=\"text/event-stream\""], false),
            (&["text/event-stream;q=0"], false),
            (&["text/event-stream; q=0.000"], false),
            (&["text/event-stream;q=0", "application/json"], false),
        ];
        for (accept, expected) in cases {
            assert_eq!(get("/v1/events", accept), *expected, "Accept: {accept:?}");
        }
        assert!(get("/v1/jobs/0193a5b0/events", &["text/event-stream"]));
        assert!(get("/v1/events?last_event_id=x", &["text/event-stream"]));

        // A HEAD opens the stream as a GET does (the gateway answers it so): counted alike.
        let stream = ["text/event-stream"];
        assert!(is_event_stream(&request(
            Method::HEAD,
            "/v1/events",
            &stream
        )));
        // The header alone does not make a stream: another method, or another path.
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            assert!(
                !is_event_stream(&request(method.clone(), "/v1/events", &stream)),
                "{method}"
            );
        }
        for path in [
            "/auth/login",
            "/v1/jobs",
            "/v1/events/ticket",
            "/v1/eventsx",
            "/v1/myevents/x",
        ] {
            assert!(!get(path, &stream), "{path}");
        }
        assert!(!is_event_stream(&request(
            Method::POST,
            "/auth/login",
            &stream
        )));

        // Another header naming it does not count.
        let mut other = request(Method::GET, "/v1/events", &[]);
        other.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        assert!(!is_event_stream(&other));
        // Bytes outside ASCII do not hide the media range beside them (the gateway reads
        // them the same way).
        let mut odd = request(Method::GET, "/v1/events", &[]);
        odd.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_bytes(b"text/x-\xff, text/event-stream").unwrap(),
        );
        assert!(is_event_stream(&odd));
    }

    #[test]
    fn one_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let slots = ClientSlots::new(2);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let first = slots.acquire(ip("2001:db8:1:2::1")).unwrap();
        let second = slots.acquire(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(
            slots.acquire(ip("2001:db8:1:2::abcd")).is_none(),
            "another address in the same /64 is the same client"
        );
        assert!(slots.acquire(ip("2001:db8:1:3::1")).is_some());
        let v4 = slots.acquire(ip("192.0.2.7")).unwrap();
        let _mapped = slots.acquire(ip("::ffff:192.0.2.7")).unwrap();
        assert!(slots.acquire(ip("192.0.2.7")).is_none());
        drop((first, second, v4));
        assert!(slots.acquire(ip("2001:db8:1:2::abcd")).is_some());
        assert!(slots.acquire(ip("192.0.2.7")).is_some());
    }

    #[test]
    fn streams_and_requests_take_separate_slots() {
        let mut config = HostConfig::new("spin.toml".into());
        config.max_concurrent_requests = 2;
        config.max_requests_per_client = 2;
        config.max_streams = 3;
        config.max_streams_per_client = 2;
        let capacity = Capacity::new(&config);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let a = ip("192.0.2.1");
        let b = ip("192.0.2.2");
        let c = ip("192.0.2.3");

        let requests = [capacity.admit(a, false), capacity.admit(b, false)];
        assert!(requests.iter().all(Result::is_ok));
        assert!(matches!(
            capacity.admit(c, false),
            Err(RequestError::Overloaded(2))
        ));
        // Ordinary slots all taken: streams still get theirs.
        let a1 = capacity.admit(a, true).unwrap();
        let _a2 = capacity.admit(a, true).unwrap();
        let err = capacity.admit(a, true).err().unwrap();
        assert!(matches!(err, RequestError::TooManyStreamsFromClient(2)));
        assert_eq!(err.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.code(), "too_many_streams");
        let _b1 = capacity.admit(b, true).unwrap();
        let err = capacity.admit(c, true).err().unwrap();
        assert!(matches!(err, RequestError::TooManyStreams(3)));
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code(), "too_many_streams");
        // A stream that ends gives its slots back.
        drop(a1);
        assert!(capacity.admit(a, true).is_ok());
        // And a client refused a stream still has its ordinary slots.
        drop(requests);
        assert!(capacity.admit(a, false).is_ok());
    }

    #[test]
    fn refusals_tell_when_to_retry_in_the_usual_json_shape() {
        for err in [
            RequestError::TooManyStreams(1024),
            RequestError::TooManyStreamsFromClient(16),
        ] {
            let response = err.to_response("req-1");
            assert!(response.headers().contains_key(http::header::RETRY_AFTER));
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
            assert_eq!(
                response.headers()[http::header::X_CONTENT_TYPE_OPTIONS],
                "nosniff"
            );
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_streams");
            assert_eq!(body["error"]["request_id"], "req-1");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("stream")
            );
        }
    }
}
