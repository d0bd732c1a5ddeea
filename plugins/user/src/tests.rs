//! The seed's `user_handlers`, replayed natively.

use serde_json::json;
use streamfold_guest::{Aggregate, ErrorKind, Event, ReducerError};

use super::User;

fn replay(events: &[(&str, &str)]) -> Result<String, ReducerError> {
    let mut user = Aggregate::<User>::new("1");
    let events = (1..).zip(events).map(|(revision, (ty, data))| {
        Event::new(revision, *ty, *data).with_timestamp("2026-11-26T06:05:04.123456Z")
    });
    user.apply(events)?;
    user.state_json()
}

#[test]
fn the_seed_example() {
    let state = replay(&[
        (
            "UserCreated",
            r#"{"id": 1, "name": "Alice", "email": "alice@example.com", "timestamp": "2026-01-02T03:04:05.000006"}"#,
        ),
        (
            "EmailChanged",
            r#"{"email": "alice.smith@example.com", "timestamp": "2026-01-03T00:00:00"}"#,
        ),
    ])
    .unwrap();
    // Python's json.dumps of the seed's state, without its spaces.
    assert_eq!(
        state,
        r#"{"id":1,"name":"Alice","email":"alice.smith@example.com","created_at":"2026-01-02T03:04:05.000006","email_updated_at":"2026-01-03T00:00:00"}"#
    );
}

#[test]
fn keys_keep_their_first_position_like_a_python_dict() {
    let state = replay(&[
        ("NameChanged", r#"{"name": "Bo"}"#),
        ("EmailChanged", r#"{"email": "b@x", "timestamp": "t1"}"#),
        (
            "UserCreated",
            r#"{"id": "u-7", "name": "Bob", "email": "bob@x", "timestamp": "t2"}"#,
        ),
        ("NameChanged", r#"{"name": "Robert"}"#),
    ])
    .unwrap();
    assert_eq!(
        state,
        r#"{"name":"Robert","email":"bob@x","email_updated_at":"t1","id":"u-7","created_at":"t2"}"#
    );
}

#[test]
fn json_types_are_preserved() {
    let state = replay(&[(
        "UserCreated",
        r#"{"id": 18446744073709551615, "name": {"first": "A", "last": null}, "email": ["a@x", 2.5, true], "timestamp": -9007199254740993}"#,
    )])
    .unwrap();
    assert_eq!(
        state,
        r#"{"id":18446744073709551615,"name":{"first":"A","last":null},"email":["a@x",2.5,true],"created_at":-9007199254740993}"#
    );
}

#[test]
fn other_types_and_extra_fields_are_ignored() {
    let state = replay(&[
        ("UserDeleted", "not even json"),
        ("NameChanged", r#"{"name": "C", "reason": "typo"}"#),
    ])
    .unwrap();
    assert_eq!(state, r#"{"name":"C"}"#);
}

#[test]
fn a_missing_field_is_invalid_data_and_changes_nothing() {
    let mut user = Aggregate::<User>::new("1");
    user.apply([Event::new(1, "NameChanged", r#"{"name": "A"}"#)])
        .unwrap();
    let err = user
        .apply([
            Event::new(2, "NameChanged", r#"{"name": "B"}"#),
            Event::new(
                3,
                "UserCreated",
                r#"{"id": 1, "name": "C", "timestamp": "t"}"#,
            ),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        ReducerError {
            kind: ErrorKind::InvalidData,
            event_index: Some(1),
            message: r#"field "email" is missing"#.into(),
        }
    );
    assert_eq!(user.state_json().unwrap(), r#"{"name":"B"}"#);

    let err = replay(&[("EmailChanged", r#"{"email": "e"}"#)]).unwrap_err();
    assert_eq!(err.message, r#"field "timestamp" is missing"#);
}

#[test]
fn data_that_is_not_an_object_is_invalid_data() {
    for data in ["[1]", "\"x\"", "null", "{"] {
        let err = replay(&[("NameChanged", data)]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidData, "{data}");
        assert_eq!(err.event_index, Some(0));
    }
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut user = Aggregate::<User>::new("1");
    user.apply([Event::new(1, "NameChanged", r#"{"name": "A", "x": 1}"#)])
        .unwrap();
    let mut restored = Aggregate::<User>::new("1");
    restored.restore(&user.state_json().unwrap()).unwrap();
    assert_eq!(restored.state(), user.state());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&restored.state_json().unwrap()).unwrap(),
        json!({"name": "A"})
    );
}
