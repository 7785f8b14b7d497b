//! The function's settings, read once per request from Spin variables (they are cheap host
//! calls) by the kit's typed loader into [`Variables`], then checked; a bad setting is a
//! configuration error, never a guess. Secrets are wrapped and never print.

use std::time::Duration;

use mp3conv_kit::config::{self, ConfigError, Json, Seconds, Secret};
use serde::Deserialize;

use crate::keys::{Jwks, PublicJwk, signing_key_from_pem};

/// Where users live (prints without the MySQL URL).
pub use mp3conv_kit::config::Database;

/// The signing key, read from its PEM, and the key id derived from its public half.
pub struct SigningKey {
    pub key: ed25519_dalek::SigningKey,
    pub kid: String,
}

/// Everything the auth function needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    /// The signing key as PEM, read and checked only when a token is issued
    /// ([`Config::signing_key`]): reading it costs more than the rest of a token check, and
    /// requests that only verify tokens do not need it.
    pub signing_key_pem: Secret,
    /// Every key tokens may be signed with (the current one and any still being rotated out).
    pub public_keys: Jwks,
    pub issuer: String,
    pub audience: String,
    pub token_ttl: Duration,
    /// Failed logins allowed per account within `login_window` before 429.
    pub login_max_failures: u32,
    pub login_window: Duration,
}

/// The variables, as declared for the component in `spin.toml` (field name = variable name).
#[derive(Debug, Deserialize)]
struct Variables {
    database: Database,
    jwt_signing_key: Secret,
    jwt_public_keys: Json<Jwks>,
    #[serde(default = "default_name")]
    jwt_issuer: String,
    #[serde(default = "default_name")]
    jwt_audience: String,
    #[serde(default = "default_token_ttl")]
    token_ttl_seconds: Seconds,
    #[serde(default = "default_login_max_failures")]
    login_max_failures: u32,
    #[serde(default = "default_login_window")]
    login_window_seconds: Seconds,
}

fn default_name() -> String {
    "mp3conv".into()
}

fn default_token_ttl() -> Seconds {
    Seconds(Duration::from_secs(3600))
}

fn default_login_max_failures() -> u32 {
    5
}

fn default_login_window() -> Seconds {
    Seconds(Duration::from_secs(900))
}

impl Config {
    /// Builds the settings from a variable lookup (Spin's `variables::get` in the component).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars: Variables = config::load(get)?;
        let Json(public_keys) = vars.jwt_public_keys;
        if public_keys.keys.is_empty() {
            return Err(ConfigError::new("jwt_public_keys", "lists no keys"));
        }
        for key in &public_keys.keys {
            if key.kty != "OKP" || key.crv != "Ed25519" {
                return Err(ConfigError::new(
                    "jwt_public_keys",
                    format!("key `{}` is not an Ed25519 key", key.kid),
                ));
            }
        }
        Ok(Config {
            database: vars.database,
            signing_key_pem: vars.jwt_signing_key,
            public_keys,
            issuer: vars.jwt_issuer,
            audience: vars.jwt_audience,
            token_ttl: positive("token_ttl_seconds", vars.token_ttl_seconds.0)?,
            login_max_failures: positive("login_max_failures", vars.login_max_failures)?,
            login_window: positive("login_window_seconds", vars.login_window_seconds.0)?,
        })
    }
}

impl Config {
    /// The signing key, once it is known to be an Ed25519 key whose public half is among the
    /// public keys (or tokens it signs would verify nowhere).
    pub fn signing_key(&self) -> Result<SigningKey, ConfigError> {
        let key = signing_key_from_pem(self.signing_key_pem.expose())
            .map_err(|e| ConfigError::new("jwt_signing_key", e))?;
        let own = PublicJwk::from_public_key(&key.verifying_key().to_bytes());
        if !self.public_keys.keys.iter().any(|listed| listed.x == own.x) {
            return Err(ConfigError::new(
                "jwt_public_keys",
                format!(
                    "does not contain the signing key's public key (kid {})",
                    own.kid
                ),
            ));
        }
        Ok(SigningKey { key, kid: own.kid })
    }
}

/// `value`, unless it is zero (the rule for every count and duration here).
fn positive<T: Default + PartialEq>(variable: &str, value: T) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(ConfigError::new(
            variable,
            "must be a positive whole number",
        ));
    }
    Ok(value)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 8410, section 10.3: an Ed25519 private key (a published test vector).
    pub const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----";

    pub fn test_jwks() -> String {
        let key = signing_key_from_pem(TEST_KEY).unwrap();
        let jwk = PublicJwk::from_public_key(&key.verifying_key().to_bytes());
        serde_json::to_string(&Jwks { keys: vec![jwk] }).unwrap()
    }

    pub fn variables() -> HashMap<&'static str, String> {
        HashMap::from([
            ("database", "sqlite".to_owned()),
            ("jwt_signing_key", TEST_KEY.to_owned()),
            ("jwt_public_keys", test_jwks()),
        ])
    }

    pub fn test_config() -> Config {
        let vars = variables();
        Config::load(|name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn defaults() {
        let config = test_config();
        assert_eq!(*config.database, mp3conv_sql::Database::Sqlite);
        assert_eq!(config.token_ttl, Duration::from_secs(3600));
        assert_eq!(config.login_max_failures, 5);
        assert_eq!(config.login_window, Duration::from_secs(900));
        assert_eq!(
            (config.issuer.as_str(), config.audience.as_str()),
            ("mp3conv", "mp3conv")
        );
        assert!(
            !format!("{config:?}").contains("PRIVATE KEY"),
            "the key never prints"
        );
        let mut vars = variables();
        vars.insert("database", "mysql".into());
        vars.insert("mysql_url", "mysql://auth:db-password@db/mp3conv".into());
        let config = Config::load(|n| vars.get(n).cloned()).unwrap();
        assert!(
            !format!("{config:?}").contains("db-password"),
            "nor the database password"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let cases: [(&str, &str, &str); 9] = [
            ("database", "postgres", "one of sqlite, mysql"),
            ("database", "mysql", "variable `mysql_url` is not set"),
            ("jwt_public_keys", r#"{"keys":[]}"#, "lists no keys"),
            ("jwt_public_keys", "not json", "not valid JSON"),
            ("token_ttl_seconds", "-5", "whole number"),
            ("token_ttl_seconds", "0", "positive"),
            ("login_max_failures", "0", "positive"),
            ("login_max_failures", "99999999999", "whole number"),
            ("login_window_seconds", "0", "positive"),
        ];
        for (name, value, expected) in cases {
            let mut vars = variables();
            vars.insert(name, value.to_owned());
            let err = Config::load(|n| vars.get(n).cloned())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{name}={value}: {err}");
            let variable = if value == "mysql" { "mysql_url" } else { name };
            assert!(err.starts_with(&format!("variable `{variable}`")), "{err}");
        }
    }

    /// The signing key is read when a token is issued, and refused then if it is not a key or
    /// not among the public keys.
    #[test]
    fn a_bad_signing_key_is_refused_when_used() {
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let other_jwks = serde_json::json!({
            "keys": [PublicJwk::from_public_key(&other.verifying_key().to_bytes())]
        });
        for (name, value, expected) in [
            ("jwt_signing_key", "nope".to_owned(), "PKCS#8"),
            (
                "jwt_public_keys",
                other_jwks.to_string(),
                "does not contain",
            ),
        ] {
            let mut vars = variables();
            vars.insert(name, value);
            let config = Config::load(|n| vars.get(n).cloned()).unwrap();
            let err = config.signing_key().err().unwrap().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(err.starts_with(&format!("variable `{name}`")), "{err}");
        }
        assert_eq!(
            test_config().signing_key().unwrap().kid,
            test_config().public_keys.keys[0].kid
        );
    }
}
