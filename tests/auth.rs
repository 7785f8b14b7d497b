//! The auth function through the host, from the repository's `spin.toml`, against SQLite and
//! against the real MariaDB: registration, login (JSON and Basic), throttling, tokens. Every
//! answer goes through [`common::api::send`], which checks it against `openapi.yaml`.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::api::send;
use common::{HostOptions, HostProcess, client, mp3conv, repo_manifest};
use serde_json::{Value, json};

/// Where users live for one test run.
enum Backend {
    Sqlite,
    Mysql { server: String, database: String },
}

struct Keys {
    pem: String,
    jwks: String,
    kid: String,
}

fn generate_keys(dir: &std::path::Path) -> Keys {
    let kid = mp3conv(&["keys", "generate", "--dir", dir.to_str().unwrap()])
        .trim()
        .to_owned();
    Keys {
        pem: std::fs::read_to_string(dir.join("jwt-signing.pem")).unwrap(),
        jwks: std::fs::read_to_string(dir.join("jwks.json")).unwrap(),
        kid,
    }
}

fn mysql_server() -> String {
    std::env::var("MP3CONV_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

impl Backend {
    fn mysql(name: &str) -> Backend {
        Backend::Mysql {
            server: mysql_server(),
            database: format!("mp3conv_auth_{name}_{}", std::process::id()),
        }
    }

    /// Starts the system with this backend migrated and `extra` variables set.
    fn start(&self, keys: &Keys, extra: &[(&str, &str)]) -> HostProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut options = HostOptions::new(repo_manifest())
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &keys.pem)
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &keys.jwks)
            // Required by the manifest; these tests never reach the worker.
            .env("SPIN_VARIABLE_WORKER_TOKEN", "auth-tests-have-no-worker");
        match self {
            Backend::Sqlite => {
                let db = dir.path().join("data").join("sqlite_db.db");
                mp3conv(&["migrate", "--sqlite", db.to_str().unwrap()]);
            }
            Backend::Mysql { server, database } => {
                let url = format!("{server}/{database}");
                mp3conv(&["migrate", "--mysql", &url]);
                let host = server.rsplit('@').next().unwrap().to_owned();
                options = options
                    .env("SPIN_VARIABLE_AUTH_DATABASE", "mysql")
                    .env("SPIN_VARIABLE_MYSQL_URL", &url)
                    .env("SPIN_VARIABLE_MYSQL_HOST", &host);
            }
        }
        for (name, value) in extra {
            options = options.env(&format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        options.dir = Some(dir);
        HostProcess::start(options)
    }

    async fn drop_database(&self) {
        if let Backend::Mysql { server, database } = self {
            use sqlx::Connection as _;
            let mut admin = sqlx::MySqlConnection::connect(server).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database}"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

async fn post(host: &HostProcess, path: &str, body: Value) -> (u16, Value) {
    let response = send(client().post(host.url(path)).json(&body)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn validate(host: &HostProcess, token: &str) -> (u16, Value) {
    let response = send(client().post(host.url("/auth/validate")).bearer_auth(token)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn login(host: &HostProcess, email: &str, password: &str) -> (u16, Value) {
    post(
        host,
        "/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}

/// Everything that needs no special variables, against one backend.
async fn scenario(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let keys = generate_keys(&key_dir.path().join("current"));
    let other = generate_keys(&key_dir.path().join("other"));
    let host = backend.start(&keys, &[]);

    // Register, then the same email in another case and with spaces is taken.
    let (status, body) = post(
        &host,
        "/auth/register",
        json!({ "email": "Ann@Example.com", "password": "correct horse" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email"], "Ann@Example.com");
    assert!(
        body["id"].as_str().unwrap().len() == 36
            && body["created_at"].as_str().unwrap().ends_with('Z')
    );
    let (status, body) = post(
        &host,
        "/auth/register",
        json!({ "email": "  ann@EXAMPLE.com ", "password": "another one" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("email_taken"))
    );

    // Unicode and SQL metacharacters are data, not code.
    for (email, password) in [
        ("ünïcødé@exämple.com", "pässwörd-ñ"),
        ("o'brien'OR'1'='1'--@example.com", "x' OR '1'='1"),
    ] {
        let (status, body) = post(
            &host,
            "/auth/register",
            json!({ "email": email, "password": password }),
        )
        .await;
        assert_eq!(status, 201, "{email}: {body}");
        let (status, _) = login(&host, email, password).await;
        assert_eq!(status, 200, "{email}");
        let (status, _) = login(&host, email, "x' OR '1'='1' --").await;
        assert_eq!(status, 401, "{email}");
    }

    let (status, body) = login(&host, "' OR '1'='1' --", "' OR '1'='1' --").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    // No email at all, longer than any email column: refused like a wrong password, on MariaDB
    // too (whose strict mode refuses a key longer than its column).
    let (status, body) = login(&host, &"a".repeat(400), "whatever password").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );

    // Login with JSON and with HTTP Basic, as the original system's clients do.
    let (status, body) = login(&host, "ANN@example.com", "correct horse").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let response = send(
        client()
            .post(host.url("/auth/login"))
            .basic_auth("ann@example.com", Some("correct horse")),
    )
    .await;
    assert_eq!(response.status(), 200);

    // Wrong password and unknown email: the same answer.
    let (wrong_status, wrong) = login(&host, "ann@example.com", "wrong horse").await;
    let (unknown_status, unknown) = login(&host, "nobody@example.com", "wrong horse").await;
    assert_eq!((wrong_status, unknown_status), (401, 401));
    assert_eq!(wrong, unknown);

    // Validate: the claims of a good token; 401 for every kind of bad one.
    let (status, claims) = validate(&host, &token).await;
    assert_eq!(status, 200, "{claims}");
    assert_eq!(claims["email"], "Ann@Example.com");
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("mp3conv"), Some("mp3conv"))
    );
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], keys.kid);
    assert_eq!(header["alg"], "EdDSA");

    let parts: Vec<&str> = token.split('.').collect();
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x55;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let claims_value: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    forged_header.kid = Some(keys.kid.clone());
    let other_key = jsonwebtoken::EncodingKey::from_ed_pem(other.pem.as_bytes()).unwrap();
    let other_signed = jsonwebtoken::encode(&forged_header, &claims_value, &other_key).unwrap();
    for (name, bad) in [
        ("tampered", tampered.as_str()),
        ("alg none", &none),
        ("other key", &other_signed),
        ("garbage", "abc"),
    ] {
        let (status, body) = validate(&host, bad).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_token", "{name}");
    }

    // The public keys, for offline verification.
    let response = send(client().get(host.url("/auth/jwks.json"))).await;
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], keys.kid);
    assert!(!jwks.to_string().contains("PRIVATE"));

    // Bad input: a clear 4xx with a JSON error, never a 5xx.
    let big = "x".repeat(1024 * 1024);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client()
                .post(host.url("/auth/register"))
                .header("content-type", "application/json")
                .body("{\"email\":"),
            400,
            "malformed_json",
        ),
        (
            client()
                .post(host.url("/auth/register"))
                .json(&json!({ "email": "a@b.co", "password": "short" })),
            400,
            "invalid_password",
        ),
        (
            client()
                .post(host.url("/auth/register"))
                .json(&json!({ "email": "not-an-email", "password": "long enough" })),
            400,
            "invalid_email",
        ),
        (
            client()
                .post(host.url("/auth/register"))
                .header("content-type", "text/plain")
                .body("hi"),
            415,
            "unsupported_media_type",
        ),
        (
            client()
                .post(host.url("/auth/register"))
                .header("content-type", "application/json")
                .body(big),
            413,
            "body_too_large",
        ),
        (
            client().get(host.url("/auth/login")),
            405,
            "method_not_allowed",
        ),
        (client().get(host.url("/auth/unknown")), 404, "not_found"),
    ];
    for (request, status, code) in cases {
        let response = send(request).await;
        assert_eq!(response.status().as_u16(), status, "{code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
    }
    assert!(
        !host.log().contains("correct horse"),
        "passwords never reach the log"
    );

    drop(host);
    backend.drop_database().await;
}

/// Short token lifetime and login window: expiry, throttling and recovery.
async fn time_scenario(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let keys = generate_keys(key_dir.path());
    let host = backend.start(
        &keys,
        &[("token_ttl_seconds", "1"), ("login_window_seconds", "2")],
    );
    let (status, _) = post(
        &host,
        "/auth/register",
        json!({ "email": "cy@example.com", "password": "right password" }),
    )
    .await;
    assert_eq!(status, 201);

    let (status, body) = login(&host, "cy@example.com", "right password").await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(1)));
    let token = body["access_token"].as_str().unwrap().to_owned();

    for attempt in 1..=5 {
        let (status, _) = login(&host, "cy@example.com", "wrong password").await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let response = send(
        client()
            .post(host.url("/auth/login"))
            .json(&json!({ "email": "CY@example.com", "password": "right password" })),
    )
    .await;
    assert_eq!(
        response.status(),
        429,
        "the sixth attempt is throttled, right password or not"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Waiting out the window (and the token's one-second life) is the behaviour under test.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    let (status, body) = login(&host, "cy@example.com", "right password").await;
    assert_eq!(status, 200, "recovered after the window: {body}");
    let (status, body) = validate(&host, &token).await;
    assert_eq!(status, 401, "the first token has expired: {body}");

    drop(host);
    backend.drop_database().await;
}

/// Forty wrong passwords at once for one account: the throttle counts them atomically, so no
/// more than `login_max_failures` (5, the default) are even checked; the rest are 429. The
/// right password is then refused until the window has passed.
async fn parallel_throttle_scenario(backend: Backend) {
    const WINDOW_SECS: u64 = 8;
    let key_dir = tempfile::tempdir().unwrap();
    let keys = generate_keys(key_dir.path());
    let window = WINDOW_SECS.to_string();
    let host = backend.start(&keys, &[("login_window_seconds", &window)]);
    let (status, _) = post(
        &host,
        "/auth/register",
        json!({ "email": "dee@example.com", "password": "right password" }),
    )
    .await;
    assert_eq!(status, 201);

    let started = std::time::Instant::now();
    let attempts = (0..40).map(|_| login(&host, "dee@example.com", "wrong password"));
    let answers = futures::future::join_all(attempts).await;
    let burst = started.elapsed();
    assert!(
        burst < Duration::from_secs(WINDOW_SECS),
        "the burst took {burst:?}, longer than the window: the test cannot judge"
    );
    let count = |status: u16| answers.iter().filter(|(s, _)| *s == status).count();
    assert_eq!(
        count(401) + count(429),
        40,
        "only 401 and 429: {:?}",
        answers.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(
        count(401) <= 5,
        "{} wrong passwords were checked",
        count(401)
    );
    assert!(count(401) >= 1, "the first attempt is checked");
    for (status, body) in &answers {
        let code = if *status == 401 {
            "invalid_credentials"
        } else {
            "too_many_attempts"
        };
        assert_eq!(body["error"]["code"], code, "{body}");
    }

    let (status, body) = login(&host, "dee@example.com", "right password").await;
    assert_eq!(
        status, 429,
        "throttled, even with the right password: {body}"
    );
    // Waiting out the window is the behaviour under test.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS) + Duration::from_millis(200)).await;
    let (status, body) = login(&host, "dee@example.com", "right password").await;
    assert_eq!(status, 200, "recovered after the window: {body}");

    drop(host);
    backend.drop_database().await;
}

/// Stored password hashes are a contract with every account, whatever build of the component
/// reads them: what the component (WebAssembly, SIMD) writes must verify with argon2id computed
/// natively, and hashes made natively with other costs, lanes, tag lengths or another variant
/// must verify in the component, through a real login.
#[tokio::test]
async fn component_hashes_agree_with_the_argon2_crate() {
    use argon2::password_hash::phc::PasswordHash;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    use argon2::{Algorithm, Argon2, Params, Version};
    use sqlx::Connection as _;

    let key_dir = tempfile::tempdir().unwrap();
    let keys = generate_keys(&key_dir.path().join("current"));
    let host = Backend::Sqlite.start(&keys, &[]);
    let db = host.data_dir().join("sqlite_db.db");
    let mut users = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();

    let (status, body) = post(
        &host,
        "/auth/register",
        json!({ "email": "made@example.com", "password": "made in the component" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'made@example.com'")
            .fetch_one(&mut users)
            .await
            .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    let parsed = PasswordHash::new(&stored).unwrap();
    assert!(
        Argon2::default()
            .verify_password(b"made in the component", &parsed)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"made in the component!", &parsed)
            .is_err()
    );

    let (status, _) = post(
        &host,
        "/auth/register",
        json!({ "email": "crate@example.com", "password": "replaced below" }),
    )
    .await;
    assert_eq!(status, 201);
    let cases = [
        // OWASP's costs, as the component makes them.
        (Algorithm::Argon2id, 19 * 1024, 2, 1, 32),
        // Four lanes, memory that is no whole number of segments, a longer tag.
        (Algorithm::Argon2id, 77, 3, 4, 48),
        // Another variant, which an older deployment could have stored.
        (Algorithm::Argon2i, 64, 2, 1, 32),
    ];
    for (algorithm, m, t, p, length) in cases {
        let password = format!("crate {algorithm} m={m} t={t} p={p}");
        let params = Params::new(m, t, p, Some(length)).unwrap();
        let hash = Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string();
        sqlx::query("UPDATE users SET password_hash = ? WHERE email = 'crate@example.com'")
            .bind(&hash)
            .execute(&mut users)
            .await
            .unwrap();
        let (status, body) = login(&host, "crate@example.com", &password).await;
        assert_eq!(status, 200, "{hash}: {body}");
        let (status, _) = login(&host, "crate@example.com", &format!("{password}.")).await;
        assert_eq!(status, 401, "{hash}");
    }
}

#[tokio::test]
async fn parallel_wrong_passwords_are_throttled_on_sqlite() {
    parallel_throttle_scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn parallel_wrong_passwords_are_throttled_on_mariadb() {
    parallel_throttle_scenario(Backend::mysql("parallel")).await;
}

#[tokio::test]
async fn auth_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn auth_on_mariadb() {
    scenario(Backend::mysql("main")).await;
}

#[tokio::test]
async fn expiry_and_throttling_on_sqlite() {
    time_scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn expiry_and_throttling_on_mariadb() {
    time_scenario(Backend::mysql("time")).await;
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("users.db");
    mp3conv(&["migrate", "--sqlite", db.to_str().unwrap()]);
    mp3conv(&["migrate", "--sqlite", db.to_str().unwrap()]);
    assert!(db.exists());
}
