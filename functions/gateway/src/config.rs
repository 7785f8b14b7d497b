//! The gateway's settings, read from Spin variables once per request and validated; a bad
//! setting is a configuration error (500, logged), never a guess.

pub use mp3conv_sql::Database;
use mp3conv_tokens::keys::Jwks;

/// Everything the gateway needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub public_keys: Jwks,
    pub issuer: String,
    pub audience: String,
    /// Where users live (the gateway checks that a token's user still exists).
    pub database: Database,
    /// Base URL of the worker's internal API, e.g. `http://127.0.0.1:8090`.
    pub worker_url: String,
    /// The internal service token the worker expects.
    pub worker_token: String,
    /// Base URL of the auth function (`http://auth.spin.internal`: Spin service chaining).
    pub auth_url: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Whether webhooks may use http and local addresses (local development only).
    pub webhook_allow_local: bool,
}

/// The variable names, as declared for the component in `spin.toml`.
pub mod var {
    pub const PUBLIC_KEYS: &str = "jwt_public_keys";
    pub const ISSUER: &str = "jwt_issuer";
    pub const AUDIENCE: &str = "jwt_audience";
    pub const DATABASE: &str = "database";
    pub const WORKER_URL: &str = "worker_url";
    pub const WORKER_TOKEN: &str = "worker_token";
    pub const AUTH_URL: &str = "auth_url";
    pub const MAX_UPLOAD_BYTES: &str = "max_upload_bytes";
    pub const WEBHOOK_ALLOW_LOCAL: &str = "webhook_allow_local";
}

impl Config {
    /// Builds the settings from a variable lookup (Spin's `variables::get` in the component).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let required = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(format!("variable `{name}` is not set"))
        };
        let public_keys: Jwks = serde_json::from_str(&required(var::PUBLIC_KEYS)?)
            .map_err(|e| format!("variable `{}` is not a JWKS: {e}", var::PUBLIC_KEYS))?;
        if public_keys.keys.is_empty() {
            return Err(format!("variable `{}` lists no keys", var::PUBLIC_KEYS));
        }
        let database = Database::from_variables(&get)?;
        let base_url = |name: &str| -> Result<String, String> {
            let url = required(name)?;
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or(format!("variable `{name}` must be an http(s) URL"))?;
            if rest.is_empty() || rest.contains(['?', '#']) {
                return Err(format!("variable `{name}` must be scheme://host[:port]"));
            }
            Ok(url.trim_end_matches('/').to_owned())
        };
        let worker_token = required(var::WORKER_TOKEN)?;
        if worker_token.len() < 16 {
            return Err(format!(
                "variable `{}` must be at least 16 characters",
                var::WORKER_TOKEN
            ));
        }
        let max_upload_bytes = required(var::MAX_UPLOAD_BYTES)?
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!(
                "variable `{}` must be a positive number of bytes",
                var::MAX_UPLOAD_BYTES
            ))?;
        let webhook_allow_local = match get(var::WEBHOOK_ALLOW_LOCAL).as_deref().map(str::trim) {
            None | Some("" | "false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "variable `{}`: `{other}` is neither true nor false",
                    var::WEBHOOK_ALLOW_LOCAL
                ));
            }
        };
        Ok(Config {
            webhook_allow_local,
            public_keys,
            issuer: required(var::ISSUER)?,
            audience: required(var::AUDIENCE)?,
            database,
            worker_url: base_url(var::WORKER_URL)?,
            worker_token,
            auth_url: base_url(var::AUTH_URL)?,
            max_upload_bytes,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn variables() -> Vec<(&'static str, String)> {
        vec![
            (
                var::PUBLIC_KEYS,
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}"#.into(),
            ),
            (var::ISSUER, "mp3conv".into()),
            (var::AUDIENCE, "mp3conv".into()),
            (var::DATABASE, "sqlite".into()),
            (var::WORKER_URL, "http://127.0.0.1:8090/".into()),
            (var::WORKER_TOKEN, "a-long-internal-token".into()),
            (var::AUTH_URL, "http://auth.spin.internal".into()),
            (var::MAX_UPLOAD_BYTES, "1024".into()),
        ]
    }

    fn load(vars: &[(&'static str, String)]) -> Result<Config, String> {
        Config::load(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn loads_and_normalises() {
        let config = load(&variables()).unwrap();
        assert_eq!(config.worker_url, "http://127.0.0.1:8090");
        assert_eq!(config.max_upload_bytes, 1024);
        assert_eq!(config.database, Database::Sqlite);
    }

    #[test]
    fn refuses_bad_settings_naming_the_variable() {
        for (name, value) in [
            (var::PUBLIC_KEYS, "not json"),
            (var::PUBLIC_KEYS, r#"{"keys":[]}"#),
            (var::DATABASE, "postgres"),
            (var::WORKER_URL, "ftp://x"),
            (var::WORKER_URL, "http://x/?q"),
            (var::WORKER_TOKEN, "short"),
            (var::MAX_UPLOAD_BYTES, "-1"),
            (var::MAX_UPLOAD_BYTES, "0"),
            (var::AUTH_URL, ""),
        ] {
            let mut vars = variables();
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value.into()));
            let err = load(&vars).unwrap_err();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }
}
