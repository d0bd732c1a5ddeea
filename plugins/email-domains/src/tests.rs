//! The projection folded natively, batch by batch, as the host would.

use serde_json::{Value, json};
use streamfold_guest::{ErrorKind, Event, MemoryReadModel, ProjectionEvent};

use super::{EmailDomains, domain_of};

fn created(id: &str, email: &str) -> ProjectionEvent {
    event(
        id,
        "UserCreated",
        json!({"id": id, "name": "N", "email": email, "timestamp": "t"}),
    )
}

fn changed(id: &str, email: &str) -> ProjectionEvent {
    event(
        id,
        "EmailChanged",
        json!({"email": email, "timestamp": "t"}),
    )
}

fn event(id: &str, ty: &str, data: Value) -> ProjectionEvent {
    Event::new(1, ty, data.to_string()).in_category("user", id, "1733560000000-0")
}

fn fold(batches: &[Vec<ProjectionEvent>]) -> MemoryReadModel {
    let mut model = MemoryReadModel::new();
    for batch in batches {
        model.apply::<EmailDomains>(batch).unwrap();
    }
    model
}

fn doc(model: &MemoryReadModel, key: &str) -> Value {
    model.get_value(key).unwrap_or(Value::Null)
}

#[test]
fn users_are_counted_by_domain_with_ids_sorted() {
    let model = fold(&[
        vec![
            created("b", "Bob@Example.COM"),
            created("a", "alice@example.com"),
        ],
        vec![
            created("c", "carol@other.org"),
            created("10", "x@y@example.com"),
        ],
    ]);
    assert_eq!(
        doc(&model, "domain/example.com"),
        json!({"domain": "example.com", "users": 3, "user_ids": ["10", "a", "b"]})
    );
    assert_eq!(
        doc(&model, "domain/other.org"),
        json!({"domain": "other.org", "users": 1, "user_ids": ["c"]})
    );
    assert_eq!(doc(&model, "user/b"), json!({"domain": "example.com"}));
    assert_eq!(model.documents().len(), 6);
}

#[test]
fn a_user_moves_and_an_empty_domain_is_deleted() {
    let mut model = fold(&[vec![
        created("1", "a@old.com"),
        created("2", "b@old.com"),
        created("3", "c@solo.net"),
    ]]);
    model
        .apply::<EmailDomains>([changed("1", "a@new.com"), changed("3", "c@NEW.com")])
        .unwrap();
    assert_eq!(
        doc(&model, "domain/old.com"),
        json!({"domain": "old.com", "users": 1, "user_ids": ["2"]})
    );
    assert_eq!(doc(&model, "domain/solo.net"), Value::Null);
    assert_eq!(
        doc(&model, "domain/new.com"),
        json!({"domain": "new.com", "users": 2, "user_ids": ["1", "3"]})
    );
    assert_eq!(doc(&model, "user/3"), json!({"domain": "new.com"}));
}

#[test]
fn moves_within_one_batch_see_the_batch_s_own_writes() {
    let model = fold(&[vec![
        created("1", "a@one.com"),
        changed("1", "a@two.com"),
        changed("1", "a@one.com"),
        changed("1", "a@One.com"),
    ]]);
    assert_eq!(
        doc(&model, "domain/one.com"),
        json!({"domain": "one.com", "users": 1, "user_ids": ["1"]})
    );
    assert_eq!(doc(&model, "domain/two.com"), Value::Null);
}

#[test]
fn other_types_and_sources_are_skipped() {
    let model = fold(&[vec![
        event("1", "NameChanged", json!({"name": "x"})),
        Event::new(1, "UserCreated", r#"{"email": "a@b.c"}"#).in_category("cart", "1", "1-0"),
    ]]);
    assert!(model.documents().is_empty());
}

#[test]
fn unusable_data_is_invalid_data_naming_the_event_and_nothing_is_written() {
    let mut model = fold(&[vec![created("1", "a@x.com")]]);
    let before = model.clone();
    for bad in [
        json!({"email": "no-at-sign"}),
        json!({"email": "trailing@"}),
        json!({"email": "a@exa mple.com"}),
        json!({"email": 7}),
        json!({"name": "no email"}),
        json!([1]),
    ] {
        let err = model
            .apply::<EmailDomains>([
                created("2", "b@y.com"),
                event("1", "EmailChanged", bad.clone()),
            ])
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidData, "{bad}");
        assert_eq!(err.event_index, Some(1), "{bad}");
        assert_eq!(model, before, "nothing of a failed batch is kept ({bad})");
    }
}

#[test]
fn a_document_it_cannot_read_is_invalid_document() {
    let mut model = MemoryReadModel::new();
    model.insert("user/1", r#"{"domain": 5}"#);
    let err = model
        .apply::<EmailDomains>([changed("1", "a@b.c")])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidDocument);
    assert!(err.message.starts_with("user/1: "), "{err}");
}

#[test]
fn domains_are_lowercased_after_the_last_at() {
    assert_eq!(domain_of("A@B@Ex.COM").unwrap(), "ex.com");
    assert!(domain_of("@").is_err());
}
