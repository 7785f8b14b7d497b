//! `PUT`, `GET` and `DELETE /v1/me/webhook`: the caller's webhook endpoint, checked to be a
//! public https address, and its signing secret (shown once, when it is made).

use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, DbError, notifications};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::jobs::{MAX_URL_BYTES, essence};
use crate::notifications::{from_unix_ms, unix_ms};

/// Largest body of `PUT /v1/me/webhook`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A webhook as its owner sees it (the contract's shape).
pub use mp3conv_contract::notification::Webhook as WebhookView;

/// `GET /v1/me/webhook`.
pub fn get(db: &dyn Db, user: &str) -> Result<Reply, ApiError> {
    let hook = notifications::webhook(db, user)
        .map_err(database)?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Reply::json(200, &view(hook, false)?))
}

/// `PUT /v1/me/webhook` (and the preset routes) take JSON only: checked before the body is
/// read (415 otherwise).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    match content_type.map(essence).as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType("application/json")),
    }
}

/// `PUT /v1/me/webhook` once its body is read: the checked URL, kept with a new secret.
pub fn put(
    db: &dyn Db,
    user: &str,
    body: &[u8],
    allow_local: bool,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let hook = notifications::Webhook {
        user_id: user.to_owned(),
        url: webhook_url(body, allow_local)?,
        secret: new_secret(),
        created_at: unix_ms(now),
    };
    notifications::put_webhook(db, &hook).map_err(database)?;
    // The only time the secret is shown.
    Ok(Reply::json(200, &view(hook, true)?))
}

/// `DELETE /v1/me/webhook`.
pub fn delete(db: &dyn Db, user: &str) -> Result<Reply, ApiError> {
    if !notifications::delete_webhook(db, user).map_err(database)? {
        return Err(ApiError::WebhookNotFound);
    }
    Ok(Reply::empty(204))
}

fn view(hook: notifications::Webhook, with_secret: bool) -> Result<WebhookView, ApiError> {
    Ok(WebhookView {
        created_at: from_unix_ms(hook.created_at)
            .ok_or_else(|| ApiError::Internal("a webhook's time is out of range".into()))?,
        url: hook.url,
        secret: with_secret.then_some(hook.secret),
    })
}

fn database(err: DbError) -> ApiError {
    ApiError::Internal(format!("database: {err}"))
}

/// A signing secret as Standard Webhooks writes them: `whsec_` and 32 random bytes in base64.
fn new_secret() -> String {
    use base64::Engine as _;
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `PUT /v1/me/webhook`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
}

/// The endpoint of a webhook registration, checked and normalised: https (http only when local
/// delivery is allowed by `webhook_allow_local`), no credentials, and a host that is public
/// unless local delivery is allowed.
///
/// The URL is read with the WHATWG rules HTTP clients use, so every spelling of an address
/// (`0x7f000001`, `2130706433`, `127.1`, `0177.0.0.1`, `%31%32%37.0.0.1`, full-width digits)
/// is judged as the address it is, and the normalised URL is what is kept: the notifier calls
/// exactly what was checked here. (A name can resolve anywhere later; delivery checks the
/// resolved address again.)
pub fn webhook_url(body: &[u8], allow_local: bool) -> Result<String, ApiError> {
    let request: WebhookBody = serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        let code = if message.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(code, message)
    })?;
    let invalid = |why: &str| ApiError::bad_request("invalid_webhook_url", why.to_owned());
    let text = request.url.trim();
    let too_long = || invalid("the URL is longer than 2048 bytes");
    if text.len() > MAX_URL_BYTES {
        return Err(too_long());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("the URL has spaces or control characters"));
    }
    let url = url::Url::parse(text).map_err(|_| invalid("the URL is not a valid absolute URL"))?;
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(too_long());
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        _ => return Err(invalid("the URL must be https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("the URL must not carry credentials"));
    }
    let local = match url.host() {
        None => return Err(invalid("the URL has no host")),
        Some(url::Host::Domain(name)) => mp3conv_contract::address::is_local_name(name),
        Some(url::Host::Ipv4(ip)) => !mp3conv_contract::address::is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !mp3conv_contract::address::is_public(ip.into()),
    };
    if local && !allow_local {
        return Err(ApiError::bad_request(
            "webhook_forbidden",
            "webhooks must go to a public address: not loopback, private, link-local, \
             multicast, reserved or metadata addresses",
        ));
    }
    // A fragment is not sent in HTTP requests: the stored endpoint is what is called.
    let mut url = url;
    url.set_fragment(None);
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn webhook_urls() {
        let url = |u: &str| format!(r#"{{"url":"{u}"}}"#).into_bytes();
        assert_eq!(
            webhook_url(&url("https://hooks.example.com/in?x=1"), false).unwrap(),
            "https://hooks.example.com/in?x=1"
        );
        // A fragment is never sent, so it is not kept (the notifier's client refuses one).
        assert_eq!(
            webhook_url(&url("https://hooks.example.com/in?x=1#frag"), false).unwrap(),
            "https://hooks.example.com/in?x=1"
        );
        for (bad, code) in [
            ("http://hooks.example.com/in", "invalid_webhook_url"),
            ("ftp://hooks.example.com", "invalid_webhook_url"),
            ("https://user:pw@hooks.example.com", "invalid_webhook_url"),
            ("https://127.0.0.1:8080/x", "webhook_forbidden"),
            ("https://10.0.0.8/x", "webhook_forbidden"),
            ("https://169.254.169.254/latest", "webhook_forbidden"),
            ("https://[::1]/x", "webhook_forbidden"),
            ("https://[::ffff:192.168.0.1]/x", "webhook_forbidden"),
            ("https://localhost/x", "webhook_forbidden"),
            ("https://metadata.google.internal/x", "webhook_forbidden"),
            // Every spelling of an address is the address (WHATWG host parsing).
            ("https://0x7f000001/", "webhook_forbidden"),
            ("https://2130706433/", "webhook_forbidden"),
            ("https://127.1/", "webhook_forbidden"),
            ("https://0177.0.0.1/", "webhook_forbidden"),
            ("https://0/", "webhook_forbidden"),
            ("https://%31%32%37.0.0.1/", "webhook_forbidden"),
            (
                "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
                "webhook_forbidden",
            ),
            ("https://127.0.0.1./", "webhook_forbidden"),
            ("https://LOCALHOST./x", "webhook_forbidden"),
            ("https://metadata/x", "webhook_forbidden"),
            ("https://[::ffff:7f00:1]/", "webhook_forbidden"),
            ("https://[64:ff9b::7f00:1]/", "webhook_forbidden"),
            ("https://224.0.0.1/", "webhook_forbidden"),
            ("https://240.0.0.1/", "webhook_forbidden"),
            ("https://example.com@127.0.0.1/", "invalid_webhook_url"),
            ("https://", "invalid_webhook_url"),
            ("https://exa mple.com/", "invalid_webhook_url"),
            ("/relative", "invalid_webhook_url"),
            ("", "invalid_webhook_url"),
        ] {
            match webhook_url(&url(bad), false) {
                Err(ApiError::BadRequest { code: c, .. }) => assert_eq!(c, code, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(webhook_url(&url("http://127.0.0.1:9000/hook"), true).is_ok());
        // What is kept is the address that was checked, not the spelling.
        assert_eq!(
            webhook_url(&url("https://0x5db8d822/in"), false).unwrap(),
            "https://93.184.216.34/in"
        );
        assert_eq!(
            webhook_url(&url("HTTPS://Hooks.Example.COM"), false).unwrap(),
            "https://hooks.example.com/"
        );
        assert!(matches!(
            webhook_url(br#"{"url":"https://a.example","secret":"x"}"#, false),
            Err(ApiError::BadRequest {
                code: "unknown_field",
                ..
            })
        ));
    }

    #[test]
    fn the_secret_is_shown_once() {
        let db = testing::database();
        testing::add_user(&db, "u1", "u1@example.com");
        assert_eq!(get(&db, "u1"), Err(ApiError::WebhookNotFound));
        let now = OffsetDateTime::from_unix_timestamp(1_795_852_800).unwrap();
        let made = put(
            &db,
            "u1",
            br#"{"url":"https://hooks.example.com/in"}"#,
            false,
            now,
        )
        .unwrap();
        let made: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
        let secret = made["secret"].as_str().unwrap();
        assert!(
            secret.starts_with("whsec_") && secret.len() == 6 + 44,
            "{secret}"
        );
        assert_eq!(made["created_at"], "2026-11-28T08:00:00Z");
        let shown: serde_json::Value =
            serde_json::from_slice(&get(&db, "u1").unwrap().body).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"url": "https://hooks.example.com/in", "created_at": "2026-11-28T08:00:00Z"})
        );
        assert_eq!(delete(&db, "u1").unwrap().status, 204);
        assert_eq!(delete(&db, "u1"), Err(ApiError::WebhookNotFound));
    }

    #[test]
    fn only_json_is_read() {
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        for bad in [None, Some("text/plain"), Some("application/jsonx")] {
            assert_eq!(
                check_content_type(bad),
                Err(ApiError::UnsupportedMediaType("application/json"))
            );
        }
    }
}
