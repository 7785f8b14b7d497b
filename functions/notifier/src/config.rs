//! The notifier's settings, read from Spin variables and validated.

use std::time::Duration;

pub use mp3conv_sql::Database;

/// Where email goes: an HTTP email API (WASI functions cannot speak SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailApi {
    /// The endpoint that takes `{"from","to","subject","text"}` as JSON.
    pub url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub key: String,
    pub from: String,
}

/// Everything the notifier needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    /// Base URL of the worker's internal API, which confirms what events claim.
    pub worker_url: String,
    pub worker_token: String,
    /// Base URL users reach the gateway at, for links in messages.
    pub public_url: String,
    /// Off when `email_api_url` is empty.
    pub email: Option<EmailApi>,
    /// Webhook attempts per notification, and the wait before the second (doubling).
    pub webhook_attempts: u32,
    pub webhook_backoff: Duration,
    /// Connect and first-byte timeout of each outbound call.
    pub outbound_timeout: Duration,
    /// Who may post events to `/events`.
    pub events: EventsAuth,
}

/// How `/events` tells the event source from anyone else.
#[derive(Clone, PartialEq, Eq)]
pub enum EventsAuth {
    /// Events carry `Authorization: Bearer <token>` (the eventing bridge of `mp3conv up` and
    /// `mp3conv serve` sends it).
    Token(String),
    /// `events_token` is empty: every event is refused.
    Closed,
    /// `events_trust_network`: the deployment alone decides who reaches `/events` (the
    /// cluster's notifier Service is cluster-local and carries only this component, and the
    /// RabbitmqSource cannot send a credential).
    Network,
}

impl std::fmt::Debug for EventsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(match self {
            EventsAuth::Token(_) => "Token(..)",
            EventsAuth::Closed => "Closed",
            EventsAuth::Network => "Network",
        })
    }
}

impl EventsAuth {
    /// Whether a request with this `Authorization` header comes from the event source. The
    /// token is compared in constant time.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq as _;
        match self {
            EventsAuth::Network => true,
            EventsAuth::Closed => false,
            EventsAuth::Token(token) => {
                let presented = authorization
                    .and_then(|value| value.trim().split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, rest)| rest.trim())
                    .unwrap_or_default();
                bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
            }
        }
    }
}

/// Shortest `events_token` accepted.
pub const MIN_EVENTS_TOKEN_CHARS: usize = 16;

pub mod var {
    pub const WORKER_URL: &str = "worker_url";
    pub const WORKER_TOKEN: &str = "worker_token";
    pub const PUBLIC_URL: &str = "public_url";
    pub const EMAIL_API_URL: &str = "email_api_url";
    pub const EMAIL_API_KEY: &str = "email_api_key";
    pub const EMAIL_FROM: &str = "email_from";
    pub const WEBHOOK_ATTEMPTS: &str = "webhook_attempts";
    pub const WEBHOOK_BACKOFF_MS: &str = "webhook_backoff_ms";
    pub const OUTBOUND_TIMEOUT_MS: &str = "outbound_timeout_ms";
    pub const EVENTS_TOKEN: &str = "events_token";
    pub const EVENTS_TRUST_NETWORK: &str = "events_trust_network";
}

impl Config {
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let value = |name: &str| get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
        let required = |name: &str| {
            Some(value(name))
                .filter(|v| !v.is_empty())
                .ok_or(format!("variable `{name}` is not set"))
        };
        let url = |name: &str| -> Result<String, String> {
            let url = required(name)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("variable `{name}` must be an http(s) URL"));
            }
            Ok(url.trim_end_matches('/').to_owned())
        };
        let number = |name: &str, range: std::ops::RangeInclusive<u64>| -> Result<u64, String> {
            required(name)?
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or(format!(
                    "variable `{name}` must be a number from {} to {}",
                    range.start(),
                    range.end()
                ))
        };
        let email = match value(var::EMAIL_API_URL).as_str() {
            "" => None,
            _ => Some(EmailApi {
                url: url(var::EMAIL_API_URL)?,
                key: value(var::EMAIL_API_KEY),
                from: required(var::EMAIL_FROM)?,
            }),
        };
        let events = match (
            value(var::EVENTS_TRUST_NETWORK).as_str(),
            value(var::EVENTS_TOKEN),
        ) {
            ("true", _) => EventsAuth::Network,
            ("" | "false", token) if token.is_empty() => EventsAuth::Closed,
            ("" | "false", token) if token.chars().count() < MIN_EVENTS_TOKEN_CHARS => {
                return Err(format!(
                    "variable `{}` must be at least {MIN_EVENTS_TOKEN_CHARS} characters",
                    var::EVENTS_TOKEN
                ));
            }
            ("" | "false", token) => EventsAuth::Token(token),
            _ => {
                return Err(format!(
                    "variable `{}` must be true or false",
                    var::EVENTS_TRUST_NETWORK
                ));
            }
        };
        Ok(Config {
            database: Database::from_variables(&get)?,
            worker_url: url(var::WORKER_URL)?,
            worker_token: required(var::WORKER_TOKEN)?,
            public_url: url(var::PUBLIC_URL)?,
            email,
            webhook_attempts: number(var::WEBHOOK_ATTEMPTS, 1..=10)? as u32,
            webhook_backoff: Duration::from_millis(number(var::WEBHOOK_BACKOFF_MS, 0..=60_000)?),
            outbound_timeout: Duration::from_millis(number(
                var::OUTBOUND_TIMEOUT_MS,
                100..=60_000,
            )?),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(extra: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let mut all = vec![
            ("database", "sqlite"),
            (var::WORKER_URL, "http://127.0.0.1:8090/"),
            (var::WORKER_TOKEN, "a-long-internal-token"),
            (var::PUBLIC_URL, "http://127.0.0.1:3000"),
            (var::EMAIL_API_URL, ""),
            (var::EMAIL_FROM, "mp3conv <noreply@example.com>"),
            (var::WEBHOOK_ATTEMPTS, "3"),
            (var::WEBHOOK_BACKOFF_MS, "200"),
            (var::OUTBOUND_TIMEOUT_MS, "5000"),
            (var::EVENTS_TOKEN, "a-long-events-token"),
        ];
        all.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
        all.extend_from_slice(extra);
        move |name| {
            all.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn email_is_off_unless_configured() {
        let config = Config::load(vars(&[])).unwrap();
        assert_eq!(config.email, None);
        assert_eq!(config.worker_url, "http://127.0.0.1:8090");
        let config = Config::load(vars(&[
            (var::EMAIL_API_URL, "http://127.0.0.1:9/send"),
            (var::EMAIL_API_KEY, "key"),
        ]))
        .unwrap();
        assert_eq!(config.email.unwrap().url, "http://127.0.0.1:9/send");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (name, value) in [
            (var::WORKER_URL, "ftp://x"),
            (var::WEBHOOK_ATTEMPTS, "0"),
            (var::WEBHOOK_BACKOFF_MS, "soon"),
            (var::EMAIL_API_URL, "smtp://mail"),
            (var::EVENTS_TOKEN, "short"),
            (var::EVENTS_TRUST_NETWORK, "yes"),
        ] {
            let err = Config::load(vars(&[(name, value)])).unwrap_err();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn events_need_the_token_unless_the_network_is_trusted() {
        let token = Config::load(vars(&[])).unwrap().events;
        assert!(token.allows(Some("Bearer a-long-events-token")));
        assert!(token.allows(Some("bearer  a-long-events-token ")));
        for wrong in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer a-long-events-toke"),
            Some("Bearer a-long-events-tokenX"),
            Some("Basic a-long-events-token"),
            Some("a-long-events-token"),
        ] {
            assert!(!token.allows(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{token:?}"), "Token(..)", "the token never prints");
        // No token: closed to everyone, the right guess included.
        let closed = Config::load(vars(&[(var::EVENTS_TOKEN, "")]))
            .unwrap()
            .events;
        assert_eq!(closed, EventsAuth::Closed);
        assert!(!closed.allows(Some("Bearer ")));
        let network = Config::load(vars(&[(var::EVENTS_TRUST_NETWORK, "true")]))
            .unwrap()
            .events;
        assert!(network.allows(None));
    }
}
