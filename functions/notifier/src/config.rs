//! The notifier's settings: Spin variables read into [`Variables`] by the kit's typed loader,
//! then the checks types cannot express. Secrets are wrapped and never print.

use std::time::Duration;

use mp3conv_kit::config::{
    self, BaseUrl, ConfigError, Database, HttpUrl, Millis, Secret, ServiceToken,
};
use serde::Deserialize;

/// Where email goes: an HTTP email API (WASI functions cannot speak SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailApi {
    /// The endpoint that takes `{"from","to","subject","text"}` as JSON.
    pub url: HttpUrl,
    /// Sent as `Authorization: Bearer <key>` (none without a key).
    pub key: Option<Secret>,
    pub from: String,
}

/// Everything the notifier needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    /// Base URL of the worker's internal API, which confirms what events claim.
    pub worker_url: BaseUrl,
    pub worker_token: ServiceToken,
    /// The URL users reach the gateway at, for links in messages.
    pub public_url: HttpUrl,
    /// Off when `email_api_url` is empty.
    pub email: Option<EmailApi>,
    /// Webhook attempts per notification, and the wait before the second (doubling).
    pub webhook_attempts: u32,
    pub webhook_backoff: Duration,
    /// Connect, first-byte and between-bytes timeout of each outbound call.
    pub outbound_timeout: Duration,
    /// Who may post events to `/events`.
    pub events: EventsAuth,
}

/// How `/events` tells the event source from anyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsAuth {
    /// Events carry `Authorization: Bearer <token>` (the eventing bridge of `mp3conv up` and
    /// `mp3conv serve` sends it).
    Token(ServiceToken),
    /// `events_token` is empty: every event is refused.
    Closed,
    /// `events_trust_network`: the deployment alone decides who reaches `/events` (the
    /// cluster's notifier Service is cluster-local and carries only this component, and the
    /// RabbitmqSource cannot send a credential).
    Network,
}

impl EventsAuth {
    /// Whether a request with this `Authorization` header comes from the event source. The
    /// token is compared in constant time.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        match self {
            EventsAuth::Network => true,
            EventsAuth::Closed => false,
            EventsAuth::Token(token) => token.allows(authorization),
        }
    }
}

/// The variables, as declared for the component in `spin.toml` (field name = variable name).
#[derive(Debug, Deserialize)]
struct Variables {
    database: Database,
    worker_url: BaseUrl,
    worker_token: ServiceToken,
    public_url: HttpUrl,
    email_api_url: Option<HttpUrl>,
    email_api_key: Option<Secret>,
    email_from: Option<String>,
    webhook_attempts: u32,
    webhook_backoff_ms: Millis,
    outbound_timeout_ms: Millis,
    /// Checked only when the network is not trusted.
    events_token: Option<Secret>,
    #[serde(default)]
    events_trust_network: bool,
}

impl Config {
    /// Builds the settings from a variable lookup (Spin's `variables::get` in the component).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars: Variables = config::load(get)?;
        let email = match vars.email_api_url {
            None => None,
            Some(url) => Some(EmailApi {
                url,
                key: vars.email_api_key,
                from: vars
                    .email_from
                    .ok_or_else(|| ConfigError::new("email_from", "is not set"))?,
            }),
        };
        let events = match (vars.events_trust_network, vars.events_token) {
            (true, _) => EventsAuth::Network,
            (false, None) => EventsAuth::Closed,
            (false, Some(token)) => EventsAuth::Token(
                ServiceToken::new(token.expose())
                    .map_err(|problem| ConfigError::new("events_token", problem))?,
            ),
        };
        let millis = |name: &str, Millis(d): Millis, range| {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            config::in_range(name, ms, range).map(Duration::from_millis)
        };
        Ok(Config {
            database: vars.database,
            worker_url: vars.worker_url,
            worker_token: vars.worker_token,
            public_url: vars.public_url,
            email,
            webhook_attempts: config::in_range("webhook_attempts", vars.webhook_attempts, 1..=10)?,
            webhook_backoff: millis("webhook_backoff_ms", vars.webhook_backoff_ms, 0..=60_000)?,
            outbound_timeout: millis(
                "outbound_timeout_ms",
                vars.outbound_timeout_ms,
                100..=60_000,
            )?,
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
            ("worker_url", "http://127.0.0.1:8090/"),
            ("worker_token", "a-long-internal-token"),
            ("public_url", "http://127.0.0.1:3000"),
            ("email_api_url", ""),
            ("email_from", "mp3conv <noreply@example.com>"),
            ("webhook_attempts", "3"),
            ("webhook_backoff_ms", "200"),
            ("outbound_timeout_ms", "5000"),
            ("events_token", "a-long-events-token"),
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
        assert_eq!(config.worker_url.as_str(), "http://127.0.0.1:8090");
        let config = Config::load(vars(&[
            ("email_api_url", "http://127.0.0.1:9/send"),
            ("email_api_key", "key"),
        ]))
        .unwrap();
        let email = config.email.unwrap();
        assert_eq!(email.url.as_str(), "http://127.0.0.1:9/send");
        assert_eq!(email.key.unwrap().expose(), "key");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (name, value) in [
            ("worker_url", "ftp://x"),
            ("worker_token", "short"),
            ("webhook_attempts", "0"),
            ("webhook_attempts", "11"),
            ("webhook_backoff_ms", "soon"),
            ("webhook_backoff_ms", "60001"),
            ("outbound_timeout_ms", "99"),
            ("email_api_url", "smtp://mail"),
            ("events_token", "short"),
            ("events_trust_network", "yes"),
        ] {
            let err = Config::load(vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable(), Some(name), "{name}={value}: {err}");
        }
        let err = Config::load(vars(&[
            ("email_api_url", "http://127.0.0.1:9/send"),
            ("email_from", " "),
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "variable `email_from` is not set");
    }

    #[test]
    fn secrets_never_print() {
        let config = Config::load(vars(&[
            ("database", "mysql"),
            ("mysql_url", "mysql://u:db-password@db/mp3conv"),
            ("email_api_url", "http://127.0.0.1:9/send"),
            ("email_api_key", "the-email-api-key"),
        ]))
        .unwrap();
        let printed = format!("{config:?}");
        for secret in [
            "db-password",
            "a-long-internal-token",
            "the-email-api-key",
            "a-long-events-token",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn events_need_the_token_unless_the_network_is_trusted() {
        let token = Config::load(vars(&[])).unwrap().events;
        assert!(token.allows(Some("Bearer a-long-events-token")));
        assert!(token.allows(Some("bearer  a-long-events-token ")));
        // The comparison's rules are the kit's (`ServiceToken`), tested there.
        for wrong in [None, Some("Bearer a-long-events-toke")] {
            assert!(!token.allows(wrong), "{wrong:?}");
        }
        assert!(
            !format!("{token:?}").contains("a-long-events-token"),
            "the token never prints"
        );
        // No token: closed to everyone, the right guess included.
        let closed = Config::load(vars(&[("events_token", "")])).unwrap().events;
        assert_eq!(closed, EventsAuth::Closed);
        assert!(!closed.allows(Some("Bearer ")));
        let network = Config::load(vars(&[
            ("events_trust_network", "true"),
            ("events_token", "short"),
        ]))
        .unwrap()
        .events;
        assert!(network.allows(None));
    }
}
