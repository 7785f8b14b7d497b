//! Presets: a caller's named sets of conversion options (`/v1/presets`), kept in the `presets`
//! table (`migrations/*/..._presets.sql`), and what a job naming one (`preset`) runs with.
//!
//! Every statement names the caller: another user's preset is no preset. A preset's options
//! are read by the contract's one rule ([`Options::from_json`]) when saved and again when read,
//! and never name a preset themselves. At most [`MAX_PRESETS`] per user, counted by the insert
//! itself so that parallel requests cannot pass the bound together.

use mp3conv_contract::options::{
    BadJson, OptionError, Options, Preset, PresetList, json_object, preset_name,
};
use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, DbError, Param, Value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Map;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::notifications::{from_unix_ms, unix_ms};

/// Most presets one user keeps.
pub const MAX_PRESETS: u32 = 50;
/// Largest body of `POST /v1/presets` and `PUT /v1/presets/{name}`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a path segment keeps unencoded in a preset's `Location`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `GET /v1/presets`: every preset of the caller's, by name.
pub fn list(db: &dyn Db, user: &str) -> Result<Reply, ApiError> {
    let rows = db
        .query(
            "SELECT name, options, created_at, updated_at FROM presets WHERE user_id = ? ORDER BY name",
            &[text(user)],
        )
        .map_err(database)?;
    let presets = rows
        .iter()
        .map(|row| preset(row))
        .collect::<Result<_, _>>()?;
    Ok(Reply::json(200, &PresetList { presets }))
}

/// `GET /v1/presets/{name}` (the name as decoded from the path).
pub fn get(db: &dyn Db, user: &str, name: &str) -> Result<Reply, ApiError> {
    let name = path_name(name).ok_or(ApiError::PresetNotFound)?;
    let found = stored(db, user, &name)?.ok_or(ApiError::PresetNotFound)?;
    Ok(Reply::json(200, &found))
}

/// `DELETE /v1/presets/{name}`.
pub fn delete(db: &dyn Db, user: &str, name: &str) -> Result<Reply, ApiError> {
    let name = path_name(name).ok_or(ApiError::PresetNotFound)?;
    if stored(db, user, &name)?.is_none() {
        return Err(ApiError::PresetNotFound);
    }
    db.execute(
        "DELETE FROM presets WHERE user_id = ? AND name = ?",
        &[text(user), text(&name)],
    )
    .map_err(database)?;
    Ok(Reply::empty(204))
}

/// `POST /v1/presets` `{"name", "options"}`: 201 with `Location`; 409 `preset_exists` or
/// `too_many_presets`.
pub fn create(
    db: &dyn Db,
    user: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let mut object = body_object(body)?;
    let name = match object.remove("name") {
        Some(serde_json::Value::String(name)) => {
            let name = preset_name(&name).map_err(|e| as_field(e, "name"))?;
            if !addressable(&name) {
                return Err(invalid("name", DOTS).into());
            }
            name
        }
        Some(_) => return Err(invalid("name", "`name` must be a preset name (a string)").into()),
        None => return Err(invalid("name", "give the preset's `name`").into()),
    };
    let options = preset_options(object)?;
    if stored(db, user, &name)?.is_some() {
        return Err(exists(&name));
    }
    let made = insert(db, user, &name, &options, now)?;
    Ok(created(made))
}

/// `PUT /v1/presets/{name}` `{"options"}`: 201 with `Location` when it is new, 200 when it
/// replaced the preset of that name.
pub fn put(
    db: &dyn Db,
    user: &str,
    name: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let name = path_name(name).ok_or_else(|| {
        ApiError::from(invalid(
            "name",
            "the path must end in a preset name: 1-64 letters, digits, spaces, `-`, `_` or `.`",
        ))
    })?;
    let options = preset_options(body_object(body)?)?;
    if let Some(old) = stored(db, user, &name)? {
        return replace(db, user, old, options, now);
    }
    match insert(db, user, &name, &options, now) {
        Ok(made) => Ok(created(made)),
        // Made meanwhile by another request: this one replaces it.
        Err(ApiError::Conflict {
            code: "preset_exists",
            ..
        }) => {
            let old = stored(db, user, &name)?.ok_or(ApiError::PresetNotFound)?;
            replace(db, user, old, options, now)
        }
        Err(err) => Err(err),
    }
}

/// The options of the caller's preset `name`, if they have one of that name.
pub fn options(db: &dyn Db, user: &str, name: &str) -> Result<Option<Options>, ApiError> {
    Ok(stored(db, user, name)?.map(|preset| preset.options))
}

/// Forgets every preset of a user whose account is gone.
pub fn forget_user(db: &dyn Db, user: &str) -> Result<(), DbError> {
    db.execute("DELETE FROM presets WHERE user_id = ?", &[text(user)])
}

/// A preset's path: `/v1/presets/` and its name, percent-encoded.
pub fn location(name: &str) -> String {
    format!("/v1/presets/{}", utf8_percent_encode(name, SEGMENT))
}

fn created(preset: Preset) -> Reply {
    let location = location(&preset.name);
    Reply::json(201, &preset).with_header("location", location)
}

fn replace(
    db: &dyn Db,
    user: &str,
    old: Preset,
    options: Options,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let json = options_json(&options)?;
    let at = unix_ms(now);
    db.execute(
        "UPDATE presets SET options = ?, updated_at = ? WHERE user_id = ? AND name = ?",
        &[text(&json), Param::Int(at), text(user), text(&old.name)],
    )
    .map_err(database)?;
    // As stored (to the millisecond): the answer is what a read gives next.
    let updated_at =
        from_unix_ms(at).ok_or_else(|| ApiError::Internal("the clock is out of range".into()))?;
    let replaced = Preset {
        options,
        updated_at,
        ..old
    };
    Ok(Reply::json(200, &replaced))
}

/// Times an insert that lost a race with another (a MySQL deadlock) is tried.
const INSERT_ATTEMPTS: u32 = 12;
/// The longest pause before trying again, in milliseconds.
const MAX_BACKOFF_MS: u64 = 64;

/// A random pause before the try after `attempt`: up to 2^attempt ms (at most
/// [`MAX_BACKOFF_MS`]), so that requests that deadlocked together do not meet again.
fn back_off(attempt: u32) {
    let mut byte = [0u8; 1];
    let share = getrandom::fill(&mut byte).map_or(128, |()| u64::from(byte[0]));
    let most = (1u64 << attempt.min(6)).min(MAX_BACKOFF_MS);
    std::thread::sleep(std::time::Duration::from_millis(most * share / 255));
}

/// Inserts a preset unless the user has [`MAX_PRESETS`] others already. The count is taken in
/// the insert itself, so two requests at 49 cannot both pass; it leaves out the name's own
/// row, so that of two requests for one name at 49 the second meets the first's row (409
/// `preset_exists`), not the bound. Concurrent inserts deadlock on MySQL (each holds a
/// shared lock on the user's rows the others' inserts wait for); the victim, rolled back, is
/// tried again after a random pause.
fn insert(
    db: &dyn Db,
    user: &str,
    name: &str,
    options: &Options,
    now: OffsetDateTime,
) -> Result<Preset, ApiError> {
    let at = unix_ms(now);
    let json = options_json(options)?;
    let mut attempt = 1;
    loop {
        let inserted = db.execute(
            "INSERT INTO presets (user_id, name, options, created_at, updated_at) \
             SELECT ?, ?, ?, ?, ? FROM \
             (SELECT COUNT(*) AS n FROM presets WHERE user_id = ? AND name <> ?) AS counted \
             WHERE counted.n < ?",
            &[
                text(user),
                text(name),
                text(&json),
                Param::Int(at),
                Param::Int(at),
                text(user),
                text(name),
                Param::Int(MAX_PRESETS.into()),
            ],
        );
        match inserted {
            Ok(()) => break,
            Err(err) if err.unique_violation => return Err(exists(name)),
            Err(err) if err.is_lost_race() && attempt < INSERT_ATTEMPTS => {
                back_off(attempt);
                attempt += 1;
            }
            Err(err) => return Err(database(err)),
        }
    }
    // No conflict, so a row of that name is this one; none means the user is at the bound.
    match stored(db, user, name)? {
        Some(preset) => Ok(preset),
        None => Err(ApiError::Conflict {
            code: "too_many_presets",
            message: format!(
                "you have {MAX_PRESETS} presets, the most one keeps; delete one first"
            ),
        }),
    }
}

fn stored(db: &dyn Db, user: &str, name: &str) -> Result<Option<Preset>, ApiError> {
    let rows = db
        .query(
            "SELECT name, options, created_at, updated_at FROM presets WHERE user_id = ? AND name = ?",
            &[text(user), text(name)],
        )
        .map_err(database)?;
    rows.first().map(|row| preset(row)).transpose()
}

fn preset(row: &[Value]) -> Result<Preset, ApiError> {
    let corrupt = |what: &str| ApiError::Internal(format!("a stored preset has a bad {what}"));
    let text_at = |i: usize| row.get(i).and_then(Value::as_text);
    let time_at = |i: usize| {
        row.get(i)
            .and_then(Value::as_int)
            .and_then(from_unix_ms)
            .ok_or_else(|| corrupt("time"))
    };
    let options = text_at(1)
        .and_then(|json| serde_json::from_str::<Options>(json).ok())
        .ok_or_else(|| corrupt("options"))?;
    Ok(Preset {
        name: text_at(0).ok_or_else(|| corrupt("name"))?.to_owned(),
        options,
        created_at: time_at(2)?,
        updated_at: time_at(3)?,
    })
}

/// The body of `POST` and `PUT`: a JSON object.
fn body_object(body: &[u8]) -> Result<Map<String, serde_json::Value>, ApiError> {
    json_object(body).map_err(|err| match err {
        BadJson::Json(err) => ApiError::bad_request(
            "invalid_json",
            format!("the body must be a JSON object: {err}"),
        ),
        other => other.into(),
    })
}

/// The rest of the body: only `options`, an object of options that names no preset.
fn preset_options(mut object: Map<String, serde_json::Value>) -> Result<Options, ApiError> {
    let options = object.remove("options");
    if let Some(other) = object.keys().next() {
        let shown: String = other.chars().take(64).collect();
        return Err(OptionError {
            field: shown.clone(),
            code: "unknown_field",
            message: format!("`{shown}` is not a field of a preset; send `name` and `options`"),
        }
        .into());
    }
    let options = match options {
        Some(serde_json::Value::Object(options)) => Options::from_json(&options)?,
        _ => {
            return Err(invalid(
                "options",
                "`options` must be an object of conversion options (`{}` for none)",
            )
            .into());
        }
    };
    if options.preset.is_some() {
        return Err(invalid("preset", "a preset cannot name another preset").into());
    }
    Ok(options)
}

/// Why `.` and `..` are refused as names.
const DOTS: &str = "`.` and `..` cannot name a preset: no URL path can carry them";

/// Whether a URL path can carry the name: `.` and `..` are resolved as path steps by clients.
fn addressable(name: &str) -> bool {
    !matches!(name, "." | "..")
}

/// A preset's name as a path gives it (already percent-decoded): exactly a preset name, or
/// none.
fn path_name(text: &str) -> Option<String> {
    preset_name(text)
        .ok()
        .filter(|name| name == text && addressable(name))
}

fn options_json(options: &Options) -> Result<String, ApiError> {
    serde_json::to_string(options).map_err(|err| ApiError::Internal(format!("options: {err}")))
}

fn exists(name: &str) -> ApiError {
    ApiError::Conflict {
        code: "preset_exists",
        message: format!("you have a preset named `{name}` already; PUT replaces it"),
    }
}

fn invalid(field: &str, message: &str) -> OptionError {
    OptionError {
        field: field.to_owned(),
        code: "invalid_option",
        message: message.to_owned(),
    }
}

/// The contract's error about a preset's name, naming the body's field.
fn as_field(mut err: OptionError, field: &str) -> OptionError {
    err.field = field.to_owned();
    err.message = err.message.replacen("`preset`", &format!("`{field}`"), 1);
    err
}

fn text(v: &str) -> Param {
    Param::Text(v.to_owned())
}

fn database(err: DbError) -> ApiError {
    ApiError::Internal(format!("database: {err}"))
}

#[cfg(test)]
#[path = "presets_tests.rs"]
mod tests;
