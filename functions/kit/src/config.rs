//! Typed settings from Spin variables: a function declares one `#[derive(Deserialize)]` struct
//! whose field names are its variable names, and [`load`] fills it through a lookup (Spin's
//! `variables::get` in the component, a closure in tests).
//!
//! Every value is trimmed and an empty one counts as missing, so a missing field is an error
//! ("variable `worker_url` is not set") unless it is an `Option` (then `None`) or has
//! `#[serde(default)]`. Numbers, `true`/`false`, unit enums (`"sqlite"`) and the types below
//! parse from the text; every error names the variable. A field whose type is a struct (such
//! as [`Database`]) reads that struct's own fields as variables of the same namespace; it is
//! present when the variable of its own name is set.
//!
//! Secrets are [`Secret`] or [`ServiceToken`], which never print, so a settings struct may
//! derive `Debug`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, IntoDeserializer as _, Visitor};
use serde::{Deserialize, Deserializer};

/// Reads a `T` from the variables `get` returns.
///
/// ```
/// # use mp3conv_kit::config::{self, BaseUrl, ServiceToken};
/// #[derive(serde::Deserialize)]
/// struct Vars {
///     worker_url: BaseUrl,
///     worker_token: ServiceToken,
///     #[serde(default)]
///     webhook_allow_local: bool,
/// }
/// let vars: Vars = config::load(|name| match name {
///     "worker_url" => Some("http://127.0.0.1:8090/".into()),
///     "worker_token" => Some("0123456789abcdef".into()),
///     _ => None,
/// })
/// .unwrap();
/// assert_eq!(vars.worker_url.as_str(), "http://127.0.0.1:8090");
/// assert!(!vars.webhook_allow_local);
/// ```
pub fn load<T: DeserializeOwned>(get: impl Fn(&str) -> Option<String>) -> Result<T, ConfigError> {
    T::deserialize(Variables { get: &get })
}

/// A setting that is missing or invalid, naming its variable when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    variable: Option<String>,
    problem: String,
}

impl ConfigError {
    /// `variable` is wrong: `problem` completes "variable `name` …" ("must be at least …").
    pub fn new(variable: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: Some(variable.to_owned()),
            problem: problem.into(),
        }
    }

    /// The variable the error is about, if any.
    pub fn variable(&self) -> Option<&str> {
        self.variable.as_deref()
    }

    fn about(mut self, variable: &str) -> ConfigError {
        self.variable.get_or_insert_with(|| variable.to_owned());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variable {
            Some(variable) => write!(f, "variable `{variable}` {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

impl de::Error for ConfigError {
    fn custom<T: fmt::Display>(msg: T) -> ConfigError {
        ConfigError {
            variable: None,
            problem: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> ConfigError {
        ConfigError::new(field, "is not set")
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> ConfigError {
        ConfigError::custom(format_args!(
            "must be one of {}, not `{variant}`",
            expected.join(", ")
        ))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> ConfigError {
        ConfigError::custom(format_args!("must be {expected}, not {unexpected}"))
    }
}

/// The variable namespace: only a struct can be read from it.
struct Variables<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Variables<'_> {
    fn value(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }
}

impl<'de> Deserializer<'de> for Variables<'_> {
    type Error = ConfigError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_map(Fields {
            variables: self,
            fields: fields.iter(),
            current: None,
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ConfigError> {
        Err(de::Error::custom("settings are read into a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The fields of a struct whose variables are set, one by one.
struct Fields<'a> {
    variables: Variables<'a>,
    fields: std::slice::Iter<'static, &'static str>,
    current: Option<(&'static str, String)>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ConfigError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConfigError> {
        for &name in self.fields.by_ref() {
            if let Some(value) = self.variables.value(name) {
                self.current = Some((name, value));
                return seed.deserialize(name.into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConfigError> {
        let (name, text) = self
            .current
            .take()
            .ok_or_else(|| <ConfigError as de::Error>::custom("a value without a name"))?;
        seed.deserialize(Value {
            name,
            text,
            variables: Variables {
                get: self.variables.get,
            },
        })
        .map_err(|err| err.about(name))
    }
}

/// One variable's (trimmed, non-empty) text.
struct Value<'a> {
    name: &'static str,
    text: String,
    variables: Variables<'a>,
}

impl Value<'_> {
    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, ConfigError> {
        self.text.parse().map_err(|_| {
            ConfigError::new(
                self.name,
                format!("must be {expected}, not `{}`", self.text),
            )
        })
    }
}

macro_rules! numbers {
    ($($method:ident $visit:ident $ty:ty, $expected:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            visitor.$visit(self.parse::<$ty>($expected)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Value<'_> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_string(self.text)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        match self.text.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            other => Err(ConfigError::new(
                self.name,
                format!("must be true or false, not `{other}`"),
            )),
        }
    }

    numbers! {
        deserialize_u8 visit_u8 u8, "a whole number from 0 to 255";
        deserialize_u16 visit_u16 u16, "a whole number from 0 to 65535";
        deserialize_u32 visit_u32 u32, "a whole number from 0 to 4294967295";
        deserialize_u64 visit_u64 u64, "a whole number (0 or more)";
        deserialize_i8 visit_i8 i8, "a whole number";
        deserialize_i16 visit_i16 i16, "a whole number";
        deserialize_i32 visit_i32 i32, "a whole number";
        deserialize_i64 visit_i64 i64, "a whole number";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_enum(self.text.into_deserializer())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.variables.deserialize_struct(name, fields, visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        identifier ignored_any
    }
}

/// A secret setting (a key, a password, a database URL with credentials): it prints as
/// `[redacted]`; [`Secret::expose`] is the one way to its text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret text.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A token one service presents to another (`worker_token`, `events_token`): a [`Secret`] of
/// at least [`ServiceToken::MIN_CHARS`] characters, the one rule for every function.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceToken(Secret);

impl ServiceToken {
    /// The shortest token accepted.
    pub const MIN_CHARS: usize = 16;

    /// Checks the length rule; the error completes "variable `name` …".
    pub fn new(text: impl Into<String>) -> Result<ServiceToken, String> {
        let text = text.into();
        if text.chars().count() < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        Ok(ServiceToken(Secret(text)))
    }

    /// The token's text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// `Bearer <token>`, an `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.expose())
    }

    /// Whether an `Authorization` header carries this token as a bearer token (the scheme in
    /// any case, spaces around it ignored); compared in constant time.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let presented = authorization
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, rest)| rest.trim())
            .unwrap_or_default();
        self.0.matches(presented)
    }
}

impl<'de> Deserialize<'de> for ServiceToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ServiceToken::new(String::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// Where a service is reached: `http(s)://host[:port]`, no path, query or credentials; a
/// trailing slash is dropped. [`BaseUrl::join`] adds a path.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks the shape; the error completes "variable `name` …".
    pub fn new(text: &str) -> Result<BaseUrl, String> {
        const SHAPE: &str = "must be http(s)://host[:port], without a path";
        let url = text.trim().trim_end_matches('/');
        let (_, authority) = split_scheme(url).ok_or(SHAPE)?;
        if !valid_authority(authority) {
            return Err(SHAPE.to_owned());
        }
        Ok(BaseUrl(url.to_owned()))
    }

    /// The URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This URL followed by `path_and_query` (which starts with `/`).
    pub fn join(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.0)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BaseUrl::new(&String::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// An `http(s)://` URL that may have a path (an email API endpoint, the public address users
/// reach the gateway at); no credentials or fragment; a trailing slash is dropped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// Checks the shape; the error completes "variable `name` …".
    pub fn new(text: &str) -> Result<HttpUrl, String> {
        const SHAPE: &str = "must be an http(s) URL";
        let url = text.trim().trim_end_matches('/');
        let (_, rest) = split_scheme(url).ok_or(SHAPE)?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if !valid_authority(authority) || url.contains('#') {
            return Err(SHAPE.to_owned());
        }
        Ok(HttpUrl(url.to_owned()))
    }

    /// The URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HttpUrl::new(&String::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

fn split_scheme(url: &str) -> Option<(&str, &str)> {
    url.split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
}

/// `host[:port]` (or `[v6][:port]`), nothing else.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((address, "")) => (address, None),
            Some((address, rest)) => match rest.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let v6 = authority.starts_with('[');
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || (v6 && c == ':'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// A duration written as whole milliseconds (`webhook_backoff_ms`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Millis(pub Duration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(|ms| Millis(Duration::from_millis(ms)))
    }
}

/// A duration written as whole seconds (`token_ttl_seconds`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(|s| Seconds(Duration::from_secs(s)))
    }
}

/// A variable whose text is JSON (`jwt_public_keys`, a JWKS).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Json<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text)
            .map(Json)
            // serde's message quotes the value, which may be a secret: only where and what kind.
            .map_err(|err| {
                de::Error::custom(format_args!(
                    "is not valid JSON of the expected shape ({:?} error at line {}, column {})",
                    err.classify(),
                    err.line(),
                    err.column()
                ))
            })
    }
}

/// Which SQL database, from the `database` (`sqlite` or `mysql`) and `mysql_url` variables; a
/// field named `database` of this type reads both. Prints without the URL (it holds the
/// password); [`Database::sql`] is what `mp3conv_sql::open` takes, and it derefs to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Database(mp3conv_sql::Database);

impl Database {
    /// `mp3conv_sql`'s value, for `mp3conv_sql::open`.
    pub fn sql(&self) -> &mp3conv_sql::Database {
        &self.0
    }
}

impl From<mp3conv_sql::Database> for Database {
    fn from(database: mp3conv_sql::Database) -> Database {
        Database(database)
    }
}

impl std::ops::Deref for Database {
    type Target = mp3conv_sql::Database;
    fn deref(&self) -> &mp3conv_sql::Database {
        &self.0
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            mp3conv_sql::Database::Sqlite => f.write_str("Sqlite"),
            mp3conv_sql::Database::Mysql(_) => f.write_str("Mysql([redacted])"),
        }
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Sqlite,
            Mysql,
        }
        #[derive(Deserialize)]
        struct Vars {
            database: Kind,
            mysql_url: Option<Secret>,
        }
        let vars = Vars::deserialize(deserializer)?;
        match (vars.database, vars.mysql_url) {
            (Kind::Sqlite, _) => Ok(Database(mp3conv_sql::Database::Sqlite)),
            (Kind::Mysql, Some(url)) => Ok(Database(mp3conv_sql::Database::Mysql(url.0))),
            (Kind::Mysql, None) => Err(de::Error::missing_field("mysql_url")),
        }
    }
}

/// Checks `value` against `range`; the error names `variable`.
pub fn in_range<T: PartialOrd + fmt::Display>(
    variable: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            variable,
            format!(
                "must be from {} to {}, not {value}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |name| map.get(name).map(|v| (*v).to_owned())
    }

    #[derive(Debug, Deserialize)]
    struct Settings {
        database: Database,
        worker_url: BaseUrl,
        worker_token: ServiceToken,
        #[serde(default)]
        allow_local: bool,
        attempts: u32,
        backoff_ms: Millis,
        email_api_url: Option<HttpUrl>,
        email_api_key: Option<Secret>,
        #[serde(default = "default_issuer")]
        issuer: String,
        keys: Option<Json<Vec<String>>>,
    }

    fn default_issuer() -> String {
        "mp3conv".into()
    }

    const GOOD: &[(&str, &str)] = &[
        ("database", " sqlite "),
        ("worker_url", "http://127.0.0.1:8090/"),
        ("worker_token", "a-long-internal-token"),
        ("attempts", "3"),
        ("backoff_ms", "200"),
        ("email_api_url", "  "),
        ("email_api_key", "key-123"),
        ("issuer", ""),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut all: Vec<_> = GOOD
            .iter()
            .copied()
            .filter(|(n, _)| !extra.iter().any(|(e, _)| e == n))
            .collect();
        all.extend_from_slice(extra);
        all
    }

    #[test]
    fn reads_typed_fields_trimming_and_defaulting() {
        let settings: Settings = load(vars(GOOD)).unwrap();
        assert_eq!(*settings.database.sql(), mp3conv_sql::Database::Sqlite);
        assert_eq!(settings.worker_url.as_str(), "http://127.0.0.1:8090");
        assert_eq!(
            settings.worker_url.join("/internal/jobs"),
            "http://127.0.0.1:8090/internal/jobs"
        );
        assert_eq!(settings.worker_token.expose(), "a-long-internal-token");
        assert!(!settings.allow_local);
        assert_eq!(settings.attempts, 3);
        assert_eq!(settings.backoff_ms, Millis(Duration::from_millis(200)));
        assert_eq!(settings.email_api_url, None, "blank is missing");
        assert_eq!(settings.issuer, "mp3conv", "empty takes the default");
        assert_eq!(settings.email_api_key.unwrap().expose(), "key-123");
        assert_eq!(settings.keys, None);
    }

    #[test]
    fn secrets_never_print() {
        let settings: Settings = load(vars(&with(&[
            ("database", "mysql"),
            ("mysql_url", "mysql://root:hunter2@db/x"),
        ])))
        .unwrap();
        let printed = format!("{settings:?}");
        for secret in ["hunter2", "a-long-internal-token", "key-123"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("[redacted]"));
        assert_eq!(format!("{}", Secret::new("x")), "[redacted]");
        assert_eq!(
            *settings.database,
            mp3conv_sql::Database::Mysql("mysql://root:hunter2@db/x".into())
        );
    }

    #[test]
    fn every_error_names_its_variable() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("worker_url", "", "worker_url", "is not set"),
            (
                "worker_url",
                "ftp://x",
                "worker_url",
                "http(s)://host[:port]",
            ),
            (
                "worker_url",
                "http://x/path",
                "worker_url",
                "without a path",
            ),
            ("worker_url", "http://x/?q", "worker_url", "without a path"),
            ("worker_url", "http://u:p@x", "worker_url", "without a path"),
            ("worker_url", "http://x:0", "worker_url", "without a path"),
            (
                "worker_token",
                "short",
                "worker_token",
                "at least 16 characters",
            ),
            ("attempts", "-1", "attempts", "whole number"),
            ("attempts", "many", "attempts", "not `many`"),
            ("backoff_ms", "soon", "backoff_ms", "whole number"),
            ("allow_local", "yes", "allow_local", "true or false"),
            ("database", "postgres", "database", "sqlite, mysql"),
            ("database", "mysql", "mysql_url", "is not set"),
            (
                "email_api_url",
                "smtp://mail",
                "email_api_url",
                "http(s) URL",
            ),
            ("keys", "[1", "keys", "not valid JSON"),
        ];
        for (name, value, variable, problem) in cases {
            let err = load::<Settings>(vars(&with(&[(name, value)]))).unwrap_err();
            assert_eq!(err.variable(), Some(*variable), "{name}={value}: {err}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("variable `{variable}` ")),
                "{text}"
            );
            assert!(text.contains(problem), "{name}={value}: {text}");
        }
    }

    #[test]
    fn urls() {
        for good in [
            "http://a",
            "https://a.b:8443/",
            "http://[::1]:80",
            "http://auth.spin.internal",
        ] {
            assert!(BaseUrl::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "http://",
            "a.b",
            "http://a b",
            "http://a#x",
            "http://a:port",
        ] {
            assert!(BaseUrl::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            HttpUrl::new("https://mail.example/v1/send/")
                .unwrap()
                .as_str(),
            "https://mail.example/v1/send"
        );
        assert!(HttpUrl::new("https://user:pw@mail.example/send").is_err());
        assert!(HttpUrl::new("https://mail.example/send#x").is_err());
    }

    #[test]
    fn service_tokens_compare_bearer_headers() {
        let token = ServiceToken::new("a-long-events-token").unwrap();
        assert_eq!(token.bearer(), "Bearer a-long-events-token");
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
        assert_eq!(format!("{token:?}"), "ServiceToken([redacted])");
        assert!(
            ServiceToken::new("é".repeat(16)).is_ok(),
            "characters, not bytes"
        );
        assert!(ServiceToken::new("x".repeat(15)).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(in_range("attempts", 3, 1..=10), Ok(3));
        let err = in_range("attempts", 0, 1..=10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable `attempts` must be from 1 to 10, not 0"
        );
    }

    #[test]
    fn only_structs_are_settings() {
        assert!(load::<String>(|_| Some("x".into())).is_err());
    }
}
