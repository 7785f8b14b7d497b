//! The cluster deployment, validated without a cluster: `scripts/validate_deploy.py` checks
//! knative/ against the upstream CRD schemas and the Kubernetes schemas, spin.toml against
//! Spin's manifest schema, and the references between them. Here: the repository passes, and
//! deliberately broken copies fail with the file and the field named.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with the validator's packages (`scripts/services.sh env` exports it).
fn python() -> String {
    std::env::var("MP3CONV_TEST_DEPLOY_PYTHON").expect(
        "MP3CONV_TEST_DEPLOY_PYTHON is not set: run the tests with `make test`, or \
         `eval \"$(scripts/services.sh env)\"` first",
    )
}

/// Runs the validator on `root`: (success, stdout, stderr).
fn validate(root: &Path) -> (bool, String, String) {
    let output = Command::new(python())
        .arg(repo().join("scripts/validate_deploy.py"))
        .arg(root)
        .output()
        .expect("running the validator");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A copy of what the validator reads, to break.
fn copy_of_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "spin.toml",
        "openapi.yaml",
        "eventing.toml",
        "Dockerfile",
        "Makefile",
        "Cargo.toml",
    ] {
        std::fs::copy(repo().join(file), dir.path().join(file)).unwrap();
    }
    copy_tree(&repo().join("knative"), &dir.path().join("knative"));
    copy_tree(
        &repo().join("tests/data/crds"),
        &dir.path().join("tests/data/crds"),
    );
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn replace(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_repository_deployment_is_valid() {
    let (ok, stdout, stderr) = validate(repo());
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.contains("0 problem(s)"), "{stderr}");
    // It looked at every kind the deployment uses.
    for kind in [
        "ConfigMap",
        "Deployment",
        "Job",
        "NetworkPolicy",
        "RabbitmqSource",
        "ScaledObject",
        "Service",
        "SpinApp",
        "TriggerAuthentication",
    ] {
        assert!(stderr.contains(kind), "{kind} was not checked: {stderr}");
    }
}

#[test]
fn broken_manifests_fail_naming_the_file_and_the_field() {
    // (file, text, replacement, what the report must say)
    let cases: [(&str, &str, &str, &[&str]); 10] = [
        (
            "knative/worker.yaml",
            "terminationGracePeriodSeconds",
            "terminationGracePeriodSecond",
            &["knative/worker.yaml", "terminationGracePeriodSecond"],
        ),
        (
            "knative/secrets.env.example",
            "worker-token=",
            "worker-tokn=",
            &["knative/worker.yaml", "secretKeyRef.key", "`worker-token`"],
        ),
        (
            "knative/eventing.yaml",
            "queueName: mp3",
            "queueNme: mp3",
            &["knative/eventing.yaml", "queueNme"],
        ),
        (
            "knative/functions.yaml",
            "runtimeClassName",
            "runtimeClasName",
            &["knative/functions.yaml", "runtimeClasName"],
        ),
        (
            "knative/eventing.yaml",
            "name: mp3conv-notifier",
            "name: mp3conv-notifer",
            &["knative/eventing.yaml", "spec.sink.ref.name"],
        ),
        (
            "knative/worker-autoscaling.yaml",
            "queueName: video",
            "queueName: videos",
            &["knative/worker-autoscaling.yaml", "queueName", "`videos`"],
        ),
        (
            "knative/worker-autoscaling.yaml",
            "protocol: http",
            "protocol: amqp",
            &[
                "knative/worker-autoscaling.yaml",
                "metadata.protocol",
                "unacknowledged",
            ],
        ),
        (
            "eventing.toml",
            "retry = 5",
            "retry = 2",
            &["eventing.toml", "delivery.retry"],
        ),
        (
            "spin.toml",
            "allowed_outbound_hosts = [\"mysql://{{ mysql_host }}\"]",
            "allowed_outbound_host = [\"mysql://{{ mysql_host }}\"]",
            &["spin.toml", "component.auth", "allowed_outbound_host"],
        ),
        (
            "knative/worker.yaml",
            "image: ghcr.io/mp3conv/mp3conv-worker:0.1.0",
            "image: ghcr.io/mp3conv/worker:latest",
            &["knative/worker.yaml", "containers[0].image", "Makefile"],
        ),
    ];
    for (file, from, to, expected) in cases {
        let copy = copy_of_repository();
        replace(copy.path(), file, from, to);
        let (ok, stdout, stderr) = validate(copy.path());
        assert!(!ok, "{file}: `{to}` passed: {stderr}");
        let line = stdout
            .lines()
            .find(|line| expected.iter().all(|part| line.contains(part)))
            .unwrap_or_else(|| panic!("{file}: no line names {expected:?}:\n{stdout}"));
        assert!(!line.is_empty());
    }
}

#[test]
fn a_required_variable_missing_from_a_function_is_caught() {
    let copy = copy_of_repository();
    let path = copy.path().join("knative/functions.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Drop SPIN_VARIABLE_WORKER_TOKEN (its entry is five lines) from the first Service.
    let start = text
        .find("            - name: SPIN_VARIABLE_WORKER_TOKEN")
        .unwrap();
    let end = start
        + text[start..]
            .match_indices('\n')
            .nth(4)
            .map(|(i, _)| i + 1)
            .unwrap();
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let (ok, stdout, _) = validate(copy.path());
    assert!(!ok);
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("knative/functions.yaml")
                && line.contains("Service/mp3conv-functions")
                && line.contains("`worker_token`")),
        "{stdout}"
    );
}

/// The `NAME=value` assignment of `name` in `text` (a Dockerfile `ARG` or a shell variable).
fn assigned<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let line = line.trim().strip_prefix("ARG ").unwrap_or(line.trim());
        line.strip_prefix(name)?.strip_prefix('=')
    })
}

#[test]
fn the_images_yt_dlp_is_the_tested_one() {
    let read = |file: &str| std::fs::read_to_string(repo().join(file)).unwrap();
    let (dockerfile, services) = (read("Dockerfile"), read("scripts/services.sh"));
    let image = assigned(&dockerfile, "YTDLP_VERSION").expect("the Dockerfile pins it");
    let tested = assigned(&services, "YTDLP_VERSION").expect("services.sh pins it");
    assert_eq!(image, tested);
    // And the tests run that very version.
    let program = std::env::var("MP3CONV_TEST_YTDLP").expect("MP3CONV_TEST_YTDLP is set");
    let output = Command::new(program)
        .args(["--ignore-config", "--version"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), tested);
}
