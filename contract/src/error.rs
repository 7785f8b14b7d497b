//! The error body every part answers with: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code for programs, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable, `snake_case`.
    pub code: String,
    /// Human-readable; never holds server paths or secrets.
    pub message: String,
    /// The request field at fault, when one is (a conversion option, a form field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The quota refused (`quota_exceeded`): a [`crate::quota::Limit`]'s name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
                limit: None,
            },
        }
    }

    /// The same body naming the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }

    /// The same body naming the quota refused.
    pub fn with_limit(mut self, limit: crate::quota::Limit) -> Self {
        self.error.limit = Some(limit.as_str().to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_has_its_documented_shape() {
        let body = serde_json::to_value(ErrorBody::new("not_found", "no such job")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "not_found", "message": "no such job"}})
        );
        assert!(serde_json::from_str::<ErrorBody>(r#"{"error":{"code":"x"}}"#).is_err());
    }
}
