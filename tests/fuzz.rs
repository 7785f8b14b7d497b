//! The public API against its own document, by a schema-aware fuzzer, as an outside client
//! would see it: schemathesis (pinned in `scripts/services.sh`, `MP3CONV_TEST_SCHEMATHESIS`)
//! generates requests from `openapi.yaml`, valid and invalid, with a fixed seed and a bounded
//! number of examples, and runs every check: no 5xx, only documented statuses, content types
//! and headers, every response body valid against its schema, every schema-valid request
//! accepted and every schema-invalid one refused. Any failure fails the test with the
//! fuzzer's report, which names the request (`st replay` or the curl line reproduces it).

mod common;

use std::time::Duration;

use common::api::{System, documented};
use common::{HostOptions, HostProcess, repo_manifest};

/// The same seed and budget every run: the same requests, so a failure reproduces.
const SEED: &str = "20261130";
/// Examples per operation and phase: the run takes about 30 s on 2 cores.
const MAX_EXAMPLES: &str = "80";
/// The whole run is bounded; past this the fuzzer is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(420);
/// Operations that end the account the fuzzer works with: run after everything else.
const ACCOUNT_DELETIONS: [&str; 2] = ["DELETE /v1/me", "DELETE /auth/me"];
/// Ends the token it is sent with: run on a token of its own.
const SIGN_OUT: &str = "POST /v1/logout";
/// The fuzzer's hooks (Python, loaded through `SCHEMATHESIS_HOOKS`): the rules of the
/// conversion options a JSON Schema cannot state, so that a schema-valid request refused by one
/// of them, and by nothing else, is not reported as "valid data refused". Each is told apart by
/// its error code and field, so every other refusal of valid data still fails the run:
/// - `end` after `start` (by 100 ms): two fields compared, perhaps one from a preset;
/// - `preset` naming one the caller has saved (`unknown_preset`): stored data;
/// - a field in the query and the body at once (`duplicate_field`): two places;
/// - an `Idempotency-Key` the fuzzer sent before with another request (422
///   `idempotency_key_reused`): stored data again, the key's first request.
const HOOKS: &str = r#"
import json

import schemathesis

CROSS_FIELD = {
    ("invalid_option", "end", "after `start`"),
    ("unknown_preset", "preset", ""),
    ("duplicate_field", None, ""),
    ("idempotency_key_reused", None, ""),
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code not in (400, 422):
        return True
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return True
    for code, field, words in CROSS_FIELD:
        if (
            error.get("code") == code
            and (field is None or error.get("field") == field)
            and words in error.get("message", "")
        ):
            return False
    return True
"#;

fn schemathesis() -> String {
    std::env::var("MP3CONV_TEST_SCHEMATHESIS").expect(
        "MP3CONV_TEST_SCHEMATHESIS is not set: run the tests with `make test`, or \
         `eval \"$(scripts/services.sh env)\"` first",
    )
}

/// Runs `st run` on the repository's `openapi.yaml` against `base` with `token` as the bearer
/// credential; returns the report. Fails the test on any finding, error or a run past the
/// deadline.
async fn fuzz(base: &str, token: &str, selection: &[String]) -> String {
    let work = tempfile::tempdir().unwrap();
    // The token goes through the environment, not a file or the command line.
    let config = work.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "[auth.openapi.bearer]\nbearer = \"${MP3CONV_FUZZ_TOKEN}\"\n",
    )
    .unwrap();
    let hooks = work.path().join("hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .args(["--url", base])
        .args(["--checks", "all"])
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        // One worker: the same order of requests every run.
        .args(["--workers", "1"])
        // The fuzzer's own client timeout per request (schemathesis's flag); the host under
        // test runs with its defaults.
        .args(["--request-timeout", "60"])
        // Nothing remembered between runs: the seed alone decides.
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .args(selection)
        .env("MP3CONV_FUZZ_TOKEN", token)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .current_dir(work.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("the fuzzer ran past {DEADLINE:?}"))
        .expect("running schemathesis");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the fuzzer found problems ({}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

/// Every operation of `openapi.yaml` against `mp3conv up` with its defaults.
///
/// Three things differ from a user's `mp3conv up`, all for where the fuzzer may reach, not for
/// what the API does: the worker runs its API role only (`MP3CONV_WORKER__ROLE=api`), so the
/// links the fuzzer invents are taken and queued but never downloaded (tests may only reach
/// loopback); and `POST /events` is left out: it is the notifier's sink for the eventing
/// bridge, behind the events token an outside client does not have (every request would be
/// 401), and `tests/notifications.rs` covers it; event streams end after 1 s (see below).
#[tokio::test]
async fn openapi_fuzzing_finds_nothing() {
    let mut options = HostOptions::new(repo_manifest())
        .env("MP3CONV_WORKER__ROLE", "api")
        // The fuzzer reads every answer to its end, and an event stream ends only after
        // `event_stream_seconds` (300 s): 1 s keeps the run short. Where a stream ends is
        // tested in tests/events.rs.
        .env("SPIN_VARIABLE_EVENT_STREAM_SECONDS", "1");
    options.subcommand = "up";
    options = options
        .arg("--eventing")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/eventing.toml"));
    let system = System::from_parts(HostProcess::start(options), None);
    let token = system.user("fuzz").await;
    let base = system.url("");

    // Signing out, with a token of its own; everything but that and the account's deletion;
    // then the deletion.
    let own = system.user("fuzz-sign-out").await;
    let selection = ["--include-name".to_owned(), SIGN_OUT.to_owned()];
    let report = fuzz(&base, &own, &selection).await;
    assert!(report.contains("Tested: 1\n"), "{report}");
    let mut rest = vec!["--exclude-path".to_owned(), "/events".to_owned()];
    rest.extend(["--exclude-name".to_owned(), SIGN_OUT.to_owned()]);
    for operation in ACCOUNT_DELETIONS {
        rest.extend(["--exclude-name".to_owned(), operation.to_owned()]);
    }
    let report = fuzz(&base, &token, &rest).await;
    let expected = documented().len() - 2 - ACCOUNT_DELETIONS.len();
    assert!(
        report.contains(&format!("Tested: {expected}\n")),
        "the fuzzer did not test all {expected} operations:\n{report}"
    );
    let deletions: Vec<String> = ACCOUNT_DELETIONS
        .iter()
        .flat_map(|operation| ["--include-name".to_owned(), (*operation).to_owned()])
        .collect();
    let report = fuzz(&base, &token, &deletions).await;
    assert!(
        report.contains(&format!("Tested: {}\n", ACCOUNT_DELETIONS.len())),
        "{report}"
    );
    assert!(
        !system.host.log().contains("panicked"),
        "a component panicked:\n{}",
        system.host.log()
    );
}
