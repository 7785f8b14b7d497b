//! Webhook deliveries signed the Standard Webhooks way (<https://www.standardwebhooks.com>), by
//! the `standardwebhooks` crate: `webhook-id`, `webhook-timestamp`, and
//! `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body` with the secret's
//! bytes (`whsec_<base64>`), so receivers can check them with the existing libraries.

use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook,
};

/// The headers of a delivery of `body` (JSON).
pub fn headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let signer =
        Webhook::new(secret).map_err(|_| "the webhook secret is not whsec_<base64>".to_owned())?;
    let signature = signer
        .sign(id, timestamp, body)
        .map_err(|err| format!("signing the delivery: {err}"))?;
    Ok(vec![
        ("content-type".into(), "application/json".into()),
        (HEADER_WEBHOOK_ID.into(), id.to_owned()),
        (HEADER_WEBHOOK_TIMESTAMP.into(), timestamp.to_string()),
        (HEADER_WEBHOOK_SIGNATURE.into(), signature),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_verify_and_tampering_does_not() {
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
        let verifier = Webhook::new(secret).unwrap();
        verifier.verify(body, &map).unwrap();
        // A changed body, or another secret, does not verify.
        assert!(verifier.verify(b"{}", &map).is_err());
        let other = Webhook::new("whsec_dGhlIG90aGVyIHNlY3JldCBrZXk=").unwrap();
        assert!(other.verify(body, &map).is_err());
    }

    #[test]
    fn the_signature_is_the_specification_s_test_vector() {
        // The example of the Standard Webhooks specification's test suite.
        let headers = headers(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(
            headers[3],
            (
                "webhook-signature".to_owned(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()
            )
        );
    }

    #[test]
    fn a_secret_that_is_not_base64_is_an_error() {
        assert!(headers("whsec_***", "id", 1, b"{}").is_err());
    }
}
