//! The function's settings, read once per request from Spin variables (they are cheap host
//! calls) and validated; a bad setting is a configuration error, never a guess.

use std::time::Duration;

use crate::keys::{Jwks, PublicJwk, signing_key_from_pem};

/// Where users live.
pub use mp3conv_sql::Database;

/// The signing key, as PEM, and the key id derived from its public half.
#[derive(Clone)]
pub struct SigningKey {
    pub pem: String,
    pub kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Everything the auth function needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    pub signing_key: SigningKey,
    /// Every key tokens may be signed with (the current one and any still being rotated out).
    pub public_keys: Jwks,
    pub issuer: String,
    pub audience: String,
    pub token_ttl: Duration,
    /// Failed logins allowed per account within `login_window` before 429.
    pub login_max_failures: u32,
    pub login_window: Duration,
}

/// The variable names, as declared for the component in `spin.toml`.
pub mod var {
    pub const DATABASE: &str = "database";
    pub const MYSQL_URL: &str = "mysql_url";
    pub const SIGNING_KEY: &str = "jwt_signing_key";
    pub const PUBLIC_KEYS: &str = "jwt_public_keys";
    pub const ISSUER: &str = "jwt_issuer";
    pub const AUDIENCE: &str = "jwt_audience";
    pub const TOKEN_TTL: &str = "token_ttl_seconds";
    pub const LOGIN_MAX_FAILURES: &str = "login_max_failures";
    pub const LOGIN_WINDOW: &str = "login_window_seconds";
}

impl Config {
    /// Builds the settings from a variable lookup (Spin's `variables::get` in the component).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let required = |name: &str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(format!("variable `{name}` is not set"))
        };
        let database = match required(var::DATABASE)?.trim() {
            "sqlite" => Database::Sqlite,
            "mysql" => Database::Mysql(required(var::MYSQL_URL)?),
            other => {
                return Err(format!(
                    "variable `{}`: `{other}` is neither sqlite nor mysql",
                    var::DATABASE
                ));
            }
        };
        let pem = required(var::SIGNING_KEY)?;
        let signing = signing_key_from_pem(&pem)
            .map_err(|e| format!("variable `{}`: {e}", var::SIGNING_KEY))?;
        let own = PublicJwk::from_public_key(&signing.verifying_key().to_bytes());
        let public_keys: Jwks = serde_json::from_str(&required(var::PUBLIC_KEYS)?)
            .map_err(|e| format!("variable `{}` is not a JWKS: {e}", var::PUBLIC_KEYS))?;
        for key in &public_keys.keys {
            if key.kty != "OKP" || key.crv != "Ed25519" {
                return Err(format!(
                    "variable `{}`: key `{}` is not an Ed25519 key",
                    var::PUBLIC_KEYS,
                    key.kid
                ));
            }
        }
        if !public_keys.keys.iter().any(|key| key.x == own.x) {
            return Err(format!(
                "variable `{}` does not contain the signing key's public key (kid {})",
                var::PUBLIC_KEYS,
                own.kid
            ));
        }
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match get(name) {
                None => Ok(default),
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(value) if value > 0 => Ok(value),
                    _ => Err(format!(
                        "variable `{name}`: `{text}` is not a positive whole number"
                    )),
                },
            }
        };
        Ok(Config {
            database,
            signing_key: SigningKey { pem, kid: own.kid },
            public_keys,
            issuer: get(var::ISSUER).unwrap_or_else(|| "mp3conv".into()),
            audience: get(var::AUDIENCE).unwrap_or_else(|| "mp3conv".into()),
            token_ttl: Duration::from_secs(number(var::TOKEN_TTL, 3600)?),
            login_max_failures: u32::try_from(number(var::LOGIN_MAX_FAILURES, 5)?)
                .map_err(|_| "login_max_failures is too large".to_owned())?,
            login_window: Duration::from_secs(number(var::LOGIN_WINDOW, 900)?),
        })
    }
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
            (var::DATABASE, "sqlite".to_owned()),
            (var::SIGNING_KEY, TEST_KEY.to_owned()),
            (var::PUBLIC_KEYS, test_jwks()),
        ])
    }

    pub fn test_config() -> Config {
        let vars = variables();
        Config::load(|name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn defaults() {
        let config = test_config();
        assert_eq!(config.database, Database::Sqlite);
        assert_eq!(config.token_ttl, Duration::from_secs(3600));
        assert_eq!(config.login_max_failures, 5);
        assert_eq!(config.login_window, Duration::from_secs(900));
        assert!(
            !format!("{config:?}").contains("PRIVATE KEY"),
            "the key never prints"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let cases: [(&str, &str, &str); 5] = [
            (var::DATABASE, "postgres", "neither sqlite nor mysql"),
            (var::DATABASE, "mysql", "mysql_url"),
            (var::SIGNING_KEY, "nope", "PKCS#8"),
            (var::PUBLIC_KEYS, r#"{"keys":[]}"#, "does not contain"),
            (var::TOKEN_TTL, "-5", "positive"),
        ];
        for (name, value, expected) in cases {
            let mut vars = variables();
            vars.insert(name, value.to_owned());
            let err = Config::load(|n| vars.get(n).cloned()).unwrap_err();
            assert!(err.contains(expected), "{name}={value}: {err}");
        }
    }
}
