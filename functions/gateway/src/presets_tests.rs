//! Presets on a real SQLite database with the repository's migrations.

use mp3conv_sql::testing::Sqlite;
use serde_json::{Value, json};

use super::*;
use crate::testing;

fn db() -> Sqlite {
    let db = testing::database();
    testing::add_user(&db, "u1", "u1@example.com");
    testing::add_user(&db, "u2", "u2@example.com");
    db
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_852_800 + seconds).unwrap()
}

fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The field and code of a 400 about a field.
fn refused(result: Result<Reply, ApiError>) -> (String, &'static str) {
    match result {
        Err(ApiError::Option(err)) => (err.field, err.code),
        other => panic!("not a field's 400: {other:?}"),
    }
}

fn conflict(result: Result<Reply, ApiError>) -> &'static str {
    match result {
        Err(ApiError::Conflict { code, .. }) => code,
        other => panic!("not a 409: {other:?}"),
    }
}

#[test]
fn presets_are_made_read_replaced_and_deleted() {
    let db = db();
    let made = create(
        &db,
        "u1",
        br#"{"name":"my talks","options":{"bitrate":192,"normalize":true,"title":"","start":"1:00"}}"#,
        at(0),
    )
    .unwrap();
    assert_eq!(made.status, 201);
    assert_eq!(header(&made, "location"), Some("/v1/presets/my%20talks"));
    assert_eq!(
        json(&made),
        json!({
            "name": "my talks",
            "options": {"bitrate": "192", "normalize": -16, "title": "", "start": 60.0},
            "created_at": "2026-11-28T08:00:00Z",
            "updated_at": "2026-11-28T08:00:00Z"
        })
    );
    create(&db, "u1", br#"{"name":"Alpha","options":{}}"#, at(1)).unwrap();
    let shown = get(&db, "u1", "my talks").unwrap();
    assert_eq!(json(&shown), json(&made));
    let names: Vec<Value> = json(&list(&db, "u1").unwrap())["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("Alpha"), json!("my talks")], "by name");

    let replaced = put(
        &db,
        "u1",
        "my talks",
        br#"{"options":{"normalize":false}}"#,
        at(60),
    )
    .unwrap();
    assert_eq!(replaced.status, 200);
    assert_eq!(header(&replaced, "location"), None);
    assert_eq!(
        json(&replaced),
        json!({
            "name": "my talks",
            "options": {"normalize": false},
            "created_at": "2026-11-28T08:00:00Z",
            "updated_at": "2026-11-28T08:01:00Z"
        })
    );
    assert_eq!(json(&get(&db, "u1", "my talks").unwrap()), json(&replaced));
    // A clock finer than the store: what is answered is what is read back.
    let fine = at(61) + time::Duration::nanoseconds(123_456_789);
    let again = put(&db, "u1", "my talks", br#"{"options":{}}"#, fine).unwrap();
    assert_eq!(json(&again)["updated_at"], "2026-11-28T08:01:01.123Z");
    assert_eq!(json(&get(&db, "u1", "my talks").unwrap()), json(&again));
    let new = put(
        &db,
        "u1",
        "café Ü",
        br#"{"options":{"channels":"mono"}}"#,
        at(2),
    )
    .unwrap();
    assert_eq!(new.status, 201);
    assert_eq!(
        header(&new, "location"),
        Some("/v1/presets/caf%C3%A9%20%C3%9C")
    );

    assert_eq!(delete(&db, "u1", "my talks").unwrap().status, 204);
    assert_eq!(get(&db, "u1", "my talks"), Err(ApiError::PresetNotFound));
    assert_eq!(delete(&db, "u1", "my talks"), Err(ApiError::PresetNotFound));
    assert_eq!(
        options(&db, "u1", "café Ü").unwrap().unwrap().channels,
        Some(mp3conv_contract::options::Channels::Mono)
    );
}

#[test]
fn another_users_presets_are_invisible() {
    let db = db();
    create(
        &db,
        "u1",
        br#"{"name":"mine","options":{"bitrate":320}}"#,
        at(0),
    )
    .unwrap();
    assert_eq!(get(&db, "u2", "mine"), Err(ApiError::PresetNotFound));
    assert_eq!(delete(&db, "u2", "mine"), Err(ApiError::PresetNotFound));
    assert_eq!(json(&list(&db, "u2").unwrap()), json!({"presets": []}));
    assert_eq!(options(&db, "u2", "mine").unwrap(), None);
    // The same name is theirs to use, and leaves the first user's alone.
    let theirs = put(&db, "u2", "mine", br#"{"options":{"bitrate":128}}"#, at(1)).unwrap();
    assert_eq!(theirs.status, 201);
    assert_eq!(
        json(&get(&db, "u1", "mine").unwrap())["options"]["bitrate"],
        "320"
    );
    forget_user(&db, "u2").unwrap();
    assert_eq!(options(&db, "u2", "mine").unwrap(), None);
    assert!(options(&db, "u1", "mine").unwrap().is_some());
}

#[test]
fn names_and_options_are_the_contracts() {
    let db = db();
    for (body, expected) in [
        (
            &br#"{"name":"../x","options":{}}"#[..],
            ("name", "invalid_option"),
        ),
        (br#"{"name":" ","options":{}}"#, ("name", "invalid_option")),
        (br#"{"name":7,"options":{}}"#, ("name", "invalid_option")),
        (
            br#"{"name":" .. ","options":{}}"#,
            ("name", "invalid_option"),
        ),
        (br#"{"options":{}}"#, ("name", "invalid_option")),
        (br#"{"name":"p"}"#, ("options", "invalid_option")),
        (
            br#"{"name":"p","options":"fast"}"#,
            ("options", "invalid_option"),
        ),
        (
            br#"{"name":"p","options":{},"colour":1}"#,
            ("colour", "unknown_field"),
        ),
        (
            br#"{"name":"p","options":{"speed":2}}"#,
            ("speed", "unknown_field"),
        ),
        (
            br#"{"name":"p","options":{"bitrate":999}}"#,
            ("bitrate", "invalid_bitrate"),
        ),
        (
            br#"{"name":"p","options":{"start":20,"end":10}}"#,
            ("end", "invalid_option"),
        ),
        (
            br#"{"name":"p","options":{"preset":"q"}}"#,
            ("preset", "invalid_option"),
        ),
    ] {
        let (field, code) = refused(create(&db, "u1", body, at(0)));
        assert_eq!(
            (field.as_str(), code),
            expected,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        create(&db, "u1", b"[1]", at(0)),
        Err(ApiError::BadRequest {
            code: "invalid_json",
            ..
        })
    ));
    // A name in a path is exactly a name: what clients cannot address is refused.
    for name in ["..", ".", " padded", "a/b", "{name}", ""] {
        let (field, code) = refused(put(&db, "u1", name, br#"{"options":{}}"#, at(0)));
        assert_eq!(
            (field.as_str(), code),
            ("name", "invalid_option"),
            "{name:?}"
        );
        assert_eq!(
            get(&db, "u1", name),
            Err(ApiError::PresetNotFound),
            "{name:?}"
        );
    }
    let (field, _) = refused(put(&db, "u1", "p", br#"{"name":"q","options":{}}"#, at(0)));
    assert_eq!(field, "name", "PUT takes its name from the path");
    assert_eq!(json(&list(&db, "u1").unwrap()), json!({"presets": []}));
}

#[test]
fn a_name_is_taken_once_and_fifty_is_the_most() {
    let db = db();
    let body = |name: &str| format!(r#"{{"name":"{name}","options":{{"bitrate":128}}}}"#);
    create(&db, "u1", body("p0").as_bytes(), at(0)).unwrap();
    assert_eq!(
        conflict(create(&db, "u1", body("p0").as_bytes(), at(1))),
        "preset_exists"
    );
    // Names differing in case are different presets.
    create(&db, "u1", body("P0").as_bytes(), at(0)).unwrap();
    for i in 2..MAX_PRESETS {
        create(&db, "u1", body(&format!("p{i}")).as_bytes(), at(0)).unwrap();
    }
    assert_eq!(
        conflict(create(&db, "u1", body("one more").as_bytes(), at(2))),
        "too_many_presets"
    );
    assert_eq!(
        conflict(put(&db, "u1", "one more", br#"{"options":{}}"#, at(2))),
        "too_many_presets"
    );
    // At the bound: an existing name is still preset_exists, and PUT still replaces.
    assert_eq!(
        conflict(create(&db, "u1", body("p0").as_bytes(), at(2))),
        "preset_exists"
    );
    assert_eq!(
        put(&db, "u1", "p0", br#"{"options":{}}"#, at(3))
            .unwrap()
            .status,
        200
    );
    let listed = json(&list(&db, "u1").unwrap());
    assert_eq!(
        listed["presets"].as_array().unwrap().len(),
        MAX_PRESETS as usize
    );
    // Another user's count is their own.
    assert_eq!(
        create(&db, "u2", body("p0").as_bytes(), at(0))
            .unwrap()
            .status,
        201
    );
    delete(&db, "u1", "p0").unwrap();
    assert_eq!(
        create(&db, "u1", body("one more").as_bytes(), at(4))
            .unwrap()
            .status,
        201
    );
}

#[test]
fn a_corrupt_row_is_an_internal_error_not_a_guess() {
    let db = db();
    db.execute(
        "INSERT INTO presets (user_id, name, options, created_at, updated_at) VALUES ('u1', 'bad', '{\"speed\":2}', 0, 0)",
        &[],
    )
    .unwrap();
    assert!(matches!(get(&db, "u1", "bad"), Err(ApiError::Internal(_))));
    assert!(matches!(
        options(&db, "u1", "bad"),
        Err(ApiError::Internal(_))
    ));
}
