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

/// A variable whose value the program supplies itself and the environment may not replace:
/// `mp3conv up` points the gateway at the worker in its own process, with a token made for the
/// run, and a `SPIN_VARIABLE_WORKER_URL` left in a shell would otherwise send every request
/// elsewhere without a word. (Values the program only defaults, such as generated development
/// keys, go in [`crate::HostConfig::variables`], where the environment wins.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supplied {
    /// The variable's name in `[variables]`.
    pub name: &'static str,
    /// What the program's value is, for the message that names a conflict.
    pub what: &'static str,
}

/// The environment sets variables the program supplies itself. Names only: values may be
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Overridden {
    /// The supplied variables the environment also sets, in the order they were given.
    pub conflicts: Vec<Supplied>,
}

impl fmt::Display for Overridden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, supplied) in self.conflicts.iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(
                f,
                "{separator}{} would replace `{}` ({})",
                env_name(supplied.name),
                supplied.name,
                supplied.what
            )?;
        }
        let pronoun = if self.conflicts.len() == 1 {
            "it"
        } else {
            "them"
        };
        write!(f, "; unset {pronoun}")
    }
}

/// Refuses an environment that sets any of `supplied` (`SPIN_VARIABLE_<NAME>`, looked up with
/// `lookup` as [`resolve_app_variables`] would), naming every conflict at once.
pub fn refuse_overrides(
    supplied: &[Supplied],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Overridden> {
    let conflicts: Vec<Supplied> = supplied
        .iter()
        .filter(|supplied| lookup(&env_name(supplied.name)).is_some())
        .copied()
        .collect();
    match conflicts.is_empty() {
        true => Ok(()),
        false => Err(Overridden { conflicts }),
    }
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

    const WORKER: [Supplied; 2] = [
        Supplied {
            name: "worker_url",
            what: "the worker in this process",
        },
        Supplied {
            name: "worker_token",
            what: "made for this run",
        },
    ];

    #[test]
    fn supplied_variables_the_environment_leaves_alone_pass() {
        let lookup = |name: &str| {
            (name == "SPIN_VARIABLE_EVENTS_TOKEN").then(|| "an events token, long".to_owned())
        };
        assert_eq!(refuse_overrides(&WORKER, &lookup), Ok(()));
        assert_eq!(refuse_overrides(&[], &lookup), Ok(()));
    }

    #[test]
    fn a_supplied_variable_set_in_the_environment_is_refused_by_name() {
        let lookup = |name: &str| {
            (name == "SPIN_VARIABLE_WORKER_URL").then(|| "http://elsewhere".to_owned())
        };
        let refused = refuse_overrides(&WORKER, &lookup).unwrap_err();
        assert_eq!(refused.conflicts, [WORKER[0]]);
        assert_eq!(
            refused.to_string(),
            "SPIN_VARIABLE_WORKER_URL would replace `worker_url` (the worker in this process); \
             unset it"
        );
    }

    #[test]
    fn every_conflict_is_named_and_no_value_is_printed() {
        // Set but empty still replaces the value in resolution, so it conflicts too.
        let lookup = |name: &str| match name {
            "SPIN_VARIABLE_WORKER_URL" => Some(String::new()),
            "SPIN_VARIABLE_WORKER_TOKEN" => Some("hunter2-hunter2-hunter2".to_owned()),
            _ => None,
        };
        let refused = refuse_overrides(&WORKER, &lookup).unwrap_err();
        assert_eq!(refused.conflicts, WORKER);
        let message = refused.to_string();
        assert!(
            message.contains("SPIN_VARIABLE_WORKER_URL would replace"),
            "{message}"
        );
        assert!(
            message.contains("SPIN_VARIABLE_WORKER_TOKEN would replace"),
            "{message}"
        );
        assert!(message.ends_with("; unset them"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!format!("{refused:?}").contains("hunter2"));
    }
}
