//! Whole requests through [`Gateway::serve`]: routing, authentication, the database and the
//! in-memory worker and auth together.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::block_on;
use mp3conv_contract::quota::{Limits, UNLIMITED, Usage};
use mp3conv_kit::Trace;
use mp3conv_sql::testing::Sqlite;
use serde_json::Value;

use super::*;
use crate::testing::{self, FakeAuth, FakeWorker, Keys, SharedDb, chunks};

struct World {
    config: Config,
    keys: Keys,
    db: Rc<Sqlite>,
    worker: FakeWorker,
    auth: FakeAuth,
    /// The database cannot be opened.
    db_down: bool,
    /// The gateway's clock.
    now: Cell<OffsetDateTime>,
}

impl World {
    fn new() -> World {
        let keys = Keys::new();
        let mut vars = crate::config::tests::variables();
        vars.retain(|(name, _)| *name != "jwt_public_keys");
        vars.push((
            "jwt_public_keys",
            serde_json::to_string(&keys.jwks()).unwrap(),
        ));
        let db = Rc::new(testing::database());
        testing::add_user(db.as_ref(), "u1", "u1@example.com");
        World {
            config: crate::config::tests::load(&vars).unwrap(),
            keys,
            db,
            worker: FakeWorker::default(),
            auth: FakeAuth::default(),
            db_down: false,
            now: Cell::new(OffsetDateTime::now_utc()),
        }
    }

    fn advance(&self, seconds: i64) {
        self.now
            .set(self.now.get() + time::Duration::seconds(seconds));
    }

    fn bearer(&self, user: &str) -> String {
        format!(
            "Bearer {}",
            self.keys.token(user, &format!("{user}@example.com"))
        )
    }

    /// Serves `method path` with `headers` and `body`: the answer's status, headers and JSON.
    fn serve(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Vec<(String, String)>, Value) {
        let request = Request {
            method: method.into(),
            path_with_query: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: chunks(&[body]),
        };
        let answer = match route(&request) {
            Err(reply) => Answer::Reply(reply),
            Ok(route) => {
                let db = self.db.clone();
                let down = self.db_down;
                let open = move || -> Result<Box<dyn Db>, String> {
                    if down {
                        return Err("no database".into());
                    }
                    Ok(Box::new(SharedDb(db.clone())))
                };
                let gateway = Gateway {
                    config: &self.config,
                    worker: &self.worker,
                    auth: &self.auth,
                    db: &open,
                    trace: &Trace::default(),
                    now: self.now.get(),
                };
                block_on(gateway.serve(route, request))
            }
        };
        match answer {
            Answer::Reply(reply) => {
                let json = serde_json::from_slice(&reply.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into()));
                (reply.status, reply.headers, json)
            }
            Answer::Stream(audio) => (
                audio.status,
                audio.headers,
                Value::String(String::from_utf8(audio.body).unwrap()),
            ),
        }
    }

    fn authed(&self, method: &str, path: &str) -> (u16, Value) {
        let bearer = self.bearer("u1");
        let (status, _, json) = self.serve(method, path, &[("authorization", &bearer)], "");
        (status, json)
    }
}

#[test]
fn open_routes_need_no_token_and_the_rest_do() {
    let world = World::new();
    let (status, _, json) = world.serve("GET", "/", &[], "");
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (404, Some("not_found")),
        "`/` is the web app's (functions/web)"
    );
    let (status, headers, _) = world.serve("GET", "/openapi.yaml", &[], "");
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-type".into(), "application/yaml".into())));
    let (status, headers, json) = world.serve("PATCH", "/v1/jobs", &[], "");
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(headers.contains(&("allow".into(), "GET, POST".into())));
    for (authorization, code) in [
        (String::new(), "missing_token"),
        ("Bearer nope".into(), "invalid_token"),
        (world.bearer("deleted"), "unknown_user"),
    ] {
        let headers: Vec<(&str, &str)> = if authorization.is_empty() {
            vec![]
        } else {
            vec![("authorization", authorization.as_str())]
        };
        let (status, _, json) = world.serve("GET", "/v1/jobs", &headers, "");
        assert_eq!((status, json["error"]["code"].as_str()), (401, Some(code)));
    }
    assert!(
        world.worker.calls().is_empty(),
        "the worker was called unauthenticated"
    );
}

#[test]
fn jobs_are_shown_without_the_workers_internal_fields() {
    let world = World::new();
    let job = world.worker.add_job("u1", "talk.mp4");
    world.worker.add_job("u2", "theirs.mp4");
    let (status, page) = world.authed("GET", "/v1/jobs?limit=5");
    assert_eq!(status, 200);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_cursor"], Value::Null);
    let shown = &page["jobs"][0];
    assert_eq!(shown["id"], job.id.to_string());
    for hidden in ["owner", "video_id", "attempts", "announced"] {
        assert!(shown.get(hidden).is_none(), "{hidden} shown: {shown}");
    }
    let (status, one) = world.authed("GET", &format!("/v1/jobs/{}", job.id));
    assert_eq!((status, &one), (200, shown));
    assert_eq!(world.worker.calls()[0], "jobs limit=5");
    let (status, _) = world.authed("DELETE", &format!("/v1/jobs/{}", job.id));
    assert_eq!(status, 204);
    let (status, json) = world.authed("GET", &format!("/v1/jobs/{}", job.id));
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[test]
fn a_link_job_is_created_with_its_location() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, reply_headers, job) = world.serve(
        "POST",
        "/v1/jobs?bitrate=v3",
        &headers,
        r#"{"url":"https://example.com/talk.webm"}"#,
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["bitrate"], "v3");
    assert_eq!(job["source"]["url"], "https://example.com/talk.webm");
    let location = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    assert!(reply_headers.contains(&("location".into(), location)));
}

#[test]
fn downloads_stream_with_a_name() {
    let world = World::new();
    let job = world.worker.add_job("u1", "talk.mp4");
    let bearer = world.bearer("u1");
    let (status, headers, body) = world.serve(
        "GET",
        &format!("/download?fid={}", job.id),
        &[("authorization", &bearer), ("if-none-match", "\"e\"")],
        "",
    );
    assert_eq!((status, body.as_str()), (200, Some("ID3")));
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-disposition" && v.contains("talk.mp3"))
    );
    // One call to the worker: the download, its conditions passed on.
    let calls = world.worker.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].ends_with("if-none-match=\"e\""));
}

#[test]
fn the_caller_deletes_their_account() {
    let world = World::new();
    world.worker.add_job("u1", "a.mp4");
    let (status, me) = world.authed("GET", "/v1/me");
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("u1@example.com"))
    );
    let (status, _) = world.authed("DELETE", "/v1/me");
    assert_eq!(status, 204);
    assert!(world.worker.jobs.borrow().is_empty());
    let calls = world.auth.calls.borrow();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].starts_with("delete Bearer "), "{calls:?}");
}

#[test]
fn a_users_own_limits_reach_the_worker_and_their_quota_shows() {
    let world = World::new();
    let (status, me) = world.authed("GET", "/v1/me");
    assert_eq!(status, 200, "{me}");
    assert_eq!(world.worker.limits.get(), Limits::default());
    assert_eq!(me["quota"]["limits"]["jobs_per_hour"], Value::Null, "{me}");
    world
        .db
        .execute(
            "INSERT INTO user_limits (user_id, jobs_per_hour, storage_bytes, updated_at)
             VALUES ('u1', 30, 9223372036854775807, 0)",
            &[],
        )
        .unwrap();
    world.worker.usage.set(Usage {
        storage_bytes: 5,
        concurrent_jobs: 1,
        jobs_per_hour: 2,
    });
    let (status, me) = world.authed("GET", "/v1/me");
    assert_eq!(status, 200, "{me}");
    let handed = world.worker.limits.get();
    assert_eq!(handed.jobs_per_hour, Some(30));
    assert_eq!(handed.storage_bytes, Some(UNLIMITED));
    assert_eq!(handed.concurrent_jobs, None);
    assert_eq!(me["quota"]["usage"]["jobs_per_hour"], 2, "{me}");
    assert_eq!(me["quota"]["limits"]["jobs_per_hour"], 30, "{me}");
    // The worker down, the account still shows, without a quota.
    world.worker.calls_before_outage.set(Some(0));
    let (status, me) = world.authed("GET", "/v1/me");
    assert_eq!((status, &me["quota"]), (200, &Value::Null), "{me}");
    assert_eq!(me["email"], "u1@example.com");
    // The account's deletion takes its limits along.
    world.worker.calls_before_outage.set(None);
    let (status, _) = world.authed("DELETE", "/v1/me");
    assert_eq!(status, 204);
    let rows = world
        .db
        .query("SELECT COUNT(*) FROM user_limits", &[])
        .unwrap();
    assert_eq!(rows[0][0], mp3conv_sql::Value::Int(0));
}

#[test]
fn a_repeated_request_says_so() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let link = r#"{"url":"https://example.com/talk.webm"}"#;
    let replayed = |headers: &[(String, String)]| {
        headers
            .iter()
            .any(|(name, value)| name == "idempotent-replayed" && value == "true")
    };
    let (status, first, _) = world.serve("POST", "/v1/jobs", &headers, link);
    assert_eq!((status, replayed(&first)), (202, false));
    world.worker.replaying.set(true);
    let (status, again, _) = world.serve("POST", "/v1/jobs", &headers, link);
    assert_eq!((status, replayed(&again)), (202, true), "{again:?}");
}

#[test]
fn webhooks_and_notifications_go_through_the_database() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, hook) = world.serve(
        "PUT",
        "/v1/me/webhook",
        &json,
        r#"{"url":"https://hooks.example.com/in"}"#,
    );
    assert_eq!(status, 200, "{hook}");
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    let (status, hook) = world.authed("GET", "/v1/me/webhook");
    assert_eq!((status, hook.get("secret")), (200, None));
    let mut declared = json.to_vec();
    declared.push(("content-length", "65537"));
    let (status, _, error) = world.serve("PUT", "/v1/me/webhook", &declared, "{}");
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let long = format!(
        r#"{{"url":"https://hooks.example.com/{}"}}"#,
        "x".repeat(70_000)
    );
    let (status, _, _) = world.serve("PUT", "/v1/me/webhook", &json, &long);
    assert_eq!(status, 413);
    let plain = [
        ("authorization", bearer.as_str()),
        ("content-type", "text/plain"),
    ];
    let (status, _, _) = world.serve("PUT", "/v1/me/webhook", &plain, "{}");
    assert_eq!(status, 415);
    let (status, page) = world.authed("GET", "/v1/notifications");
    assert_eq!(
        (status, page["notifications"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = world.authed(
        "POST",
        "/v1/notifications/0192f1a4-7c2b-7d3e-8f00-123456789abc/read",
    );
    assert_eq!(status, 404);
}

#[test]
fn failures_behind_the_gateway_are_503_or_an_opaque_500() {
    let mut world = World::new();
    world.worker.calls_before_outage.set(Some(0));
    let (status, json) = world.authed("GET", "/v1/jobs");
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
    world.db_down = true;
    let (status, json) = world.authed("GET", "/v1/me");
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (500, Some("internal"))
    );
    assert!(!json.to_string().contains("no database"));
}

const STREAM: (&str, &str) = ("accept", "text/event-stream");

impl World {
    /// A new ticket for `authorization`'s caller.
    fn ticket(&self, authorization: &str) -> String {
        let (status, headers, json) = self.serve(
            "POST",
            "/v1/events/ticket",
            &[("authorization", authorization)],
            "",
        );
        assert_eq!(status, 201, "{json}");
        assert!(headers.contains(&("cache-control".into(), "no-store".into())));
        json["ticket"].as_str().unwrap().to_owned()
    }

    /// The last event stream the worker was asked for.
    fn last_stream(&self) -> (String, EventStream) {
        self.worker.streams.borrow().last().cloned().unwrap()
    }

    fn now_ms(&self) -> i64 {
        crate::notifications::unix_ms(self.now.get())
    }
}

fn code(json: &Value) -> Option<&str> {
    json["error"]["code"].as_str()
}

#[test]
fn event_streams_are_piped_back_by_bearer_token_or_ticket() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let (status, headers, body) = world.serve(
        "GET",
        "/v1/events",
        &[("authorization", &bearer), STREAM],
        "",
    );
    assert_eq!((status, body.as_str()), (200, Some("retry: 3000\n\n")));
    assert_eq!(
        headers,
        [
            ("content-type".to_owned(), "text/event-stream".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
            ("x-accel-buffering".to_owned(), "no".to_owned()),
        ],
        "the worker's own headers stay inside"
    );
    let (owner, stream) = world.last_stream();
    assert_eq!(
        (owner.as_str(), stream.path()),
        ("u1", "/internal/events".into())
    );
    assert_eq!(stream.last_event_id, None);

    let ticket = world.ticket(&bearer);
    assert_eq!(ticket.len(), crate::tickets::TICKET_CHARS);
    let by_ticket = format!("/v1/events?ticket={ticket}");
    let (status, _, body) = world.serve("GET", &by_ticket, &[STREAM], "");
    assert_eq!((status, body.as_str()), (200, Some("retry: 3000\n\n")));
    assert_eq!(world.last_stream().0, "u1");
    // Single use.
    let (status, headers, json) = world.serve("GET", &by_ticket, &[STREAM], "");
    assert_eq!((status, code(&json)), (401, Some("invalid_ticket")));
    assert!(headers.iter().any(|(n, _)| n == "www-authenticate"));
    assert_eq!(world.worker.streams.borrow().len(), 2);
}

#[test]
fn tickets_expire_and_are_no_bearer_tokens() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let ticket = world.ticket(&bearer);
    world.advance(60);
    let (status, _, json) =
        world.serve("GET", &format!("/v1/events?ticket={ticket}"), &[STREAM], "");
    assert_eq!(
        (status, code(&json)),
        (401, Some("invalid_ticket")),
        "expired"
    );

    let ticket = world.ticket(&bearer);
    let as_bearer = format!("Bearer {ticket}");
    for (method, path, headers, expected) in [
        (
            "GET",
            "/v1/me".to_owned(),
            vec![("authorization", as_bearer.as_str())],
            "invalid_token",
        ),
        (
            "GET",
            format!("/v1/jobs?ticket={ticket}"),
            vec![],
            "missing_token",
        ),
        (
            "POST",
            format!("/v1/events/ticket?ticket={ticket}"),
            vec![],
            "missing_token",
        ),
        (
            "GET",
            "/v1/events".to_owned(),
            vec![("authorization", as_bearer.as_str()), STREAM],
            "invalid_token",
        ),
    ] {
        let (status, _, json) = world.serve(method, &path, &headers, "");
        assert_eq!(
            (status, code(&json)),
            (401, Some(expected)),
            "{method} {path}"
        );
    }
    // A malformed ticket is refused even beside a good bearer token; a good one is left
    // unspent (the token counts).
    let (status, _, json) = world.serve(
        "GET",
        "/v1/events?ticket=nope",
        &[("authorization", &bearer), STREAM],
        "",
    );
    assert_eq!((status, code(&json)), (401, Some("invalid_ticket")));
    assert!(world.worker.calls().is_empty());
    let (status, _, _) = world.serve(
        "GET",
        &format!("/v1/events?ticket={ticket}"),
        &[("authorization", &bearer), STREAM],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(world.worker.calls().len(), 1);
    // None of that spent it.
    let (status, _, _) = world.serve("GET", &format!("/v1/events?ticket={ticket}"), &[STREAM], "");
    assert_eq!(status, 200);

    // The account is gone: its tickets are worth nothing.
    let ticket = world.ticket(&bearer);
    world
        .db
        .execute("DELETE FROM users WHERE id = 'u1'", &[])
        .unwrap();
    let (status, _, json) =
        world.serve("GET", &format!("/v1/events?ticket={ticket}"), &[STREAM], "");
    assert_eq!((status, code(&json)), (401, Some("unknown_user")));
}

#[test]
fn event_streams_need_accept_text_event_stream() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let ticket = world.ticket(&bearer);
    let by_ticket = format!("/v1/events?ticket={ticket}");
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut headers = vec![("authorization", bearer.as_str())];
        headers.extend(accept.map(|a| ("accept", a)));
        let (status, _, json) = world.serve("GET", "/v1/events", &headers, "");
        assert_eq!(
            (status, code(&json)),
            (406, Some("not_acceptable")),
            "{accept:?}"
        );
        let (status, _, _) = world.serve("GET", &by_ticket, &[], "");
        assert_eq!(status, 406);
    }
    assert!(world.worker.calls().is_empty());
    // A refused request does not spend the ticket.
    let (status, _, _) = world.serve("GET", &by_ticket, &[STREAM], "");
    assert_eq!(status, 200);
}

#[test]
fn resume_points_and_the_end_of_the_stream_reach_the_worker() {
    let mut world = World::new();
    let bearer = world.bearer("u1");
    let with = |extra: &[(&str, &str)], path: &str| {
        let mut headers = vec![("authorization", bearer.as_str()), STREAM];
        headers.extend_from_slice(extra);
        let (status, _, json) = world.serve("GET", path, &headers, "");
        assert_eq!(status, 200, "{json}");
        world.last_stream().1
    };
    assert_eq!(
        with(&[("last-event-id", "e1")], "/v1/events")
            .last_event_id
            .as_deref(),
        Some("e1")
    );
    assert_eq!(
        with(&[], "/v1/events?last_event_id=e2")
            .last_event_id
            .as_deref(),
        Some("e2")
    );
    assert_eq!(
        with(&[("last-event-id", "e1")], "/v1/events?last_event_id=e2")
            .last_event_id
            .as_deref(),
        Some("e1"),
        "the header wins"
    );
    let stream = with(&[("last-event-id", "e1")], "/v1/events");
    assert!(
        stream
            .headers()
            .contains(&("last-event-id".into(), "e1".into()))
    );
    assert!(
        stream
            .headers()
            .contains(&("accept".into(), "text/event-stream".into()))
    );
    // The token outlives event_stream_seconds: the setting decides.
    assert_eq!(stream.until_ms, world.now_ms() + 300_000);
    assert!(stream.headers().contains(&(
        "x-mp3conv-stream-until".into(),
        (world.now_ms() + 300_000).to_string()
    )));
    let (status, _, json) = world.serve(
        "GET",
        "/v1/events?last_event_id=caf%C3%A9",
        &[("authorization", &bearer), STREAM],
        "",
    );
    assert_eq!((status, code(&json)), (400, Some("invalid_last_event_id")));

    // A token expiring sooner ends the stream with it, also through a ticket it minted.
    let short = format!(
        "Bearer {}",
        world.keys.token_for("u1", "u1@example.com", 100)
    );
    let (_, _, me) = world.serve("GET", "/v1/me", &[("authorization", &short)], "");
    let expiry_ms = me["token_expires_at"].as_i64().unwrap() * 1000;
    let (status, _, _) = world.serve(
        "GET",
        "/v1/events",
        &[("authorization", &short), STREAM],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(world.last_stream().1.until_ms, expiry_ms);
    let ticket = world.ticket(&short);
    let (status, _, _) = world.serve("GET", &format!("/v1/events?ticket={ticket}"), &[STREAM], "");
    assert_eq!(status, 200);
    assert_eq!(world.last_stream().1.until_ms, expiry_ms);

    world.config.event_stream_seconds = mp3conv_kit::config::Seconds(Duration::from_secs(30));
    let bearer = world.bearer("u1");
    let (status, _, _) = world.serve(
        "GET",
        "/v1/events",
        &[("authorization", &bearer), STREAM],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(world.last_stream().1.until_ms, world.now_ms() + 30_000);
}

#[test]
fn a_job_stream_is_the_owners_only() {
    let world = World::new();
    let mine = world.worker.add_job("u1", "mine.mp4");
    let theirs = world.worker.add_job("u2", "theirs.mp4");
    let bearer = world.bearer("u1");
    let headers = [("authorization", bearer.as_str()), STREAM];
    let (status, _, body) =
        world.serve("GET", &format!("/v1/jobs/{}/events", mine.id), &headers, "");
    assert_eq!((status, body.as_str()), (200, Some("retry: 3000\n\n")));
    let (owner, stream) = world.last_stream();
    assert_eq!((owner.as_str(), stream.job), ("u1", Some(mine.id)));
    assert_eq!(stream.path(), format!("/internal/jobs/{}/events", mine.id));
    // The worker says 404 for another user's job, exactly as for a missing one.
    let (status, _, json) = world.serve(
        "GET",
        &format!("/v1/jobs/{}/events", theirs.id),
        &headers,
        "",
    );
    assert_eq!((status, code(&json)), (404, Some("not_found")));
    assert_eq!(
        world.last_stream().1.job,
        Some(theirs.id),
        "the worker decided"
    );
    let calls = world.worker.calls().len();
    let (status, _, _) = world.serve("GET", "/v1/jobs/nope/events", &headers, "");
    assert_eq!(status, 404);
    assert_eq!(
        world.worker.calls().len(),
        calls,
        "a malformed id never reaches the worker"
    );
}

#[test]
fn the_workers_stream_limits_and_outages_are_passed_on() {
    let world = World::new();
    let bearer = world.bearer("u1");
    let headers = [("authorization", bearer.as_str()), STREAM];
    let refusal = crate::error::upstream_error(
        429,
        &[("retry-after".into(), b"2".to_vec())],
        br#"{"error":{"code":"too_many_streams","message":"m"}}"#.to_vec(),
    );
    *world.worker.stream_refusal.borrow_mut() = Some(refusal);
    let (status, headers_back, json) = world.serve("GET", "/v1/events", &headers, "");
    assert_eq!((status, code(&json)), (429, Some("too_many_streams")));
    assert!(headers_back.contains(&("retry-after".into(), "2".into())));
    *world.worker.stream_refusal.borrow_mut() = None;
    world.worker.calls_before_outage.set(Some(1));
    let (status, _, json) = world.serve("GET", "/v1/events", &headers, "");
    assert_eq!((status, code(&json)), (503, Some("unavailable")));
}

#[test]
fn presets_are_the_callers_and_jobs_run_with_them() {
    let world = World::new();
    testing::add_user(world.db.as_ref(), "u2", "u2@example.com");
    let bearer = world.bearer("u1");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, headers, preset) = world.serve(
        "POST",
        "/v1/presets",
        &json,
        r#"{"name":"my talks","options":{"bitrate":128,"normalize":true}}"#,
    );
    assert_eq!(status, 201, "{preset}");
    assert!(headers.contains(&("location".into(), "/v1/presets/my%20talks".into())));
    let (status, shown) = world.authed("GET", "/v1/presets/my%20talks");
    assert_eq!((status, &shown), (200, &preset));
    let (status, listed) = world.authed("GET", "/v1/presets");
    assert_eq!(
        (status, listed["presets"][0]["name"].as_str()),
        (200, Some("my talks"))
    );
    let (status, _, error) = world.serve(
        "PUT",
        "/v1/presets/my%20talks",
        &[("authorization", &bearer), ("content-type", "text/plain")],
        "{}",
    );
    assert_eq!(
        (status, code(&error)),
        (415, Some("unsupported_media_type"))
    );

    // A link job with the preset: the request's fields over the preset's.
    let (status, _, job) = world.serve(
        "POST",
        "/v1/jobs?title=Keynote",
        &json,
        r#"{"url":"https://example.com/talk.webm","preset":"my talks","normalize":-23}"#,
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["bitrate"], "128");
    assert_eq!(
        job["options"],
        serde_json::json!({"normalize": -23, "title": "Keynote", "preset": "my talks"})
    );
    let (status, _, error) = world.serve(
        "POST",
        "/v1/jobs?bitrate=320",
        &json,
        r#"{"url":"https://example.com/talk.webm","bitrate":"128"}"#,
    );
    assert_eq!((status, code(&error)), (400, Some("duplicate_field")));
    assert_eq!(error["error"]["field"], "bitrate");

    // Another user sees none of it, and cannot use it.
    let theirs = world.bearer("u2");
    let (status, _, error) = world.serve(
        "GET",
        "/v1/presets/my%20talks",
        &[("authorization", &theirs)],
        "",
    );
    assert_eq!((status, code(&error)), (404, Some("not_found")));
    let (status, _, error) = world.serve(
        "POST",
        "/v1/jobs",
        &[
            ("authorization", &theirs),
            ("content-type", "application/json"),
        ],
        r#"{"url":"https://example.com/talk.webm","preset":"my talks"}"#,
    );
    assert_eq!((status, code(&error)), (400, Some("unknown_preset")));
    assert_eq!(error["error"]["field"], "preset");
    assert_eq!(
        world.worker.jobs.borrow().len(),
        1,
        "a refused job was made"
    );

    let (status, _) = world.authed("DELETE", "/v1/presets/my%20talks");
    assert_eq!(status, 204);
    let (status, _) = world.authed("GET", "/v1/presets/my%20talks");
    assert_eq!(status, 404);
    // The account's deletion takes the presets with it.
    let (status, _, _) = world.serve(
        "PUT",
        "/v1/presets/again",
        &json,
        r#"{"options":{"split":"chapters"}}"#,
    );
    assert_eq!(status, 201);
    let (status, _) = world.authed("DELETE", "/v1/me");
    assert_eq!(status, 204);
    assert_eq!(
        crate::presets::options(world.db.as_ref(), "u1", "again").unwrap(),
        None
    );
}

#[test]
fn tracks_and_their_zip_stream_like_the_mp3() {
    let world = World::new();
    let mut job = world.worker.add_job("u1", "talk.mp4");
    job.tracks.push(mp3conv_contract::job::Track {
        number: 2,
        title: "Questions".into(),
        start: 10.0,
        end: 20.0,
        audio: mp3conv_contract::job::Audio {
            id: "a".into(),
            size: 3,
            duration: 10.0,
            bitrate: Default::default(),
        },
        crc32: 1,
    });
    world.worker.jobs.borrow_mut()[0] = job.clone();
    let bearer = world.bearer("u1");
    let (status, headers, body) = world.serve(
        "GET",
        &format!("/v1/jobs/{}/tracks/2", job.id),
        &[("authorization", &bearer), ("range", "bytes=0-1")],
        "",
    );
    assert_eq!((status, body.as_str()), (206, Some("ID3")));
    assert!(
        headers.contains(&(
            "content-disposition".into(),
            "attachment; filename=\"02 - Questions.mp3\"; filename*=UTF-8''02%20-%20Questions.mp3"
                .into()
        ))
    );
    assert!(!headers.iter().any(|(n, _)| n == "x-mp3conv-owner"));
    // One call to the worker, which checks the owner and names the file.
    assert_eq!(
        world.worker.calls().last().unwrap(),
        &format!("track 2 {} range=bytes=0-1", job.id)
    );
    assert!(!world.worker.calls().iter().any(|c| c.starts_with("job ")));
    let (status, headers, _) = world.serve(
        "GET",
        &format!("/v1/jobs/{}/tracks.zip", job.id),
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-type".into(), "application/zip".into())));
    assert!(
        headers.iter().any(|(n, v)| n == "content-disposition"
            && v.starts_with("attachment; filename=\"talk.zip\""))
    );
    let (status, _, error) = world.serve(
        "GET",
        &format!("/v1/jobs/{}/tracks/5", job.id),
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 404);
    assert_eq!(error["error"]["message"], "no such track");
    let calls = world.worker.calls().len();
    for path in [
        format!("/v1/jobs/{}/tracks/0", job.id),
        format!("/v1/jobs/{}/tracks/x", job.id),
    ] {
        let (status, _, error) = world.serve("GET", &path, &[("authorization", &bearer)], "");
        assert_eq!((status, code(&error)), (404, Some("not_found")), "{path}");
    }
    assert_eq!(
        world.worker.calls().len(),
        calls,
        "no track number, no call"
    );
    // Someone else's job: the worker's 404 is "no such job".
    let theirs = world.worker.add_job("u2", "theirs.mp4");
    let (status, _, error) = world.serve(
        "GET",
        &format!("/v1/jobs/{}/tracks.zip", theirs.id),
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 404);
    assert_eq!(error["error"]["message"], "no such job");
}
