//! A job's conversion options as `POST /v1/jobs` takes them: query parameters, multipart text
//! fields or JSON fields beside `url`, each read by the contract's one rule
//! ([`Options::set`]); a field given twice (in the query and the body, say) is refused. Once
//! the request is read, the options are checked and laid over the caller's preset, if they
//! name one ([`resolve`]): what the job runs with, and records.

use mp3conv_contract::options::{MAX_FIELD_BYTES, OptionError, Options};
use mp3conv_sql::Db;

use crate::error::ApiError;
use crate::presets;
use crate::routes::query_params;

/// Most bytes of all text fields of one form together: room for every option at its longest.
pub const MAX_TEXT_BYTES: usize = 16 * MAX_FIELD_BYTES;

/// Sets every query parameter as an option on `options` (each parameter is one).
pub fn set_query(options: &mut Options, query: &str) -> Result<(), OptionError> {
    for (name, value) in query_params(query) {
        options.set(&name, &value)?;
    }
    Ok(())
}

/// The options given as query parameters.
pub fn from_query(query: &str) -> Result<Options, OptionError> {
    let mut options = Options::default();
    set_query(&mut options, query)?;
    Ok(options)
}

/// How much text a form's fields may still bring: [`MAX_FIELD_BYTES`] each,
/// [`MAX_TEXT_BYTES`] in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBudget {
    left: usize,
}

impl Default for TextBudget {
    fn default() -> Self {
        Self {
            left: MAX_TEXT_BYTES,
        }
    }
}

impl TextBudget {
    /// Takes `len` bytes more of field `name`, of which `so_far` were taken before; refused
    /// (`field_too_large`, naming the field) past either bound, before the rest is read.
    pub fn take(&mut self, name: &str, so_far: usize, len: usize) -> Result<(), OptionError> {
        if so_far + len > MAX_FIELD_BYTES {
            return Err(OptionError::too_large(name, MAX_FIELD_BYTES));
        }
        if len > self.left {
            return Err(OptionError {
                field: name.chars().take(64).collect(),
                code: "field_too_large",
                message: format!("the text fields together are longer than {MAX_TEXT_BYTES} bytes"),
            });
        }
        self.left -= len;
        Ok(())
    }
}

/// What can be refused before a file is sent: the options read so far, checked, and their
/// preset, if named, found. Fields still to come can only add options, so nothing refused here
/// could have been made right by them.
pub fn check_early(db: &dyn Db, owner: &str, options: &Options) -> Result<(), ApiError> {
    options.check()?;
    if let Some(name) = &options.preset
        && presets::options(db, owner, name)?.is_none()
    {
        return Err(OptionError::unknown_preset(name).into());
    }
    Ok(())
}

/// The options a job runs with: the request's, checked, over the caller's preset when they
/// name one (400 `unknown_preset` for one they do not have). The result keeps the preset's
/// name.
pub fn resolve(db: &dyn Db, owner: &str, request: Options) -> Result<Options, ApiError> {
    request.check()?;
    let Some(name) = request.preset.clone() else {
        return Ok(request);
    };
    let preset =
        presets::options(db, owner, &name)?.ok_or_else(|| OptionError::unknown_preset(&name))?;
    Ok(request.over(preset)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use mp3conv_contract::job::Bitrate;
    use mp3conv_contract::options::{Normalize, Position};
    use time::OffsetDateTime;

    fn field(result: Result<impl std::fmt::Debug, ApiError>) -> (String, &'static str) {
        match result {
            Err(ApiError::Option(err)) => (err.field, err.code),
            other => panic!("not an option error: {other:?}"),
        }
    }

    #[test]
    fn query_parameters_are_options() {
        let options = from_query("bitrate=320&start=1%3A30&title=My+Talk").unwrap();
        assert_eq!(options.bitrate, Some(Bitrate::Constant(320)));
        assert_eq!(options.start, Some(Position::from_millis(90_000)));
        assert_eq!(options.title.as_deref(), Some("My Talk"));
        for (query, expected) in [
            ("speed=2", ("speed", "unknown_field")),
            ("bitrate=1000", ("bitrate", "invalid_bitrate")),
            ("end=1&end=2", ("end", "duplicate_field")),
        ] {
            let err = from_query(query).unwrap_err();
            assert_eq!((err.field.as_str(), err.code), expected, "{query}");
        }
    }

    #[test]
    fn text_fields_are_bounded_each_and_together() {
        let mut budget = TextBudget::default();
        assert!(budget.take("title", 0, MAX_FIELD_BYTES).is_ok());
        let err = budget
            .take("comment", MAX_FIELD_BYTES - 10, 11)
            .unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("comment", "field_too_large")
        );
        let mut budget = TextBudget::default();
        for i in 0..(MAX_TEXT_BYTES / MAX_FIELD_BYTES) {
            budget.take(&format!("f{i}"), 0, MAX_FIELD_BYTES).unwrap();
        }
        let err = budget.take("artist", 0, 1).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("artist", "field_too_large")
        );
        assert!(err.message.contains("together"), "{}", err.message);
    }

    #[test]
    fn a_preset_lies_under_the_request() {
        let db = testing::database();
        testing::add_user(&db, "u1", "u1@example.com");
        let now = OffsetDateTime::now_utc();
        presets::create(
            &db,
            "u1",
            br#"{"name":"talks","options":{"bitrate":"128","normalize":-16,"start":5}}"#,
            now,
        )
        .unwrap();
        let request = from_query("preset=talks&bitrate=320&end=20").unwrap();
        let merged = resolve(&db, "u1", request).unwrap();
        assert_eq!(merged.bitrate, Some(Bitrate::Constant(320)));
        assert_eq!(merged.normalize, Some(Normalize::Target(-16)));
        assert_eq!(merged.start, Some(Position::from_millis(5000)));
        assert_eq!(merged.end, Some(Position::from_millis(20_000)));
        assert_eq!(merged.preset.as_deref(), Some("talks"));
        // Someone else's preset is no preset.
        testing::add_user(&db, "u2", "u2@example.com");
        assert_eq!(
            field(resolve(&db, "u2", from_query("preset=talks").unwrap())),
            ("preset".into(), "unknown_preset")
        );
        assert_eq!(
            field(check_early(&db, "u2", &from_query("preset=talks").unwrap())),
            ("preset".into(), "unknown_preset")
        );
        assert!(check_early(&db, "u1", &from_query("preset=talks&end=1").unwrap()).is_ok());
        // The request's end before the preset's start: the merge is refused.
        assert_eq!(
            field(resolve(
                &db,
                "u1",
                from_query("preset=talks&end=3").unwrap()
            )),
            ("end".into(), "invalid_option")
        );
        assert_eq!(
            field(resolve(&db, "u1", from_query("start=9&end=3").unwrap())),
            ("end".into(), "invalid_option")
        );
    }
}
