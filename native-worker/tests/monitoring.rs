//! The operators' dashboard and alert rules (`knative/monitoring/`, issue #19) parse, have
//! the shape Grafana and Prometheus read, cover what an operator must see, and name only
//! worker metrics that a running worker really exposes.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{Backend, TestApp, media, spawn};
use serde_json::Value;

fn monitoring(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../knative/monitoring")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `mp3conv_worker_*` series an expression names.
fn worker_series(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("mp3conv_worker_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.push(name);
    }
    found
}

/// The metric family a series belongs to, as `# TYPE` lines name it.
fn family(series: &str) -> &str {
    ["_bucket", "_count", "_sum", "_total"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// The families a live worker exposes, after a done and a failed job.
async fn exposed(app: &TestApp) -> BTreeSet<String> {
    let done = app.upload_ok("olga", "talk.mp4", media("mp4")).await;
    let failed = app.upload_ok("olga", "silent.mp4", media("no-audio")).await;
    assert_eq!(app.settled("olga", &done).await["status"], "done");
    assert_eq!(app.settled("olga", &failed).await["status"], "failed");
    app.metrics()
        .await
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_name_real_metrics() {
    let dashboard: Value = serde_json::from_str(&monitoring("dashboard.json")).expect("JSON");
    let alerts: Value = serde_yaml::from_str(&monitoring("alerts.yaml")).expect("YAML");

    // The dashboard: panels with queries on the chosen Prometheus data source.
    assert_eq!(dashboard["uid"], "mp3conv-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    let mut titles = Vec::new();
    for panel in panels {
        titles.push(panel["title"].as_str().expect("a title").to_owned());
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().unwrap() > 0 && grid["h"].as_u64().unwrap() > 0);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            assert!(!expr.trim().is_empty());
            exprs.push(expr.to_owned());
        }
    }
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for needed in [
        "Jobs by outcome",
        "Conversion seconds",
        "Queue wait",
        "Dead letters",
        "Retention removals",
        "Quota refusals",
        "Bytes kept",
    ] {
        assert!(titles.iter().any(|t| t == needed), "no panel {needed:?}");
    }

    // The rules: each alert with a duration, a severity and words for whoever is paged.
    let mut names = Vec::new();
    for group in alerts["groups"].as_array().expect("groups") {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            names.push(name.to_owned());
            let expr = rule["expr"].as_str().expect("an expr");
            exprs.push(expr.to_owned());
            let wait = rule["for"].as_str().expect("a `for`");
            assert!(
                wait.ends_with('m') || wait.ends_with('h'),
                "{name}: for {wait}"
            );
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(["warning", "critical"].contains(&severity), "{name}");
            for words in ["summary", "description"] {
                let text = rule["annotations"][words].as_str().unwrap_or_default();
                assert!(text.len() > 20, "{name}: {words}");
            }
        }
    }
    for needed in [
        "Mp3convDeadLettersGrowing",
        "Mp3convVideoQueueStuck",
        "Mp3convNotifierFailing",
    ] {
        assert!(names.iter().any(|n| n == needed), "no alert {needed}");
    }

    // Each worker metric they name is one a worker exposes.
    let app = spawn(Backend::Embedded).await;
    let exposed = exposed(&app).await;
    let mut named = BTreeSet::new();
    for expr in &exprs {
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "unbalanced: {expr}"
        );
        named.extend(worker_series(expr));
    }
    assert!(named.len() >= 8, "{named:?}");
    for series in &named {
        assert!(
            exposed.contains(family(series)),
            "{series} is not a worker metric: {exposed:?}"
        );
    }
    app.stop().await;
}
