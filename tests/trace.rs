//! One trace end to end: every request gets an `x-request-id` and a W3C `traceparent` at the
//! host (a client's own when valid), and one upload's trace id can be followed through every
//! process's log: the host, the gateway's call to the worker API, the converter, the eventing
//! bridge, the notifier's webhook delivery, and the webhook request itself.

mod common;
#[path = "common/trace.rs"]
mod trace_logs;

use std::time::Duration;

use common::api::{INTERNAL_TOKEN, expect, send, uuid_like};
use common::{HostOptions, HostProcess, Recorded, Recorder, client, component, media};
use reqwest::Method;
use serde_json::{Value, json};
use trace_logs::{
    Cluster, Expectation, client_traceparent, expect_all, field, in_trace, is_trace_id, json_lines,
    message, trace_of,
};

/// How long log lines may take to show up once the webhook has been delivered.
const LOG_DEADLINE: Duration = Duration::from_secs(30);

fn probe_host() -> HostProcess {
    let manifest = format!(
        r#"
spin_manifest_version = 2

[application]
name = "trace-probe"
version = "1.0.0"

[[trigger.http]]
route = "/probe/..."
component = "probe"

[component.probe]
source = "{}"
"#,
        component("probe").display()
    );
    HostProcess::start(
        HostOptions::new(manifest)
            .arg("--log-format")
            .arg("json")
            .env("RUST_LOG", "info"),
    )
}

/// Sends `headers` to the probe; returns the response's `x-request-id` and the headers the
/// component received.
async fn probe(host: &HostProcess, path: &str, headers: &[(&str, &str)]) -> (String, Value) {
    let mut request = client().get(host.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("{path}: no x-request-id on the response"))
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (id, body["headers"].clone())
}

/// The host's `request` log line of request `request_id`, if it has been logged.
fn host_request_line(host: &HostProcess, request_id: &str) -> Option<Value> {
    json_lines(&host.log())
        .into_iter()
        .find(|line| message(line) == "request" && field(line, "request_id") == [request_id])
}

/// The host's `request` log line of request `request_id`, once its log has it (the line is
/// written before the response, but read from the process's stderr a moment later).
async fn logged_request_line(host: &HostProcess, request_id: &str) -> Value {
    let deadline = std::time::Instant::now() + LOG_DEADLINE;
    loop {
        if let Some(line) = host_request_line(host, request_id) {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request line for {request_id}:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host: a client's valid trace is continued (same trace id, the host's own span as the
/// parent), anything else starts a new one; the component receives both headers, the response
/// carries the request id, and the host's request line carries both ids.
#[tokio::test]
async fn the_host_gives_every_request_an_id_and_a_trace() {
    let host = probe_host();
    let (traceparent, trace_id) = client_traceparent();

    let (id, seen) = probe(
        &host,
        "/probe/headers",
        &[
            ("x-request-id", "client-chosen-1"),
            ("traceparent", &traceparent),
            ("tracestate", "vendor=1"),
        ],
    )
    .await;
    assert_eq!(id, "client-chosen-1");
    assert_eq!(seen["x-request-id"], "client-chosen-1");
    let passed_on = seen["traceparent"].as_str().unwrap();
    assert_eq!(trace_of(passed_on).as_deref(), Some(trace_id.as_str()));
    assert_ne!(passed_on, traceparent, "the host names its own span");
    assert_eq!(seen["tracestate"], "vendor=1");

    // No traceparent, an invalid one (all-zero trace id, upper case), a request id that is not a
    // plain token: a fresh id and a fresh trace, without the old tracestate.
    let mut fresh = Vec::new();
    for headers in [
        &[][..],
        &[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=1"),
        ][..],
        &[("traceparent", &traceparent.to_uppercase()[..])][..],
        &[("x-request-id", "not a token")][..],
    ] {
        let (id, seen) = probe(&host, "/probe/headers", headers).await;
        assert!(id.len() == 32 && id != "not a token", "{headers:?}: {id}");
        assert_eq!(seen["x-request-id"], id.as_str());
        let fresh_trace = trace_of(seen["traceparent"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{headers:?}: {seen}"));
        assert!(is_trace_id(&fresh_trace));
        assert_ne!(fresh_trace, trace_id, "{headers:?}");
        assert!(seen.get("tracestate").is_none(), "{headers:?}: {seen}");
        fresh.push((id, fresh_trace));
    }
    let distinct: std::collections::BTreeSet<&String> = fresh.iter().map(|(_, t)| t).collect();
    assert_eq!(distinct.len(), fresh.len(), "every new trace is its own");

    // A request no component serves still gets both.
    let response = client()
        .get(host.url("/nowhere"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let not_found = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // The host's request lines carry both ids.
    let first = logged_request_line(&host, "client-chosen-1").await;
    assert_eq!(field(&first, "trace_id"), [trace_id.as_str()]);
    assert_eq!(first["path"], "/probe/headers");
    for (id, fresh_trace) in &fresh {
        let line = logged_request_line(&host, id).await;
        assert_eq!(field(&line, "trace_id"), [fresh_trace.as_str()]);
    }
    let line = logged_request_line(&host, &not_found).await;
    assert_eq!(field(&line, "trace_id"), [trace_id.as_str()]);
    assert_eq!(line["status"], 404);
}

/// `POST /v1/jobs` with the clip, and `headers`.
async fn upload(cluster: &Cluster, token: &str, headers: &[(&str, &str)]) -> (String, String) {
    let clip = std::fs::read(media("clip")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(clip)
            .file_name("traced.mp4")
            .mime_str("video/mp4")
            .unwrap(),
    );
    let mut request = cluster
        .system
        .authed(token, Method::POST, "/v1/jobs")
        .multipart(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = send(request).await;
    assert_eq!(response.status(), 202);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let job: Value = response.json().await.unwrap();
    (job["id"].as_str().unwrap().to_owned(), id)
}

/// The clip straight to the worker's internal API, as the gateway sends it.
async fn upload_to_worker(cluster: &Cluster, owner: &str, traceparent: &str) -> String {
    let clip = std::fs::read(media("clip")).unwrap();
    let response = client()
        .post(format!(
            "{}/internal/jobs?filename=direct.mp4",
            cluster.api().url
        ))
        .bearer_auth(INTERNAL_TOKEN)
        .header("x-mp3conv-owner", owner)
        .header("traceparent", traceparent)
        .header("content-type", "video/mp4")
        .body(clip)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("x-request-id"));
    let job: Value = response.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

fn job_of(delivery: &Recorded) -> String {
    let body: Value = serde_json::from_slice(&delivery.body).unwrap_or(Value::Null);
    body["data"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What one trace leaves behind from the worker API on: the API's `job queued`, the converter's
/// processing and announcement, the bridge's delivery, the host's line for the bridge's
/// `POST /events`, the notifier's webhook delivery line, and the webhook request's own
/// `traceparent`.
fn downstream<'a>(
    cluster: &'a Cluster,
    hooks: &'a Recorder,
    job: String,
    trace: String,
    label: &'a str,
) -> Vec<Expectation<'a>> {
    let api = move || json_lines(&cluster.api().log());
    let converter = move || json_lines(&cluster.converter.log());
    let host = move || json_lines(&cluster.system.host.log());
    let logged = |lines: Vec<Value>, what: &str, trace: &str| {
        lines
            .iter()
            .any(|line| message(line) == what && in_trace(line, trace))
    };
    let t = trace.clone();
    let queued = Expectation::new(
        format!("{label}: worker API logs `job queued` in the trace"),
        {
            let t = t.clone();
            move || logged(api(), "job queued", &t)
        },
    );
    let converted = Expectation::new(
        format!("{label}: converter logs `converted` in the trace"),
        {
            let t = t.clone();
            move || logged(converter(), "converted", &t)
        },
    );
    let announced = Expectation::new(
        format!("{label}: converter logs `announced` in the trace"),
        {
            let t = t.clone();
            move || logged(converter(), "announced", &t)
        },
    );
    let bridged = Expectation::new(
        format!("{label}: bridge logs `event delivered` in the trace"),
        {
            let t = t.clone();
            move || logged(host(), "event delivered", &t)
        },
    );
    let events = Expectation::new(
        format!("{label}: host logs the bridge's POST /events in the trace"),
        {
            let t = t.clone();
            move || {
                host().iter().any(|line| {
                    message(line) == "request" && line["path"] == "/events" && in_trace(line, &t)
                })
            }
        },
    );
    let notifier = Expectation::new(
        format!("{label}: notifier's webhook delivery line names the trace id"),
        {
            let t = t.clone();
            move || {
                cluster.system.host.log().lines().any(|line| {
                    line.contains(&t) && line.contains("webhook") && !line.starts_with('{')
                })
            }
        },
    );
    let webhook = Expectation::new(
        format!("{label}: the webhook request carries a traceparent of the trace"),
        move || {
            hooks.requests("/hook").iter().any(|r| {
                job_of(r) == job
                    && r.headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .and_then(trace_of)
                        .as_deref()
                        == Some(trace.as_str())
            })
        },
    );
    vec![
        queued, converted, announced, bridged, events, notifier, webhook,
    ]
}

/// The cluster's shape with JSON logs. One upload with a client's `traceparent` is followed
/// from the host through the gateway to the worker API, the converter, the `mp3` queue, the
/// bridge, the notifier and the webhook. A job handed to the worker API directly (as the
/// gateway does) is followed the same way from the worker on; an upload without a
/// `traceparent` gets a fresh, valid trace that the worker API logs too.
#[tokio::test]
async fn one_uploads_trace_runs_through_every_process_log() {
    let hooks = Recorder::start().await;
    let cluster = Cluster::start();
    let system = &cluster.system;
    let token = system.user("traced").await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let owner = me["id"].as_str().unwrap().to_owned();
    expect(
        system
            .authed(&token, Method::PUT, "/v1/me/webhook")
            .json(&json!({ "url": format!("{}/hook", hooks.url) })),
        200,
    )
    .await;

    // Through the gateway, in the client's trace.
    let (traceparent, trace) = client_traceparent();
    let request_id = format!("traced-{}", uuid_like());
    let (job, answered_id) = upload(
        &cluster,
        &token,
        &[("traceparent", &traceparent), ("x-request-id", &request_id)],
    )
    .await;
    assert_eq!(
        answered_id, request_id,
        "the host answers with the client's id"
    );

    // Straight to the worker API, in another trace.
    let (direct_parent, direct_trace) = client_traceparent();
    let direct_job = upload_to_worker(&cluster, &owner, &direct_parent).await;

    // Without a traceparent.
    let fresh_id = format!("fresh-{}", uuid_like());
    let (fresh_job, _) = upload(&cluster, &token, &[("x-request-id", &fresh_id)]).await;

    for id in [&job, &direct_job, &fresh_job] {
        hooks.wait_for("/hook", 1, |r| job_of(r) == *id).await;
    }

    let host_line = || host_request_line(&system.host, &request_id);
    let fresh_line = || host_request_line(&system.host, &fresh_id);
    let fresh_trace = || {
        fresh_line()
            .map(|line| field(&line, "trace_id").concat())
            .unwrap_or_default()
    };
    let mut expectations = vec![
        Expectation::new(
            "host: the upload's request line carries the client's trace",
            || {
                host_line().is_some_and(|line| {
                    line["path"] == "/v1/jobs"
                        && line["status"] == 202
                        && field(&line, "trace_id") == [trace.as_str()]
                })
            },
        ),
        Expectation::new(
            "host: the upload without a traceparent is logged in a fresh, valid trace",
            || {
                let fresh = fresh_trace();
                is_trace_id(&fresh) && fresh != trace && fresh != direct_trace
            },
        ),
        Expectation::new(
            "worker API: the upload without a traceparent is logged in that fresh trace",
            || {
                let fresh = fresh_trace();
                json_lines(&cluster.api().log()).iter().any(|line| {
                    message(line) == "job queued"
                        && field(line, "request_id") == [fresh_id.as_str()]
                        && is_trace_id(&fresh)
                        && in_trace(line, &fresh)
                })
            },
        ),
    ];
    expectations.extend(downstream(&cluster, &hooks, job, trace.clone(), "upload"));
    expectations.extend(downstream(
        &cluster,
        &hooks,
        direct_job,
        direct_trace.clone(),
        "direct to the worker",
    ));
    expect_all(&expectations, LOG_DEADLINE, || cluster.logs()).await;
}
