//! `spin.toml` (manifest version 2): parsing and validation.
//!
//! The types mirror Spin's own manifest so a file that a real `spin up` accepts is accepted
//! here, and a misspelt field is rejected (`deny_unknown_fields`, as Spin does). Fields that
//! only matter to Spin's tooling (`build`, `tool`, `targets`, ...) are parsed and ignored;
//! features this host does not provide are refused at start-up with the field named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::StartupError;
use crate::outbound::AllowedHosts;
use crate::routes::Route;
use crate::variables::{self, Template};

/// The whole manifest, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub spin_manifest_version: u32,
    pub application: RawApplication,
    #[serde(default)]
    pub variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    pub trigger: RawTriggers,
    #[serde(default)]
    pub component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Vec<toml::Value>,
    #[serde(default)]
    pub tool: Option<toml::Table>,
    #[serde(default)]
    pub trigger: Option<toml::Table>,
}

/// `[variables.NAME]`: an application variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariable {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTriggers {
    #[serde(default)]
    pub http: Vec<RawHttpTrigger>,
    /// Any other trigger type: refused in validation with its name.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTrigger {
    pub route: RawRoute,
    #[serde(default)]
    pub component: Option<toml::Value>,
    #[serde(default)]
    pub components: Option<toml::Table>,
    #[serde(default)]
    pub executor: Option<toml::Table>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRoute {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    pub private: bool,
}

/// `[component.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub source: toml::Value,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<toml::Value>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    #[serde(default)]
    pub targets: Option<toml::Value>,
    #[serde(default)]
    pub build: Option<toml::Table>,
    #[serde(default)]
    pub tool: Option<toml::Table>,
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    pub dependencies: Option<toml::Table>,
    #[serde(default)]
    pub profile: Option<toml::Table>,
}

/// A validated application, ready to be run.
#[derive(Debug)]
pub struct App {
    pub name: String,
    pub version: Option<String>,
    /// The directory holding the manifest; component sources are relative to it.
    pub base_dir: PathBuf,
    pub variables: BTreeMap<String, variables::AppVariable>,
    pub components: BTreeMap<String, ComponentSpec>,
    /// Routes in manifest order; the router decides precedence.
    pub routes: Vec<(Route, String)>,
}

/// A validated component.
#[derive(Debug)]
pub struct ComponentSpec {
    pub name: String,
    pub source: PathBuf,
    /// Component variable name -> template over application variables.
    pub variables: BTreeMap<String, Template>,
    pub environment: BTreeMap<String, String>,
    pub allowed_outbound_hosts: AllowedHosts,
    pub sqlite_databases: Vec<String>,
}

impl App {
    /// Reads and validates a manifest, resolving variables with `lookup`
    /// (normally `SPIN_VARIABLE_*` from the environment).
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<App, StartupError> {
        let text = std::fs::read_to_string(path).map_err(|source| StartupError::ReadManifest {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        App::parse(&text, &base_dir, lookup).map_err(|err| err.in_file(path))
    }

    /// Parses and validates manifest text; errors name the offending field.
    pub fn parse(
        text: &str,
        base_dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<App, StartupError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|err| StartupError::Manifest(err.to_string()))?;
        validate(raw, base_dir, lookup)
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> StartupError {
    StartupError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn validate(
    raw: RawManifest,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<App, StartupError> {
    if raw.spin_manifest_version != 2 {
        return Err(invalid(
            "spin_manifest_version",
            format!("must be 2, found {}", raw.spin_manifest_version),
        ));
    }
    if let Some(kind) = raw.trigger.other.keys().next() {
        return Err(invalid(
            format!("trigger.{kind}"),
            "only http triggers are supported by this host",
        ));
    }

    let app_variables = variables::resolve_app_variables(&raw.variables, lookup)?;

    let mut components = BTreeMap::new();
    for (name, component) in raw.component {
        let spec = validate_component(&name, component, base_dir, &app_variables)?;
        components.insert(name, spec);
    }

    let mut routes = Vec::new();
    for (index, trigger) in raw.trigger.http.into_iter().enumerate() {
        let field = format!("trigger.http[{index}]");
        if trigger.components.is_some() {
            return Err(invalid(
                format!("{field}.components"),
                "component dependencies are not supported by this host",
            ));
        }
        if trigger.executor.is_some() {
            return Err(invalid(
                format!("{field}.executor"),
                "only the default (WASI HTTP) executor is supported",
            ));
        }
        let component = match trigger.component {
            Some(toml::Value::String(name)) => name,
            Some(_) => {
                return Err(invalid(
                    format!("{field}.component"),
                    "inline components are not supported: name a [component.NAME] table",
                ));
            }
            None => return Err(invalid(format!("{field}.component"), "missing")),
        };
        if !components.contains_key(&component) {
            return Err(invalid(
                format!("{field}.component"),
                format!("no [component.{component}] in the manifest"),
            ));
        }
        match trigger.route {
            // Private routes are reachable only by service chaining, which this host does not
            // offer; they take no part in routing.
            RawRoute::Private(PrivateRoute { private: true }) => continue,
            RawRoute::Private(_) => {
                return Err(invalid(
                    format!("{field}.route.private"),
                    "must be true when given",
                ));
            }
            RawRoute::Path(pattern) => {
                let route = Route::parse(&pattern)
                    .map_err(|message| invalid(format!("{field}.route"), message))?;
                if let Some((_, other)) = routes
                    .iter()
                    .find(|(existing, _): &&(Route, String)| existing.pattern() == route.pattern())
                {
                    return Err(invalid(
                        format!("{field}.route"),
                        format!("`{pattern}` is already routed to component `{other}`"),
                    ));
                }
                routes.push((route, component));
            }
        }
    }

    Ok(App {
        name: raw.application.name,
        version: raw.application.version,
        base_dir: base_dir.to_owned(),
        variables: app_variables,
        components,
        routes,
    })
}

fn validate_component(
    name: &str,
    raw: RawComponent,
    base_dir: &Path,
    app_variables: &BTreeMap<String, variables::AppVariable>,
) -> Result<ComponentSpec, StartupError> {
    let field = |key: &str| format!("component.{name}.{key}");
    if !is_valid_id(name) {
        return Err(invalid(
            format!("component.{name}"),
            "a component name is lowercase words of letters and digits joined by `-` or `_`",
        ));
    }
    let source = match raw.source {
        toml::Value::String(path) => base_dir.join(path),
        _ => {
            return Err(invalid(
                field("source"),
                "only a local file path is supported by this host",
            ));
        }
    };
    for (key, present) in [
        ("files", !raw.files.is_empty()),
        ("key_value_stores", !raw.key_value_stores.is_empty()),
        ("ai_models", !raw.ai_models.is_empty()),
        ("dependencies", raw.dependencies.is_some()),
        ("allowed_http_hosts", !raw.allowed_http_hosts.is_empty()),
    ] {
        if present {
            return Err(invalid(field(key), "is not supported by this host"));
        }
    }

    let mut component_variables = BTreeMap::new();
    for (var, template) in raw.variables {
        if !variables::is_valid_name(&var) {
            return Err(invalid(
                format!("{}.{var}", field("variables")),
                "variable names are lowercase letters, digits and `_`, starting with a letter",
            ));
        }
        let template = Template::parse(&template)
            .map_err(|message| invalid(format!("{}.{var}", field("variables")), message))?;
        for reference in template.references() {
            if !app_variables.contains_key(reference) {
                return Err(invalid(
                    format!("{}.{var}", field("variables")),
                    format!("refers to `{reference}`, which is not in [variables]"),
                ));
            }
        }
        component_variables.insert(var, template);
    }

    let mut hosts = Vec::new();
    for (index, entry) in raw.allowed_outbound_hosts.iter().enumerate() {
        let rendered = Template::parse(entry)
            .and_then(|template| template.render(app_variables))
            .map_err(|message| {
                invalid(
                    format!("{}[{index}]", field("allowed_outbound_hosts")),
                    message,
                )
            })?;
        hosts.push(rendered);
    }
    let allowed_outbound_hosts = AllowedHosts::parse(&hosts)
        .map_err(|message| invalid(field("allowed_outbound_hosts"), message))?;

    for db in &raw.sqlite_databases {
        if !is_valid_id(db) {
            return Err(invalid(
                field("sqlite_databases"),
                format!("`{db}` is not a valid database label"),
            ));
        }
    }

    Ok(ComponentSpec {
        name: name.to_owned(),
        source,
        variables: component_variables,
        environment: raw.environment,
        allowed_outbound_hosts,
        sqlite_databases: raw.sqlite_databases,
    })
}

/// Spin's component ids: lowercase words of `[a-z0-9]` joined by `-` or `_`.
fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.split(['-', '_']).all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "demo"
version = "1.2.3"

[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/api/..."
component = "hello"

[[trigger.http]]
route = { private = true }
component = "hello"

[component.hello]
source = "hello.wasm"
allowed_outbound_hosts = ["https://example.com", "http://{{ greeting }}.test:8080"]
sqlite_databases = ["default"]
[component.hello.variables]
message = "{{ greeting }}, world"
[component.hello.build]
command = "cargo build"
"#;

    fn env(name: &str) -> Option<String> {
        (name == "SPIN_VARIABLE_TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn parses_a_good_manifest() {
        let app = App::parse(GOOD, Path::new("/app"), &env).unwrap();
        assert_eq!(app.name, "demo");
        assert_eq!(app.version.as_deref(), Some("1.2.3"));
        assert_eq!(app.routes.len(), 2);
        let hello = &app.components["hello"];
        assert_eq!(hello.source, Path::new("/app/hello.wasm"));
        assert_eq!(
            hello.variables["message"].render(&app.variables).unwrap(),
            "hi, world"
        );
        assert!(hello.allowed_outbound_hosts.allows("http", "hi.test", 8080));
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let err = App::parse(GOOD, Path::new("/app"), &no_env).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("variables.token"), "{text}");
        assert!(text.contains("SPIN_VARIABLE_TOKEN"), "{text}");
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let bad = GOOD.replace("source = \"hello.wasm\"", "sorce = \"hello.wasm\"");
        let text = App::parse(&bad, Path::new("/app"), &env)
            .unwrap_err()
            .to_string();
        assert!(text.contains("sorce"), "{text}");
    }

    #[test]
    fn bad_manifests_are_refused_with_the_field() {
        let cases = [
            (
                GOOD.replace("spin_manifest_version = 2", "spin_manifest_version = 1"),
                "spin_manifest_version",
            ),
            (
                GOOD.replace(
                    "component = \"hello\"\n\n[[trigger.http]]\nroute = \"/api/...\"",
                    "component = \"nope\"\n\n[[trigger.http]]\nroute = \"/api/...\"",
                ),
                "trigger.http[0].component",
            ),
            (
                GOOD.replace("route = \"/hello\"", "route = \"hello\""),
                "trigger.http[0].route",
            ),
            (
                GOOD.replace("route = \"/api/...\"", "route = \"/hello\""),
                "trigger.http[1].route",
            ),
            (
                GOOD.replace("{{ greeting }}, world", "{{ nothere }}"),
                "component.hello.variables.message",
            ),
            (
                GOOD.replace("https://example.com", "example.com"),
                "component.hello.allowed_outbound_hosts",
            ),
            (
                GOOD.replace(
                    "sqlite_databases = [\"default\"]",
                    "key_value_stores = [\"default\"]",
                ),
                "component.hello.key_value_stores",
            ),
            (
                GOOD.replace(
                    "source = \"hello.wasm\"",
                    "source = { url = \"https://x\", digest = \"sha256:00\" }",
                ),
                "component.hello.source",
            ),
            (
                GOOD.replace("component.hello", "component.Hello")
                    .replace("component = \"hello\"", "component = \"Hello\""),
                "component.Hello",
            ),
        ];
        for (text, field) in cases {
            let err = App::parse(&text, Path::new("/app"), &env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "expected `{field}` in: {err}");
        }
    }

    #[test]
    fn component_ids() {
        for good in ["auth", "gateway-2", "a_b"] {
            assert!(is_valid_id(good), "{good}");
        }
        for bad in ["", "Auth", "a--b", "-a", "a b", "a.b"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
