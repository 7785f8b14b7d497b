//! Application variables (`[variables]`), their values from `SPIN_VARIABLE_<NAME>`, and the
//! `{{ name }}` templates that components and `allowed_outbound_hosts` use to refer to them.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::StartupError;
use crate::manifest::RawVariable;

/// A resolved application variable.
#[derive(Clone)]
pub struct AppVariable {
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for AppVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret {
            "<secret>"
        } else {
            self.value.as_str()
        };
        f.debug_struct("AppVariable")
            .field("value", &value)
            .field("secret", &self.secret)
            .finish()
    }
}

/// The environment variable that supplies `name`'s value, as in Spin.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Spin's variable names: lowercase letters, digits and `_`, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Resolves every application variable: the environment first, then the default.
pub fn resolve_app_variables(
    declared: &BTreeMap<String, RawVariable>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, AppVariable>, StartupError> {
    let mut resolved = BTreeMap::new();
    for (name, variable) in declared {
        let field = format!("variables.{name}");
        if !is_valid_name(name) {
            return Err(StartupError::Invalid {
                field,
                message:
                    "variable names are lowercase letters, digits and `_`, starting with a letter"
                        .into(),
            });
        }
        match (&variable.default, variable.required) {
            (Some(_), true) => {
                return Err(StartupError::Invalid {
                    field,
                    message: "a required variable cannot have a default".into(),
                });
            }
            (None, false) => {
                return Err(StartupError::Invalid {
                    field,
                    message: "give a default or mark it `required = true`".into(),
                });
            }
            _ => {}
        }
        let value = match lookup(&env_name(name)).or_else(|| variable.default.clone()) {
            Some(value) => value,
            None => {
                return Err(StartupError::MissingVariable {
                    field,
                    env: env_name(name),
                });
            }
        };
        resolved.insert(
            name.clone(),
            AppVariable {
                value,
                secret: variable.secret,
            },
        );
    }
    Ok(resolved)
}

/// A string with `{{ variable }}` references.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{text}`"))?;
            let name = after[..end].trim();
            if !is_valid_name(name) {
                return Err(format!("`{name}` is not a valid variable name in `{text}`"));
            }
            parts.push(Part::Variable(name.to_owned()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("unopened `}}}}` in `{text}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The application variables this template refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn render(&self, variables: &BTreeMap<String, AppVariable>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => match variables.get(name) {
                    Some(variable) => out.push_str(&variable.value),
                    None => return Err(format!("refers to `{name}`, which is not in [variables]")),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, AppVariable> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    AppVariable {
                        value: v.to_string(),
                        secret: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn templates_render() {
        let v = vars(&[("host", "db"), ("port", "3306")]);
        let t = Template::parse("mysql://{{host}}:{{ port }}/x").unwrap();
        assert_eq!(t.render(&v).unwrap(), "mysql://db:3306/x");
        assert_eq!(t.references().collect::<Vec<_>>(), ["host", "port"]);
        assert_eq!(
            Template::parse("plain").unwrap().render(&v).unwrap(),
            "plain"
        );
        assert_eq!(Template::parse("").unwrap().render(&v).unwrap(), "");
    }

    #[test]
    fn bad_templates() {
        for bad in ["{{ host", "{{ Host }}", "{{}}", "a }} b", "{{ a-b }}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Template::parse("{{ nope }}")
                .unwrap()
                .render(&vars(&[]))
                .is_err()
        );
    }

    #[test]
    fn names() {
        for good in ["a", "db_url", "k8s"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "1a", "A", "a-b", "_a", "a b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn environment_beats_default_and_secrets_do_not_print() {
        let declared: BTreeMap<String, RawVariable> = toml::from_str(
            r#"
            plain = { default = "d" }
            key = { required = true, secret = true }
            "#,
        )
        .unwrap();
        let lookup = |name: &str| match name {
            "SPIN_VARIABLE_PLAIN" => Some("from-env".to_owned()),
            "SPIN_VARIABLE_KEY" => Some("hunter2".to_owned()),
            _ => None,
        };
        let resolved = resolve_app_variables(&declared, &lookup).unwrap();
        assert_eq!(resolved["plain"].value, "from-env");
        assert!(!format!("{:?}", resolved["key"]).contains("hunter2"));
    }
}
