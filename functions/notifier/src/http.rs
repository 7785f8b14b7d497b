//! What `/events` answers, decided in one place: who may post, how large an event may be, and
//! one answer for every event the source may send, so that no answer tells whether a job
//! exists or whose it is.

use mp3conv_kit::reply::{BodyError, Reply};
use serde_json::json;

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

impl From<BodyError> for Refusal {
    fn from(err: BodyError) -> Refusal {
        match err {
            BodyError::TooLarge { .. } => Refusal::TooLarge,
            BodyError::Unreadable => Refusal::Unreadable,
        }
    }
}

impl Refusal {
    pub fn reply(&self) -> Reply {
        match self {
            Refusal::MethodNotAllowed => {
                Reply::error(405, "method_not_allowed", "POST a CloudEvent")
                    .with_header("allow", "POST")
            }
            Refusal::Unauthorized => {
                Reply::error(401, "unauthorized", "events come from the event source")
                    .with_header("www-authenticate", "Bearer")
            }
            Refusal::TooLarge => Reply::error(
                413,
                "body_too_large",
                &format!("events are limited to {MAX_EVENT_BYTES} bytes"),
            ),
            Refusal::Unreadable => {
                Reply::error(400, "malformed_event", "the body could not be read")
            }
            Refusal::Misconfigured => {
                Reply::error(500, "internal", "the notifier is misconfigured")
            }
        }
    }
}

/// The answer to an authorised event. Recorded, duplicate, ignored (a deleted job, another
/// owner's, an outcome the job does not have): all `200 {"status":"accepted"}`, so the source
/// acks and learns nothing else. 400 only for an event that cannot be read at all; 503 when
/// the database or the worker cannot answer now.
pub fn answer(result: &Result<Outcome, Failure>) -> Reply {
    match result {
        Ok(_) => Reply::json(200, &json!({ "status": "accepted" })),
        Err(Failure::Malformed(message)) => Reply::error(400, "malformed_event", message),
        Err(Failure::Transient(_)) => {
            Reply::error(503, "unavailable", "try again later").with_header("retry-after", "1")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

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
            body(&answer(&Err(Failure::Transient("worker down".into()))))["error"]["message"],
            "try again later",
            "causes stay in the log"
        );
    }

    #[test]
    fn refusals_have_their_status_and_code() {
        let too_large: Refusal = BodyError::TooLarge {
            limit: MAX_EVENT_BYTES as u64,
        }
        .into();
        let reply = too_large.reply();
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_str()),
            (413, Some("body_too_large"))
        );
        let unreadable: Refusal = BodyError::Unreadable.into();
        assert_eq!(unreadable.reply().status, 400);
        let unauthorized = Refusal::Unauthorized.reply();
        assert_eq!(unauthorized.status, 401);
        assert!(
            unauthorized
                .headers
                .contains(&("www-authenticate".to_owned(), "Bearer".to_owned()))
        );
    }
}
