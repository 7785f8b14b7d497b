//! What `/events` answers, decided in one place: who may post, how large an event may be, and
//! one answer for every event the source may send, so that no answer tells whether a job
//! exists or whose it is.

use serde_json::{Value, json};

use crate::event::MAX_EVENT_BYTES;
use crate::notify::{Failure, Outcome};

/// A request refused before its event is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MethodNotAllowed,
    /// No or a wrong token: the same answer whatever the request carries.
    Unauthorized,
    /// Past [`MAX_EVENT_BYTES`], declared or while streaming.
    TooLarge,
    /// The body could not be read.
    Unreadable,
    /// The settings are invalid (logged).
    Misconfigured,
}

/// A status, extra headers and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: json!({ "error": { "code": code, "message": message } }),
    }
}

impl Refusal {
    pub fn answer(&self) -> Answer {
        match self {
            Refusal::MethodNotAllowed => {
                let mut answer = error(405, "method_not_allowed", "POST a CloudEvent");
                answer.headers.push(("allow", "POST".into()));
                answer
            }
            Refusal::Unauthorized => {
                let mut answer = error(401, "unauthorized", "events come from the event source");
                answer.headers.push(("www-authenticate", "Bearer".into()));
                answer
            }
            Refusal::TooLarge => error(
                413,
                "body_too_large",
                &format!("events are limited to {MAX_EVENT_BYTES} bytes"),
            ),
            Refusal::Unreadable => error(400, "malformed_event", "the body could not be read"),
            Refusal::Misconfigured => error(500, "internal", "the notifier is misconfigured"),
        }
    }
}

/// The answer to an authorised event. Recorded, duplicate, ignored (a deleted job, another
/// owner's, an outcome the job does not have): all `200 {"status":"accepted"}`, so the source
/// acks and learns nothing else. 400 only for an event that cannot be read at all; 503 when
/// the database or the worker cannot answer now.
pub fn answer(result: &Result<Outcome, Failure>) -> Answer {
    match result {
        Ok(_) => Answer {
            status: 200,
            headers: Vec::new(),
            body: json!({ "status": "accepted" }),
        },
        Err(Failure::Malformed(message)) => error(400, "malformed_event", message),
        Err(Failure::Transient(_)) => {
            let mut answer = error(503, "unavailable", "try again later");
            answer.headers.push(("retry-after", "1".into()));
            answer
        }
    }
}

/// Collects a body chunk by chunk, refusing it as soon as it passes [`MAX_EVENT_BYTES`]:
/// nothing larger is ever held.
#[derive(Debug, Default)]
pub struct BoundedBody {
    bytes: Vec<u8>,
}

impl BoundedBody {
    /// Refuses a body whose declared `content-length` is already too large.
    pub fn new(declared_length: Option<&str>) -> Result<BoundedBody, Refusal> {
        match declared_length.map(|v| v.trim().parse::<u64>()) {
            Some(Ok(length)) if length > MAX_EVENT_BYTES as u64 => Err(Refusal::TooLarge),
            _ => Ok(BoundedBody::default()),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        if self.bytes.len() + chunk.len() > MAX_EVENT_BYTES {
            return Err(Refusal::TooLarge);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handled_event_gets_the_same_answer() {
        let recorded = Ok(Outcome::Recorded {
            notification_id: "n1".into(),
            duplicate: false,
            webhook: crate::notify::Channel::Off,
            email: crate::notify::Channel::Off,
        });
        let ignored = Ok(Outcome::Ignored("another owner's job".into()));
        assert_eq!(answer(&recorded), answer(&ignored));
        assert_eq!(answer(&recorded).status, 200);
        assert_eq!(
            answer(&Err(Failure::Transient("worker down".into()))).body["error"]["message"],
            "try again later",
            "causes stay in the log"
        );
    }

    #[test]
    fn bodies_are_bounded_while_they_arrive() {
        assert_eq!(
            BoundedBody::new(Some((MAX_EVENT_BYTES + 1).to_string().as_str())).unwrap_err(),
            Refusal::TooLarge
        );
        let mut body = BoundedBody::new(Some("12")).unwrap();
        body.push(&[b'x'; 1000]).unwrap();
        body.push(&vec![b'x'; MAX_EVENT_BYTES - 1000]).unwrap();
        assert_eq!(body.push(b"x"), Err(Refusal::TooLarge));
        let mut chunked = BoundedBody::new(None).unwrap();
        chunked.push(b"{}").unwrap();
        assert_eq!(chunked.into_bytes(), b"{}");
        let answer = Refusal::TooLarge.answer();
        assert_eq!(
            (answer.status, answer.body["error"]["code"].as_str()),
            (413, Some("body_too_large"))
        );
    }
}
