//! `openapi.yaml` as the tests' oracle: every response a test receives is looked up in the
//! document by method, path template and status (exact, then a `4XX`-style range, then
//! `default`), and must have a documented status, the documented content type and, for JSON,
//! a body valid against the documented schema (OpenAPI 3.1 schemas are JSON Schema 2020-12,
//! checked by the `jsonschema` crate with `$ref`s into `components` resolved). Other bodies
//! (audio, the text token, the YAML document) are checked for their content type only.
//!
//! Two rules cover what a document cannot list: a path it does not describe answers 404, and a
//! method it does not list for a described path answers 405, both with the documented `Error`
//! body.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// One answer as a test received it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request's method (`GET`, `HEAD`, ...).
    pub method: &'a str,
    /// The request's path, without the query.
    pub path: &'a str,
    pub status: u16,
    /// The response's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// How an answer differs from the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    /// A path the document does not describe answered something other than 404.
    UnknownPath { status: u16 },
    /// A method the document does not list for the path answered something other than 405.
    UndocumentedMethod { template: String, status: u16 },
    /// The status is not among the operation's responses.
    UndocumentedStatus {
        operation: String,
        status: u16,
        documented: Vec<String>,
    },
    /// The content type is not one the response documents (`None`: no content documented).
    ContentType {
        documented: Vec<String>,
        actual: Option<String>,
    },
    /// A response documented without content came with a body.
    UnexpectedBody { bytes: usize },
    /// A JSON content type over a body that is not JSON.
    NotJson(String),
    /// The JSON body violates the documented schema: one line per violation.
    Schema { schema: String, errors: Vec<String> },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::UnknownPath { status } => {
                write!(
                    f,
                    "the path is not in openapi.yaml, so it must be 404, not {status}"
                )
            }
            Drift::UndocumentedMethod { template, status } => write!(
                f,
                "openapi.yaml lists no such method for {template}, so it must be 405, not {status}"
            ),
            Drift::UndocumentedStatus {
                operation,
                status,
                documented,
            } => write!(
                f,
                "{status} is not documented for {operation} (documented: {documented:?})"
            ),
            Drift::ContentType { documented, actual } => write!(
                f,
                "content type {actual:?} is not the documented one ({documented:?})"
            ),
            Drift::UnexpectedBody { bytes } => {
                write!(f, "documented without content, but {bytes} bytes came")
            }
            Drift::NotJson(err) => write!(f, "the body is not JSON: {err}"),
            Drift::Schema { schema, errors } => {
                write!(f, "the body violates {schema}: {}", errors.join("; "))
            }
        }
    }
}

/// The parsed document with its operations and a cache of compiled schemas.
pub struct Document {
    root: Value,
    /// (METHOD, path template) -> the operation object.
    operations: BTreeMap<(String, String), Value>,
    /// Compiled validators by the schema's text.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The repository's `openapi.yaml`, loaded once per test process.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("reading openapi.yaml");
        Document::from_yaml(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
    })
}

/// Where a value sits in the document, as a JSON pointer fragment.
fn pointer_of(parts: &[&str]) -> String {
    let mut pointer = String::from("#");
    for part in parts {
        pointer.push('/');
        pointer.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// The media type without parameters, lowercased (`text/plain; charset=utf-8` -> `text/plain`).
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a documented media type (or range such as `audio/*`) covers `actual`.
fn covers(documented: &str, actual: &str) -> bool {
    let documented = essence(documented);
    documented == "*/*"
        || documented == actual
        || documented
            .strip_suffix("/*")
            .is_some_and(|kind| actual.split('/').next() == Some(kind))
}

/// The response documented for `status`: the exact code, else its range (`4XX`), else
/// `default`.
fn documented_status(
    responses: &serde_json::Map<String, Value>,
    status: u16,
) -> Option<(&str, &Value)> {
    let range = format!("{}XX", status / 100);
    responses
        .get_key_value(&status.to_string())
        .or_else(|| {
            responses
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(&range))
        })
        .or_else(|| responses.get_key_value("default"))
        .map(|(key, response)| (key.as_str(), response))
}

fn is_json(media_type: &str) -> bool {
    let media_type = essence(media_type);
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Fails on `nullable` anywhere: OpenAPI 3.1 (JSON Schema 2020-12) ignores it, so a leftover
/// from 3.0 would silently allow nothing and document something else.
fn refuse_nullable(value: &Value, at: &mut Vec<String>) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if map.get("nullable").is_some_and(Value::is_boolean) {
                return Err(format!(
                    "`nullable` at /{}: OpenAPI 3.1 ignores it; use `type: [..., \"null\"]`",
                    at.join("/")
                ));
            }
            for (key, child) in map {
                at.push(key.clone());
                refuse_nullable(child, at)?;
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(i.to_string());
                refuse_nullable(child, at)?;
                at.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

impl Document {
    /// Parses an OpenAPI 3.1 document.
    pub fn from_yaml(text: &str) -> Result<Document, String> {
        let root: Value = serde_yaml::from_str(text).map_err(|err| format!("not YAML: {err}"))?;
        let version = root["openapi"].as_str().unwrap_or_default();
        if !version.starts_with("3.1.") {
            return Err(format!(
                "openapi {version:?}: only 3.1 (JSON Schema 2020-12) is supported"
            ));
        }
        refuse_nullable(&root, &mut Vec::new())?;
        let mut operations = BTreeMap::new();
        let paths = root["paths"].as_object().ok_or("no paths")?;
        for (path, item) in paths {
            let item = item
                .as_object()
                .ok_or_else(|| format!("{path} is no path item"))?;
            for (method, operation) in item {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
                ) {
                    continue;
                }
                if !operation["responses"].is_object() {
                    return Err(format!("{method} {path} documents no responses"));
                }
                operations.insert((method.to_uppercase(), path.clone()), operation.clone());
            }
        }
        Ok(Document {
            root,
            operations,
            validators: Mutex::default(),
        })
    }

    /// Every documented (METHOD, path template), with the status keys it documents.
    pub fn operations(&self) -> BTreeMap<(String, String), Vec<String>> {
        self.operations
            .iter()
            .map(|(key, operation)| {
                let statuses = operation["responses"]
                    .as_object()
                    .map(|responses| responses.keys().cloned().collect())
                    .unwrap_or_default();
                (key.clone(), statuses)
            })
            .collect()
    }

    /// The documented path template a concrete path falls under; literal segments win over
    /// parameters when two templates match.
    pub fn template(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.operations
            .keys()
            .map(|(_, template)| template.as_str())
            .filter(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(t, s)| {
                        t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                    })
            })
            .min_by_key(|template| template.matches('{').count())
    }

    /// Follows local `$ref`s (`#/components/...`) to the value they name.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return value;
            };
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references are supported: {reference}"));
            value = self
                .root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} names nothing in openapi.yaml"));
        }
        panic!("a $ref chain longer than 16 in openapi.yaml")
    }

    /// The operation for a method on a template; HEAD is GET without the body where the
    /// document lists no HEAD of its own.
    fn operation(&self, method: &str, template: &str) -> Option<(&(String, String), &Value)> {
        let method = method.to_ascii_uppercase();
        let head = method == "HEAD";
        self.operations
            .get_key_value(&(method, template.to_owned()))
            .or_else(|| {
                head.then(|| {
                    self.operations
                        .get_key_value(&("GET".to_owned(), template.to_owned()))
                })
                .flatten()
            })
    }

    /// Checks one answer against the document.
    pub fn check(&self, exchange: &Exchange<'_>) -> Result<(), Drift> {
        let Some(template) = self.template(exchange.path) else {
            if exchange.status != 404 {
                return Err(Drift::UnknownPath {
                    status: exchange.status,
                });
            }
            return self.check_error_body(exchange);
        };
        let Some(((method, _), operation)) = self.operation(exchange.method, template) else {
            if exchange.status != 405 {
                return Err(Drift::UndocumentedMethod {
                    template: template.to_owned(),
                    status: exchange.status,
                });
            }
            return self.check_error_body(exchange);
        };
        let responses = operation["responses"].as_object().expect("checked at load");
        let Some((status_key, response)) = documented_status(responses, exchange.status) else {
            return Err(Drift::UndocumentedStatus {
                operation: format!("{method} {template}"),
                status: exchange.status,
                documented: responses.keys().cloned().collect(),
            });
        };
        let method = method.to_ascii_lowercase();
        let at = pointer_of(&["paths", template, &method, "responses", status_key]);
        let head = exchange.method.eq_ignore_ascii_case("HEAD");
        self.check_content(&at, self.resolve(response), exchange, head)
    }

    /// Checks an answer against a response in `components/responses` (the host's own answers,
    /// which the document describes once and every operation refers to).
    pub fn check_component_response(
        &self,
        name: &str,
        exchange: &Exchange<'_>,
    ) -> Result<(), Drift> {
        let at = pointer_of(&["components", "responses", name]);
        let response = self
            .root
            .pointer(&at[1..])
            .unwrap_or_else(|| panic!("no {at} in openapi.yaml"));
        self.check_content(&at, self.resolve(response), exchange, false)
    }

    /// The body of a 404 for an undescribed path or a 405 for an unlisted method: the
    /// documented `Error`, as JSON.
    fn check_error_body(&self, exchange: &Exchange<'_>) -> Result<(), Drift> {
        let error = json!({
            "description": "an error",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        });
        let head = exchange.method.eq_ignore_ascii_case("HEAD");
        self.check_content("#/components/schemas/Error", &error, exchange, head)
    }

    /// Content type and body against a response object.
    fn check_content(
        &self,
        at: &str,
        response: &Value,
        exchange: &Exchange<'_>,
        head: bool,
    ) -> Result<(), Drift> {
        let content = response["content"].as_object().filter(|c| !c.is_empty());
        let Some(content) = content else {
            if !exchange.body.is_empty() {
                return Err(Drift::UnexpectedBody {
                    bytes: exchange.body.len(),
                });
            }
            return Ok(());
        };
        let actual = exchange.content_type.map(essence);
        let media = actual
            .as_deref()
            .and_then(|actual| content.iter().find(|(media, _)| covers(media, actual)));
        let Some((media_type, media)) = media else {
            return Err(Drift::ContentType {
                documented: content.keys().cloned().collect(),
                actual: exchange.content_type.map(str::to_owned),
            });
        };
        if head || !is_json(media_type) {
            return Ok(());
        }
        let Some(schema) = media.get("schema") else {
            return Ok(());
        };
        let instance: Value = serde_json::from_slice(exchange.body).map_err(|err| {
            Drift::NotJson(format!("{err}: {}", String::from_utf8_lossy(exchange.body)))
        })?;
        let validator = self.validator(schema);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .take(8)
            .map(|err| format!("at `{}`: {err}", err.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Drift::Schema {
                schema: format!("{at} ({media_type})"),
                errors,
            })
        }
    }

    /// The compiled schema, with the document's `components` beside it so that its
    /// `#/components/...` references resolve.
    fn validator(&self, schema: &Value) -> Arc<jsonschema::Validator> {
        let key = schema.to_string();
        let mut cache = self.validators.lock().unwrap();
        if let Some(validator) = cache.get(&key) {
            return validator.clone();
        }
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            Value::Bool(true) => serde_json::Map::new(),
            other => panic!("an unsupported schema in openapi.yaml: {other}"),
        };
        root.insert("components".to_owned(), self.root["components"].clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|err| panic!("openapi.yaml: a schema does not compile: {err}: {key}"));
        let validator = Arc::new(validator);
        cache.insert(key, validator.clone());
        validator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({
            "id": "0192f1a4-7c2b-7d3e-8f00-123456789abc",
            "status": "queued",
            "progress": 0,
            "source": { "kind": "upload", "filename": "a.mp4", "content_type": null },
            "bitrate": "192",
            "audio": null,
            "error": null,
            "created_at": "2026-11-30T08:00:00Z",
            "updated_at": "2026-11-30T08:00:00Z"
        })
    }

    fn answer(method: &str, path: &str, status: u16, body: &Value) -> Result<(), Drift> {
        let body = body.to_string();
        document().check(&Exchange {
            method,
            path,
            status,
            content_type: Some("application/json"),
            body: body.as_bytes(),
        })
    }

    const JOB: &str = "/v1/jobs/0192f1a4-7c2b-7d3e-8f00-123456789abc";

    #[test]
    fn a_valid_job_passes() {
        assert_eq!(answer("GET", JOB, 200, &job()), Ok(()));
    }

    #[test]
    fn a_job_without_an_id_is_refused() {
        let mut job = job();
        job.as_object_mut().unwrap().remove("id");
        let drift = answer("GET", JOB, 200, &job).unwrap_err();
        assert!(
            matches!(&drift, Drift::Schema { errors, .. } if errors.iter().any(|e| e.contains("\"id\""))),
            "{drift}"
        );
    }

    #[test]
    fn a_job_with_a_wrong_status_or_date_is_refused() {
        let mut unknown_status = job();
        unknown_status["status"] = json!("paused");
        assert!(matches!(
            answer("GET", JOB, 200, &unknown_status),
            Err(Drift::Schema { .. })
        ));
        let mut bad_date = job();
        bad_date["created_at"] = json!("yesterday");
        assert!(matches!(
            answer("GET", JOB, 200, &bad_date),
            Err(Drift::Schema { .. })
        ));
    }

    #[test]
    fn an_error_without_a_code_is_refused() {
        let drift = answer(
            "GET",
            JOB,
            404,
            &json!({ "error": { "message": "no such job" } }),
        )
        .unwrap_err();
        assert!(matches!(drift, Drift::Schema { .. }), "{drift}");
        assert_eq!(
            answer(
                "GET",
                JOB,
                404,
                &json!({ "error": { "code": "not_found", "message": "no such job" } })
            ),
            Ok(())
        );
    }

    #[test]
    fn undocumented_statuses_methods_paths_and_content_types_are_refused() {
        let error = json!({ "error": { "code": "x", "message": "y" } });
        assert!(matches!(
            answer("GET", JOB, 418, &error),
            Err(Drift::UndocumentedStatus { status: 418, .. })
        ));
        assert!(matches!(
            answer("PATCH", JOB, 200, &job()),
            Err(Drift::UndocumentedMethod { .. })
        ));
        assert_eq!(answer("PATCH", JOB, 405, &error), Ok(()));
        assert!(matches!(
            answer("GET", "/v2/nowhere", 200, &job()),
            Err(Drift::UnknownPath { status: 200 })
        ));
        assert_eq!(answer("GET", "/v2/nowhere", 404, &error), Ok(()));
        let body = job().to_string();
        let as_text = Exchange {
            method: "GET",
            path: JOB,
            status: 200,
            content_type: Some("text/plain"),
            body: body.as_bytes(),
        };
        assert!(matches!(
            document().check(&as_text),
            Err(Drift::ContentType { .. })
        ));
        let not_json = Exchange {
            content_type: Some("application/json"),
            body: b"{\"id\":",
            ..as_text
        };
        assert!(matches!(
            document().check(&not_json),
            Err(Drift::NotJson(_))
        ));
    }

    #[test]
    fn head_bodies_no_content_and_the_hosts_own_answers() {
        let head = Exchange {
            method: "HEAD",
            path: JOB,
            status: 200,
            content_type: Some("application/json"),
            body: b"",
        };
        assert_eq!(document().check(&head), Ok(()));
        let deleted_with_a_body = Exchange {
            method: "DELETE",
            status: 204,
            body: b"{}",
            ..head
        };
        assert_eq!(
            document().check(&deleted_with_a_body),
            Err(Drift::UnexpectedBody { bytes: 2 })
        );
        let host = |body: &'static [u8]| Exchange {
            body,
            content_type: Some("application/json"),
            ..head
        };
        let busy = br#"{"error":{"code":"too_many_requests","message":"m","request_id":"r"}}"#;
        assert_eq!(
            document().check_component_response("Error429", &host(busy)),
            Ok(())
        );
        assert!(matches!(
            document().check_component_response("Error429", &host(br#"{"code":"x"}"#)),
            Err(Drift::Schema { .. })
        ));
    }

    #[test]
    fn ranges_and_default_are_used_when_no_exact_status_is_documented() {
        let doc = Document::from_yaml(
            r##"
openapi: 3.1.0
info: { title: t, version: "1" }
paths:
  /things/{id}:
    get:
      responses:
        "200":
          description: ok
          content: { application/json: { schema: { type: object, required: [id] } } }
        "4XX":
          description: client error
          content: { application/json: { schema: { $ref: "#/components/schemas/Error" } } }
        default:
          description: anything else
          content: { text/plain: { schema: { type: string } } }
components:
  schemas:
    Error: { type: object, required: [code] }
"##,
        )
        .unwrap();
        let exchange = |status, content_type, body: &'static [u8]| Exchange {
            method: "GET",
            path: "/things/1",
            status,
            content_type: Some(content_type),
            body,
        };
        assert_eq!(
            doc.check(&exchange(409, "application/json", b"{\"code\":\"c\"}")),
            Ok(())
        );
        assert!(matches!(
            doc.check(&exchange(409, "application/json", b"{}")),
            Err(Drift::Schema { .. })
        ));
        assert_eq!(
            doc.check(&exchange(502, "text/plain; charset=utf-8", b"bad")),
            Ok(())
        );
        assert!(matches!(
            doc.check(&exchange(200, "application/json", b"{}")),
            Err(Drift::Schema { .. })
        ));
    }

    #[test]
    fn a_3_0_document_or_a_nullable_is_refused() {
        let old = "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths: {}\n";
        assert!(Document::from_yaml(old).is_err());
        let nullable = "openapi: 3.1.0\ninfo: { title: t, version: '1' }\npaths: {}\n\
                        components: { schemas: { A: { type: string, nullable: true } } }\n";
        let Err(err) = Document::from_yaml(nullable) else {
            panic!("a nullable was taken");
        };
        assert!(err.contains("nullable"), "{err}");
    }
}
