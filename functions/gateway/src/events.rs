//! `GET /v1/events` and `GET /v1/jobs/{id}/events`: a caller's live events as Server-Sent
//! Events. The worker makes the stream (`mp3conv_contract::event`); the gateway checks the
//! request, says until when the stream may run, and pipes the worker's body back unchanged.
//!
//! Who calls is verified by bearer token or by a single-use ticket ([`crate::tickets`]); that
//! is in [`crate::gateway`]. Here: the `Accept` rule, the query, the resume point, the end
//! time and the answer's headers.

use std::time::Duration;

use time::OffsetDateTime;

use crate::error::ApiError;
use crate::notifications::unix_ms;
use crate::routes::{only_params, param, query_params};
use crate::upstream::{EventStream, Streamed, Worker};

/// The media type of an event stream.
pub use mp3conv_contract::event::EVENT_STREAM;

/// The longest resume point accepted (the worker's ids are 36 characters).
pub const MAX_EVENT_ID_CHARS: usize = 64;

/// Whether the request's `Accept` values take an event stream, by the contract's one rule
/// ([`mp3conv_contract::event::accepts_event_stream`]), which the host also counts streams by.
/// Requests without it are answered 406.
pub fn accepts_event_stream<'a>(mut accept: impl Iterator<Item = &'a str>) -> bool {
    accept.any(mp3conv_contract::event::accepts_event_stream)
}

/// The query of a stream route: `?ticket=` (instead of a bearer token) and `?last_event_id=`
/// (for a browser opening a new `EventSource`, which cannot set `Last-Event-ID` itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    pub ticket: Option<String>,
    pub last_event_id: Option<String>,
}

/// Parses a stream route's query; 400 `unknown_parameter` for anything else.
pub fn stream_query(query: &str) -> Result<StreamQuery, ApiError> {
    let params = query_params(query);
    only_params(&params, &["ticket", "last_event_id"])?;
    Ok(StreamQuery {
        ticket: param(&params, "ticket").map(str::to_owned),
        last_event_id: param(&params, "last_event_id").map(str::to_owned),
    })
}

/// Where to resume: the `Last-Event-ID` header when it is sent, else `?last_event_id=`. Each
/// one given must be 1 to [`MAX_EVENT_ID_CHARS`] printable ASCII characters, not starting or
/// ending with a space (400 `invalid_last_event_id`; `EventSource` never sends an empty one).
pub fn resume_point(header: Option<&str>, query: Option<&str>) -> Result<Option<String>, ApiError> {
    let printable = |c: char| (' '..='~').contains(&c);
    let valid = |id: &str| {
        (1..=MAX_EVENT_ID_CHARS).contains(&id.len())
            && id.chars().all(printable)
            && !id.starts_with(' ')
            && !id.ends_with(' ')
    };
    if ![header, query].into_iter().flatten().all(valid) {
        return Err(ApiError::bad_request(
            "invalid_last_event_id",
            format!(
                "a last event id is 1 to {MAX_EVENT_ID_CHARS} printable ASCII characters, as \
                 the stream's `id:` lines give them"
            ),
        ));
    }
    Ok(header.or(query).map(str::to_owned))
}

/// When a stream opened `now` ends, in unix milliseconds: after `longest`, or when the
/// caller's token expires (`token_expires_at`, unix seconds), whichever comes first; never
/// before `now`.
pub fn stream_until(now: OffsetDateTime, longest: Duration, token_expires_at: u64) -> i64 {
    let now_ms = unix_ms(now);
    let longest_ms = i64::try_from(longest.as_millis()).unwrap_or(i64::MAX);
    let by_setting = now_ms.saturating_add(longest_ms);
    let by_token = i64::try_from(token_expires_at)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    by_setting.min(by_token).max(now_ms)
}

/// Opens the stream at the worker and gives the answer to pipe back: the worker's status
/// (200, or 204 for a job already over when resuming) and body, with the headers an event
/// stream needs (no caching, no buffering by proxies).
pub async fn open<W: Worker>(
    worker: &W,
    owner: &str,
    stream: &EventStream,
) -> Result<Streamed<W::Audio>, ApiError> {
    let answer = worker.events(owner, stream).await?;
    let mut headers = vec![("cache-control".to_owned(), "no-store".to_owned())];
    if answer.status != 204 {
        let content_type = answer
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map_or(EVENT_STREAM, |(_, value)| value.as_str());
        headers.insert(0, ("content-type".to_owned(), content_type.to_owned()));
        headers.push(("x-accel-buffering".to_owned(), "no".to_owned()));
    }
    Ok(Streamed {
        status: answer.status,
        headers,
        body: answer.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_must_name_event_streams() {
        // The rule's cases are the contract's; here: every `Accept` value counts.
        assert!(accepts_event_stream(
            ["application/json", "text/event-stream"].into_iter()
        ));
        assert!(!accepts_event_stream(
            ["text/event-stream;q=0", "*/*"].into_iter()
        ));
        assert!(!accepts_event_stream(std::iter::empty()));
    }

    #[test]
    fn resume_points_come_from_the_header_first() {
        let id = "0193a5b0-7c1d-7e3f-9a40-5f2b1c3d4e5f";
        assert_eq!(resume_point(None, None), Ok(None));
        assert_eq!(resume_point(Some(id), Some("other")).unwrap().unwrap(), id);
        assert_eq!(resume_point(None, Some(id)).unwrap().unwrap(), id);
        assert_eq!(resume_point(None, Some("a b")).unwrap().unwrap(), "a b");
        let longest = "a".repeat(MAX_EVENT_ID_CHARS);
        assert!(resume_point(None, Some(&longest)).is_ok());
        let long = "a".repeat(MAX_EVENT_ID_CHARS + 1);
        for bad in [long.as_str(), "", " a", "a ", "caf\u{e9}", "a\u{7}b"] {
            for (header, query) in [
                (Some(bad), None),
                (None, Some(bad)),
                (Some(bad), Some(id)),
                (Some(id), Some(bad)),
            ] {
                assert!(
                    matches!(
                        resume_point(header, query),
                        Err(ApiError::BadRequest {
                            code: "invalid_last_event_id",
                            ..
                        })
                    ),
                    "{header:?} {query:?}"
                );
            }
        }
    }

    #[test]
    fn stream_queries() {
        assert_eq!(stream_query(""), Ok(StreamQuery::default()));
        assert_eq!(
            stream_query("ticket=t%2Bx&last_event_id=e1").unwrap(),
            StreamQuery {
                ticket: Some("t+x".into()),
                last_event_id: Some("e1".into()),
            }
        );
        assert!(matches!(
            stream_query("token=x"),
            Err(ApiError::BadRequest {
                code: "unknown_parameter",
                ..
            })
        ));
    }

    #[test]
    fn streams_end_at_the_setting_or_the_token_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let five_minutes = Duration::from_secs(300);
        let ms = 1_800_000_000_000;
        // The token outlives the setting: the setting decides.
        assert_eq!(stream_until(now, five_minutes, 1_800_003_600), ms + 300_000);
        // The token expires first: the stream ends with it.
        assert_eq!(stream_until(now, five_minutes, 1_800_000_100), ms + 100_000);
        // Never in the past.
        assert_eq!(stream_until(now, five_minutes, 1_700_000_000), ms);
        assert_eq!(stream_until(now, five_minutes, u64::MAX), ms + 300_000);
    }
}
