//! CloudEvents over HTTP as Knative Eventing's RabbitmqSource delivers them: binary content
//! mode (`ce-*` headers, the body is the data) and structured mode
//! (`application/cloudevents+json`), and the job announcement they carry.

use mp3conv_contract::message::JobMessage;
use serde::Deserialize;
use serde_json::Value;

/// Largest event body accepted.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The `type` RabbitmqSource gives every message it forwards.
pub const RABBITMQ_EVENT_TYPE: &str = "dev.knative.rabbitmq.event";
/// The AMQP `type` the worker gives announcements (what a source preserving it would send).
pub use mp3conv_contract::message::MP3_TYPE;

/// A CloudEvent (specversion 1.0), as far as the notifier needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    pub data: Vec<u8>,
}

/// Why an event can never be handled (answered 400: the source must not retry it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

fn malformed(message: impl Into<String>) -> Malformed {
    Malformed(message.into())
}

/// Reads an event from an HTTP request's headers (lower-case names) and body.
pub fn parse(headers: &[(String, String)], body: &[u8]) -> Result<CloudEvent, Malformed> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(malformed(format!(
            "the event is larger than {MAX_EVENT_BYTES} bytes"
        )));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let event = if content_type
        .to_ascii_lowercase()
        .starts_with("application/cloudevents+json")
    {
        structured(body)?
    } else {
        let required = |name: &str| {
            header(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| malformed(format!("the `{name}` header is missing")))
        };
        let specversion = required("ce-specversion")?;
        if specversion != "1.0" {
            return Err(malformed(format!("specversion `{specversion}` is not 1.0")));
        }
        CloudEvent {
            id: required("ce-id")?,
            source: required("ce-source")?,
            kind: required("ce-type")?,
            subject: header("ce-subject"),
            time: header("ce-time"),
            data: body.to_vec(),
        }
    };
    if let Some(time) = &event.time {
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
            .map_err(|_| malformed(format!("time `{time}` is not RFC 3339")))?;
    }
    if event.id.len() > 255 {
        return Err(malformed("the event id is longer than 255 characters"));
    }
    Ok(event)
}

#[derive(Deserialize)]
struct Structured {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    subject: Option<String>,
    time: Option<String>,
    data: Option<Value>,
    data_base64: Option<String>,
}

fn structured(body: &[u8]) -> Result<CloudEvent, Malformed> {
    use base64::Engine as _;
    let event: Structured = serde_json::from_slice(body)
        .map_err(|err| malformed(format!("not a structured CloudEvent: {err}")))?;
    if event.specversion != "1.0" {
        return Err(malformed(format!(
            "specversion `{}` is not 1.0",
            event.specversion
        )));
    }
    if event.id.is_empty() || event.source.is_empty() || event.kind.is_empty() {
        return Err(malformed("id, source and type must not be empty"));
    }
    let data = match (event.data, event.data_base64) {
        (Some(_), Some(_)) => return Err(malformed("both data and data_base64")),
        (Some(Value::String(text)), None) => text.into_bytes(),
        (Some(value), None) => value.to_string().into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed("data_base64 is not base64"))?,
        (None, None) => Vec::new(),
    };
    Ok(CloudEvent {
        id: event.id,
        source: event.source,
        kind: event.kind,
        subject: event.subject,
        time: event.time,
        data,
    })
}

/// The announcement an event carries: the worker's [`JobMessage`] about a job in a final
/// state (`done` or `failed`).
pub fn job_event(event: &CloudEvent) -> Result<JobMessage, Malformed> {
    if event.kind != RABBITMQ_EVENT_TYPE && event.kind != MP3_TYPE {
        return Err(malformed(format!(
            "type `{}` is not an mp3 announcement",
            event.kind
        )));
    }
    let message: JobMessage = serde_json::from_slice(&event.data)
        .map_err(|err| malformed(format!("the data is not a job announcement: {err}")))?;
    if !message.status.is_terminal() {
        return Err(malformed(format!(
            "status `{}` is not a final state",
            message.status
        )));
    }
    if message.owner.is_empty() || message.owner.len() > 256 {
        return Err(malformed("owner must be a user id"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3conv_contract::job::Status;

    const JOB: &str = r#"{"video_fid":"v","mp3_fid":"m","username":"u1","job_id":"0192f1a4-7c2b-7d3e-8f00-123456789abc","owner":"u1","attempt":1,"status":"done"}"#;

    fn binary(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "0192f1a4-7c2b-7d3e-8f00-123456789abc.done"),
            (
                "ce-source",
                "/apis/v1/namespaces/mp3conv/rabbitmqsources/mp3-notifier#mp3",
            ),
            ("ce-type", RABBITMQ_EVENT_TYPE),
            ("ce-time", "2026-11-28T10:00:00Z"),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in extra {
            headers.retain(|(n, _)| n != name);
            if !value.is_empty() {
                headers.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        headers
    }

    #[test]
    fn binary_and_structured_events_read_the_same() {
        let from_binary = parse(&binary(&[]), JOB.as_bytes()).unwrap();
        let structured_body = format!(
            r#"{{"specversion":"1.0","id":"{}","source":"{}","type":"{}","time":"2026-11-28T10:00:00Z","datacontenttype":"application/json","data":{JOB}}}"#,
            from_binary.id, from_binary.source, from_binary.kind
        );
        let headers = vec![(
            "content-type".to_owned(),
            "application/cloudevents+json; charset=utf-8".to_owned(),
        )];
        let from_structured = parse(&headers, structured_body.as_bytes()).unwrap();
        assert_eq!(from_binary.id, from_structured.id);
        assert_eq!(
            job_event(&from_binary).unwrap(),
            job_event(&from_structured).unwrap()
        );
        assert_eq!(job_event(&from_binary).unwrap().status, Status::Done);
    }

    #[test]
    fn malformed_events_are_refused() {
        type Case<'a> = (&'a str, Vec<(String, String)>, &'a [u8]);
        let cases: Vec<Case> = vec![
            ("no id", binary(&[("ce-id", "")]), JOB.as_bytes()),
            (
                "old spec",
                binary(&[("ce-specversion", "0.3")]),
                JOB.as_bytes(),
            ),
            (
                "bad time",
                binary(&[("ce-time", "yesterday")]),
                JOB.as_bytes(),
            ),
            ("no headers", Vec::new(), JOB.as_bytes()),
            (
                "broken structured",
                vec![("content-type".into(), "application/cloudevents+json".into())],
                b"{",
            ),
        ];
        for (name, headers, body) in cases {
            assert!(parse(&headers, body).is_err(), "{name}");
        }
        assert!(parse(&binary(&[]), &vec![b' '; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn only_final_job_announcements_are_handled() {
        let event = |kind: &str, data: &str| CloudEvent {
            id: "e".into(),
            source: "s".into(),
            kind: kind.into(),
            subject: None,
            time: None,
            data: data.as_bytes().to_vec(),
        };
        assert!(job_event(&event(MP3_TYPE, JOB)).is_ok());
        assert!(job_event(&event("com.example.other", JOB)).is_err());
        assert!(job_event(&event(RABBITMQ_EVENT_TYPE, "not json")).is_err());
        let queued = JOB.replace("\"done\"", "\"queued\"");
        assert!(job_event(&event(RABBITMQ_EVENT_TYPE, &queued)).is_err());
        let bad_id = JOB.replace("0192f1a4-7c2b-7d3e-8f00-123456789abc", "x'; DROP TABLE");
        assert!(job_event(&event(RABBITMQ_EVENT_TYPE, &bad_id)).is_err());
        let no_owner = JOB.replace(r#""owner":"u1""#, r#""owner":"""#);
        assert!(job_event(&event(RABBITMQ_EVENT_TYPE, &no_owner)).is_err());
        let unknown_status = JOB.replace("\"done\"", "\"exploded\"");
        assert!(job_event(&event(RABBITMQ_EVENT_TYPE, &unknown_status)).is_err());
    }
}
