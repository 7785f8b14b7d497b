//! Whole requests through [`Gateway::serve`]: routing, authentication, the database and the
//! in-memory worker and auth together.

use std::rc::Rc;

use futures::executor::block_on;
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
        }
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
                    now: OffsetDateTime::now_utc(),
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
    assert_eq!((status, json["api"].as_str()), (200, Some("/openapi.yaml")));
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
    assert!(world.worker.calls()[1].ends_with("if-none-match=\"e\""));
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
