//! Webhook deliveries signed the Standard Webhooks way (<https://www.standardwebhooks.com>):
//! `webhook-id`, `webhook-timestamp`, and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body` with the secret's bytes (`whsec_<base64>`), so receivers can check
//! them with the existing libraries.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `v1,` signature of a delivery.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the webhook secret is not whsec_<base64>".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|err| err.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The headers of a delivery of `body`.
pub fn headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    Ok(vec![
        ("content-type".into(), "application/json".into()),
        ("webhook-id".into(), id.to_owned()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        (
            "webhook-signature".into(),
            signature(secret, id, timestamp, body)?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standard_webhooks_library_verifies_our_signatures() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"type":"job.done","data":{"job_id":"j"}}"#;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut map = http::HeaderMap::new();
        for (name, value) in headers(secret, "msg_1", now, body).unwrap() {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let verifier = standardwebhooks::Webhook::new(secret).unwrap();
        verifier.verify(body, &map).unwrap();
        // A changed body, or another secret, does not verify.
        assert!(verifier.verify(b"{}", &map).is_err());
        let other = standardwebhooks::Webhook::new("whsec_dGhlIG90aGVyIHNlY3JldCBrZXk=").unwrap();
        assert!(other.verify(body, &map).is_err());
    }

    #[test]
    fn a_secret_that_is_not_base64_is_an_error() {
        assert!(signature("whsec_***", "id", 1, b"").is_err());
    }
}
