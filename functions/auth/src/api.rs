//! The auth routes. Everything here is plain Rust: the component hands over the request's
//! method, path, two headers and a size-checked body, and sends back the [`Reply`].
//!
//! | route | success | errors |
//! |---|---|---|
//! | `POST /auth/register` `{"email","password"}` | 201 `{"id","email","created_at"}` | 400 `invalid_email`, `invalid_password`, `malformed_json`; 409 `email_taken`; 415 |
//! | `POST /auth/login` JSON or HTTP Basic | 200 `{"access_token","token_type","expires_in"}` | 401 `invalid_credentials`; 429 `too_many_attempts` + `Retry-After`; 400; 415 |
//! | `POST /auth/validate` `Authorization: Bearer` | 200 the claims | 401 `invalid_token` |
//! | `GET /auth/jwks.json` | 200 the public keys | |
//! | `DELETE /auth/me` `Authorization: Bearer` | 204, the account is gone | 401 `invalid_token` |
//!
//! Any route: 404 `not_found`, 405 `method_not_allowed` (with `Allow`), 413 `body_too_large`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::password;
use crate::store::{Reservation, StoreError, User, UserStore};
use crate::tokens::Tokens;

/// Largest request body the auth routes read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The parts of a request the routes look at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A response, independent of the HTTP library that carries it (the functions' one reply
/// type).
pub use mp3conv_kit::reply::Reply;

/// What a request runs against.
pub struct Context<'a> {
    pub config: &'a Config,
    pub tokens: &'a Tokens,
    pub store: &'a dyn UserStore,
    /// Unix time in milliseconds.
    pub now_ms: i64,
}

/// Every way a request can fail, mapped to HTTP in [`ApiError::reply`] and nowhere else.
#[derive(Debug, PartialEq)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed(&'static str),
    UnsupportedMediaType,
    MalformedJson(String),
    BodyTooLarge,
    InvalidEmail,
    InvalidPassword,
    EmailTaken,
    /// Wrong email or password. `basic`: they came as HTTP Basic, so the answer challenges
    /// for Basic again; a JSON login's answer names the `Credentials` scheme instead, or a
    /// browser's `fetch` would open its own password dialog instead of letting the page say
    /// what went wrong.
    InvalidCredentials {
        basic: bool,
    },
    TooManyAttempts {
        retry_after_secs: u64,
    },
    InvalidToken,
    /// A storage or signing failure: logged, opaque to the client.
    Internal(String),
}

impl ApiError {
    pub fn reply(&self) -> Reply {
        let (status, code, message) = match self {
            ApiError::NotFound => (404, "not_found", "no such route".to_owned()),
            ApiError::MethodNotAllowed(allow) => {
                (405, "method_not_allowed", format!("use {allow}"))
            }
            ApiError::UnsupportedMediaType => (
                415,
                "unsupported_media_type",
                "send application/json".to_owned(),
            ),
            ApiError::MalformedJson(why) => (
                400,
                "malformed_json",
                format!("the body is not the expected JSON: {why}"),
            ),
            ApiError::BodyTooLarge => (
                413,
                "body_too_large",
                format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::InvalidEmail => (
                400,
                "invalid_email",
                "that is not a valid email address".to_owned(),
            ),
            ApiError::InvalidPassword => (
                400,
                "invalid_password",
                "passwords are 8 to 128 characters".to_owned(),
            ),
            ApiError::EmailTaken => (
                409,
                "email_taken",
                "an account with that email exists".to_owned(),
            ),
            ApiError::InvalidCredentials { .. } => (
                401,
                "invalid_credentials",
                "invalid email or password".to_owned(),
            ),
            ApiError::TooManyAttempts { .. } => (
                429,
                "too_many_attempts",
                "too many failed logins; try again later".to_owned(),
            ),
            ApiError::InvalidToken => (
                401,
                "invalid_token",
                "the token is missing, malformed, expired or not ours".to_owned(),
            ),
            ApiError::Internal(_) => (
                500,
                "internal",
                "something went wrong on our side".to_owned(),
            ),
        };
        let reply = Reply::error(status, code, &message);
        match self {
            ApiError::MethodNotAllowed(allow) => reply.with_header("allow", (*allow).to_owned()),
            ApiError::TooManyAttempts { retry_after_secs } => {
                reply.with_header("retry-after", retry_after_secs.to_string())
            }
            ApiError::InvalidToken => reply.with_header(
                "www-authenticate",
                r#"Bearer error="invalid_token""#.to_owned(),
            ),
            ApiError::InvalidCredentials { basic: true } => {
                reply.with_header("www-authenticate", r#"Basic realm="mp3conv""#.to_owned())
            }
            // Every 401 names a scheme; this one no browser acts on: send the credentials again.
            ApiError::InvalidCredentials { basic: false } => reply.with_header(
                "www-authenticate",
                r#"Credentials realm="mp3conv""#.to_owned(),
            ),
            _ => reply,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Duplicate => ApiError::EmailTaken,
            StoreError::Other(message) => ApiError::Internal(format!("store: {message}")),
        }
    }
}

/// Answers one request.
pub fn handle(request: &Request<'_>, context: &Context<'_>) -> Result<Reply, ApiError> {
    match (request.path, request.method) {
        ("/auth/register", "POST") => register(request, context),
        ("/auth/register", _) => Err(ApiError::MethodNotAllowed("POST")),
        ("/auth/login", "POST") => login(request, context),
        ("/auth/login", _) => Err(ApiError::MethodNotAllowed("POST")),
        ("/auth/validate", "POST") => validate(request, context),
        ("/auth/validate", _) => Err(ApiError::MethodNotAllowed("POST")),
        ("/auth/jwks.json", "GET" | "HEAD") => Ok(Reply::json(
            200,
            &serde_json::to_value(context.tokens.jwks())
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        )
        .with_header("cache-control", "public, max-age=300")),
        ("/auth/jwks.json", _) => Err(ApiError::MethodNotAllowed("GET")),
        ("/auth/me", "DELETE") => delete_account(request, context),
        ("/auth/me", _) => Err(ApiError::MethodNotAllowed("DELETE")),
        _ => Err(ApiError::NotFound),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn json_body<T: serde::de::DeserializeOwned>(request: &Request<'_>) -> Result<T, ApiError> {
    let is_json = request
        .content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(request.body).map_err(|err| ApiError::MalformedJson(err.to_string()))
}

/// The email as stored and the key it is unique by, or `None` when it is not an address.
pub fn normalize_email(email: &str) -> Option<(String, String)> {
    let email = email.trim();
    let (local, domain) = email.split_once('@')?;
    let valid = (3..=254).contains(&email.chars().count())
        && !local.is_empty()
        && local.chars().count() <= 64
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        });
    valid.then(|| (email.to_owned(), email.to_lowercase()))
}

fn password_ok(password: &str) -> bool {
    (8..=128).contains(&password.chars().count())
}

fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn register(request: &Request<'_>, context: &Context<'_>) -> Result<Reply, ApiError> {
    let credentials: Credentials = json_body(request)?;
    let (email, email_key) = normalize_email(&credentials.email).ok_or(ApiError::InvalidEmail)?;
    if !password_ok(&credentials.password) {
        return Err(ApiError::InvalidPassword);
    }
    if context.store.find_by_email(&email_key)?.is_some() {
        return Err(ApiError::EmailTaken);
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        email_key,
        password_hash: password::hash(&credentials.password).map_err(ApiError::Internal)?,
        created_at: context.now_ms.div_euclid(1000),
    };
    // A concurrent registration of the same email loses on the unique key: 409 as well.
    context.store.insert(&user)?;
    Ok(Reply::json(
        201,
        &json!({ "id": user.id, "email": user.email, "created_at": rfc3339(user.created_at) }),
    ))
}

/// Credentials from HTTP Basic (the original system's clients; `true`) or a JSON body.
fn login_credentials(request: &Request<'_>) -> Result<(Credentials, bool), ApiError> {
    if let Some(encoded) = request
        .authorization
        .and_then(|value| strip_scheme(value, "basic"))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(ApiError::InvalidCredentials { basic: true })?;
        let (email, password) = decoded
            .split_once(':')
            .ok_or(ApiError::InvalidCredentials { basic: true })?;
        let credentials = Credentials {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        return Ok((credentials, true));
    }
    Ok((json_body(request)?, false))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The key a login is throttled under: the normalized email, or for input that is no email a
/// digest of it, which fits the key column however long the input (a malformed login must be
/// a 401 like any other, not a database error).
fn login_key(email: &str) -> String {
    use sha2::Digest as _;
    match normalize_email(email) {
        Some((_, key)) => key,
        None => {
            let digest = sha2::Sha256::digest(email.trim().to_lowercase().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("malformed:{hex}")
        }
    }
}

fn login(request: &Request<'_>, context: &Context<'_>) -> Result<Reply, ApiError> {
    let (credentials, basic) = login_credentials(request)?;
    context.tokens.can_issue().map_err(ApiError::Internal)?;
    // Unknown or malformed emails are throttled and timed like real ones.
    let email_key = login_key(&credentials.email);
    let config = context.config;
    let window_ms = i64::try_from(config.login_window.as_millis()).unwrap_or(i64::MAX);
    let since = context.now_ms.saturating_sub(window_ms);
    // The attempt is reserved before the password is checked, so parallel guesses cannot
    // all pass a count taken before any of them was recorded.
    let reservation = context.store.reserve_attempt(
        &email_key,
        context.now_ms,
        since,
        config.login_max_failures,
    )?;
    if let Reservation::Exhausted { oldest } = reservation {
        let until = oldest.unwrap_or(context.now_ms).saturating_add(window_ms);
        let retry_after_secs = u64::try_from((until - context.now_ms + 999) / 1000)
            .unwrap_or(1)
            .max(1);
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }
    let user = context.store.find_by_email(&email_key)?;
    let verified = match &user {
        Some(user) => password::verify(&credentials.password, &user.password_hash),
        None => {
            password::verify_against_nothing(&credentials.password);
            false
        }
    };
    // A failed attempt keeps its reservation: that is its record.
    let Some(user) = user.filter(|_| verified) else {
        return Err(ApiError::InvalidCredentials { basic });
    };
    context.store.clear_failures(&email_key)?;
    let now_secs = u64::try_from(context.now_ms / 1000).unwrap_or_default();
    let (token, expires_in) = context
        .tokens
        .issue(&user.id, &user.email, now_secs)
        .map_err(ApiError::Internal)?;
    Ok(Reply::json(
        200,
        &json!({ "access_token": token, "token_type": "Bearer", "expires_in": expires_in }),
    )
    .with_header("cache-control", "no-store"))
}

/// The claims of the request's bearer token.
fn bearer_claims(
    request: &Request<'_>,
    context: &Context<'_>,
) -> Result<crate::tokens::Claims, ApiError> {
    let token = request
        .authorization
        .and_then(|value| strip_scheme(value, "bearer"))
        .ok_or(ApiError::InvalidToken)?;
    context
        .tokens
        .verify(token.trim())
        .map_err(|_| ApiError::InvalidToken)
}

/// Deletes the caller's account. Tokens already issued stop working at the gateway, which
/// checks that their user still exists.
fn delete_account(request: &Request<'_>, context: &Context<'_>) -> Result<Reply, ApiError> {
    let claims = bearer_claims(request, context)?;
    if !context.store.delete_user(&claims.sub)? {
        return Err(ApiError::InvalidToken);
    }
    Ok(Reply::empty(204))
}

fn validate(request: &Request<'_>, context: &Context<'_>) -> Result<Reply, ApiError> {
    let claims = bearer_claims(request, context)?;
    Ok(Reply::json(
        200,
        &serde_json::to_value(claims).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::test_config;
    use crate::store::MemoryStore;

    struct Harness {
        config: Config,
        tokens: Tokens,
        store: MemoryStore,
        now_ms: i64,
    }

    impl Harness {
        fn new() -> Harness {
            let config = test_config();
            Harness {
                tokens: Tokens::new(&config).unwrap(),
                config,
                store: MemoryStore::default(),
                now_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            }
        }

        fn call(&self, method: &str, path: &str, authorization: Option<&str>, body: &str) -> Reply {
            let request = Request {
                method,
                path,
                authorization,
                content_type: Some("application/json"),
                body: body.as_bytes(),
            };
            let context = Context {
                config: &self.config,
                tokens: &self.tokens,
                store: &self.store,
                now_ms: self.now_ms,
            };
            handle(&request, &context).unwrap_or_else(|err| err.reply())
        }
    }

    fn body(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A signing key that cannot be used stops logins before they are counted or checked,
    /// and nothing else: tokens already issued still verify.
    #[test]
    fn a_bad_signing_key_stops_only_logins() {
        let mut h = Harness::new();
        let credentials = r#"{"email":"ann@example.com","password":"hunter2hunter2"}"#;
        assert_eq!(
            h.call("POST", "/auth/register", None, credentials).status,
            201
        );
        let login = h.call("POST", "/auth/login", None, credentials);
        let token = format!("Bearer {}", body(&login)["access_token"].as_str().unwrap());

        let good = h.config.clone();
        h.config.signing_key_pem = mp3conv_kit::config::Secret::new("not a key".to_owned());
        h.tokens = Tokens::new(&h.config).unwrap();
        assert_eq!(
            h.call("POST", "/auth/validate", Some(&token), "").status,
            200
        );
        // Refused before the password is checked or the attempt counted: six wrong passwords
        // counted would have throttled the account.
        let wrong = r#"{"email":"ann@example.com","password":"not the password"}"#;
        for _ in 0..6 {
            assert_eq!(h.call("POST", "/auth/login", None, wrong).status, 500);
        }
        h.tokens = Tokens::new(&good).unwrap();
        h.config = good;
        assert_eq!(h.call("POST", "/auth/login", None, credentials).status, 200);
    }

    #[test]
    fn deleting_the_account_forgets_the_user() {
        let h = Harness::new();
        let reply = h.call(
            "POST",
            "/auth/register",
            None,
            r#"{"email":"gone@example.com","password":"hunter2hunter2"}"#,
        );
        assert_eq!(reply.status, 201);
        let login = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"gone@example.com","password":"hunter2hunter2"}"#,
        );
        let token = format!("Bearer {}", body(&login)["access_token"].as_str().unwrap());
        assert_eq!(h.call("DELETE", "/auth/me", None, "").status, 401);
        assert_eq!(h.call("DELETE", "/auth/me", Some(&token), "").status, 204);
        // Gone: a second delete and a login both fail.
        assert_eq!(h.call("DELETE", "/auth/me", Some(&token), "").status, 401);
        let login = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"gone@example.com","password":"hunter2hunter2"}"#,
        );
        assert_eq!(login.status, 401);
        assert_eq!(h.call("GET", "/auth/me", Some(&token), "").status, 405);
    }

    #[test]
    fn register_login_validate() {
        let h = Harness::new();
        let reply = h.call(
            "POST",
            "/auth/register",
            None,
            r#"{"email":" Ann@Example.com ","password":"hunter2hunter2"}"#,
        );
        assert_eq!(reply.status, 201, "{:?}", body(&reply));
        assert_eq!(body(&reply)["email"], "Ann@Example.com");
        let dup = h.call(
            "POST",
            "/auth/register",
            None,
            r#"{"email":"ann@example.COM","password":"whatever123"}"#,
        );
        assert_eq!(
            (dup.status, body(&dup)["error"]["code"].clone()),
            (409, "email_taken".into())
        );

        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann@example.com:hunter2hunter2")
        );
        let reply = h.call("POST", "/auth/login", Some(&basic), "");
        assert_eq!(reply.status, 200);
        let token = body(&reply)["access_token"].as_str().unwrap().to_owned();
        assert_eq!(body(&reply)["token_type"], "Bearer");

        let reply = h.call(
            "POST",
            "/auth/validate",
            Some(&format!("Bearer {token}")),
            "",
        );
        assert_eq!(reply.status, 200);
        assert_eq!(body(&reply)["email"], "Ann@Example.com");
        let reply = h.call("POST", "/auth/validate", Some("Bearer nope"), "");
        assert_eq!(reply.status, 401);
        assert!(
            header(&reply, "www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }

    #[test]
    fn wrong_password_and_unknown_email_look_the_same() {
        let h = Harness::new();
        h.call(
            "POST",
            "/auth/register",
            None,
            r#"{"email":"bo@example.com","password":"password-1"}"#,
        );
        let wrong = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"bo@example.com","password":"password-2"}"#,
        );
        let unknown = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"nobody@example.com","password":"password-2"}"#,
        );
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong, unknown);
    }

    #[test]
    fn only_a_basic_login_is_challenged_for_basic() {
        let h = Harness::new();
        let json = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"nobody@example.com","password":"password-2"}"#,
        );
        assert_eq!(json.status, 401);
        // A page's fetch gets the error to show, not the browser's password dialog.
        assert_eq!(
            header(&json, "www-authenticate"),
            Some(r#"Credentials realm="mp3conv""#)
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nobody@example.com:password-2")
        );
        let basic = h.call("POST", "/auth/login", Some(&basic), "");
        assert_eq!(basic.status, 401);
        assert_eq!(
            header(&basic, "www-authenticate"),
            Some(r#"Basic realm="mp3conv""#)
        );
    }

    #[test]
    fn throttles_after_five_failures_then_recovers() {
        let mut h = Harness::new();
        h.call(
            "POST",
            "/auth/register",
            None,
            r#"{"email":"cy@example.com","password":"password-1"}"#,
        );
        for _ in 0..5 {
            let reply = h.call(
                "POST",
                "/auth/login",
                None,
                r#"{"email":"cy@example.com","password":"wrong-one"}"#,
            );
            assert_eq!(reply.status, 401);
        }
        // Even the right password waits out the window.
        let reply = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"CY@example.com","password":"password-1"}"#,
        );
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "retry-after"), Some("900"));
        h.now_ms += 900_000;
        let reply = h.call(
            "POST",
            "/auth/login",
            None,
            r#"{"email":"cy@example.com","password":"password-1"}"#,
        );
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn bad_input_gets_a_clear_4xx() {
        let h = Harness::new();
        let cases = [
            (
                "POST",
                "/auth/register",
                r#"{"email":"no-at-sign","password":"password-1"}"#,
                400,
                "invalid_email",
            ),
            (
                "POST",
                "/auth/register",
                r#"{"email":"a@b.c","password":"short"}"#,
                400,
                "invalid_password",
            ),
            (
                "POST",
                "/auth/register",
                &format!(r#"{{"email":"a@b.c","password":"{}"}}"#, "x".repeat(129)),
                400,
                "invalid_password",
            ),
            (
                "POST",
                "/auth/register",
                r#"{"email":"a@b.c""#,
                400,
                "malformed_json",
            ),
            (
                "POST",
                "/auth/register",
                r#"{"email":"a@b.c","password":"password-1","admin":true}"#,
                400,
                "malformed_json",
            ),
            (
                "POST",
                "/auth/register",
                r#"["a@b.c"]"#,
                400,
                "malformed_json",
            ),
            ("GET", "/auth/register", "", 405, "method_not_allowed"),
            ("DELETE", "/auth/jwks.json", "", 405, "method_not_allowed"),
            ("GET", "/auth/nothing", "", 404, "not_found"),
            ("POST", "/auth/login", "{}", 400, "malformed_json"),
            ("POST", "/auth/validate", "", 401, "invalid_token"),
        ];
        for (method, path, payload, status, code) in cases {
            let reply = h.call(method, path, None, payload);
            assert_eq!(reply.status, status, "{method} {path} {payload}");
            assert_eq!(
                body(&reply)["error"]["code"],
                code,
                "{method} {path} {payload}"
            );
        }
        let request = Request {
            method: "POST",
            path: "/auth/register",
            authorization: None,
            content_type: Some("text/plain"),
            body: b"{}",
        };
        let context = Context {
            config: &h.config,
            tokens: &h.tokens,
            store: &h.store,
            now_ms: h.now_ms,
        };
        assert_eq!(
            handle(&request, &context),
            Err(ApiError::UnsupportedMediaType)
        );
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "Ünï@exämple.com", "x+tag@mail.example.org"] {
            assert!(normalize_email(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b.co",
            "a@",
            "a@b",
            "a b@c.de",
            "a@b@c.de",
            "a@.b",
            "a@b.",
            "<a@b.co>",
            "a'; DROP TABLE users;--@x",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
        assert_eq!(
            normalize_email(" Ab@Ex.COM ").unwrap(),
            ("Ab@Ex.COM".to_owned(), "ab@ex.com".to_owned())
        );
    }

    #[test]
    fn malformed_logins_are_keyed_by_a_short_digest() {
        let long = "a".repeat(400);
        let key = login_key(&long);
        assert!(key.len() <= 80, "{key}");
        assert_eq!(key, login_key(&long.to_uppercase()));
        assert_ne!(key, login_key(&"b".repeat(400)));
        assert_eq!(
            login_key(" Ab@Ex.COM "),
            normalize_email("ab@ex.com").unwrap().1
        );
    }
}
