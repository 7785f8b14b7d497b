//! The gateway's settings: its Spin variables (named as the fields), read by the kit's typed
//! loader and validated; a bad setting is a configuration error (500, logged), never a guess.

use std::time::Duration;

use mp3conv_kit::config::{self, BaseUrl, ConfigError, Database, Json, Seconds, ServiceToken};
use mp3conv_tokens::Verifier;
use mp3conv_tokens::keys::Jwks;
use serde::Deserialize;

/// Everything the gateway needs. Secrets print as `[redacted]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The keys tokens are verified with (a JWKS).
    pub jwt_public_keys: Json<Jwks>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Where users live (the gateway checks that a token's user still exists); with
    /// `mysql_url`.
    pub database: Database,
    /// Base URL of the worker's internal API, e.g. `http://127.0.0.1:8090`.
    pub worker_url: BaseUrl,
    /// The internal service token the worker expects.
    pub worker_token: ServiceToken,
    /// Base URL of the auth function (`http://auth.spin.internal`: Spin service chaining).
    pub auth_url: BaseUrl,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Whether webhooks may use http and local addresses (local development only).
    #[serde(default)]
    pub webhook_allow_local: bool,
    /// How long an event stream stays open at most (it also ends when the caller's token
    /// expires); clients reconnect with `Last-Event-ID`. 1 s to 1 hour.
    #[serde(default = "default_event_stream")]
    pub event_stream_seconds: Seconds,
    /// How long a ticket of `POST /v1/events/ticket` may be redeemed. 1 s to 10 minutes.
    #[serde(default = "default_event_ticket")]
    pub event_ticket_seconds: Seconds,
}

fn default_event_stream() -> Seconds {
    Seconds(Duration::from_secs(300))
}

fn default_event_ticket() -> Seconds {
    Seconds(Duration::from_secs(60))
}

impl Config {
    /// Reads and checks the settings through a variable lookup (Spin's `variables::get` in the
    /// component).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let config: Config = config::load(get)?;
        if config.jwt_public_keys.0.keys.is_empty() {
            return Err(ConfigError::new("jwt_public_keys", "lists no keys"));
        }
        if config.max_upload_bytes == 0 {
            return Err(ConfigError::new(
                "max_upload_bytes",
                "must be a positive number of bytes",
            ));
        }
        config::in_range(
            "event_stream_seconds",
            config.event_stream_seconds.0.as_secs(),
            1..=3600,
        )?;
        config::in_range(
            "event_ticket_seconds",
            config.event_ticket_seconds.0.as_secs(),
            1..=600,
        )?;
        config
            .verifier()
            .map_err(|err| ConfigError::new("jwt_public_keys", err))?;
        Ok(config)
    }

    /// The token verifier for these keys, issuer and audience.
    pub fn verifier(&self) -> Result<Verifier, String> {
        Verifier::new(
            &self.jwt_public_keys.0,
            &self.jwt_issuer,
            &self.jwt_audience,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn variables() -> Vec<(&'static str, String)> {
        vec![
            (
                "jwt_public_keys",
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}"#.into(),
            ),
            ("jwt_issuer", "mp3conv".into()),
            ("jwt_audience", "mp3conv".into()),
            ("database", "sqlite".into()),
            ("worker_url", "http://127.0.0.1:8090/".into()),
            ("worker_token", "a-long-internal-token".into()),
            ("auth_url", "http://auth.spin.internal".into()),
            ("max_upload_bytes", "1024".into()),
        ]
    }

    pub(crate) fn load(vars: &[(&'static str, String)]) -> Result<Config, ConfigError> {
        Config::load(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn loads_and_normalises() {
        let config = load(&variables()).unwrap();
        assert_eq!(config.worker_url.as_str(), "http://127.0.0.1:8090");
        assert_eq!(config.max_upload_bytes, 1024);
        assert_eq!(*config.database.sql(), mp3conv_sql::Database::Sqlite);
        assert!(!config.webhook_allow_local);
        assert_eq!(config.event_stream_seconds.0, Duration::from_secs(300));
        assert_eq!(config.event_ticket_seconds.0, Duration::from_secs(60));
        let mut vars = variables();
        vars.push(("event_stream_seconds", "30".into()));
        vars.push(("event_ticket_seconds", "5".into()));
        let config = load(&vars).unwrap();
        assert_eq!(config.event_stream_seconds.0, Duration::from_secs(30));
        assert_eq!(config.event_ticket_seconds.0, Duration::from_secs(5));
        let printed = format!("{config:?}");
        assert!(!printed.contains("a-long-internal-token"), "{printed}");
    }

    #[test]
    fn refuses_bad_settings_naming_the_variable() {
        for (name, value) in [
            ("jwt_public_keys", "not json"),
            ("jwt_public_keys", r#"{"keys":[]}"#),
            (
                "jwt_public_keys",
                r#"{"keys":[{"kty":"RSA","crv":"x","x":"y","kid":"k"}]}"#,
            ),
            ("database", "postgres"),
            ("worker_url", "ftp://x"),
            ("worker_url", "http://x/?q"),
            ("worker_token", "short"),
            ("max_upload_bytes", "-1"),
            ("max_upload_bytes", "0"),
            ("auth_url", ""),
            ("webhook_allow_local", "yes"),
            ("event_stream_seconds", "0"),
            ("event_stream_seconds", "3601"),
            ("event_stream_seconds", "5m"),
            ("event_ticket_seconds", "0"),
            ("event_ticket_seconds", "601"),
        ] {
            let mut vars = variables();
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value.into()));
            let err = load(&vars).unwrap_err();
            assert_eq!(err.variable(), Some(name), "{name}={value}: {err}");
        }
    }
}
