//! Input the store refuses before writing anything (bad JSON, empty or unusable names,
//! empty batches, a bad key prefix), and odd ids it accepts.

use serde_json::json;
use streamfold_store::{EventStore, ExpectedRevision, NewEvent, ReadOptions, StoreConfig};
use streamfold_test_support::{Env, numbered_event};

fn good() -> Vec<NewEvent> {
    vec![numbered_event("Counted", 1)]
}

/// The number of keys in the test server's database 0.
async fn dbsize(env: &Env) -> u64 {
    redis::cmd("DBSIZE")
        .query_async(&mut env.raw().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn appends_with_bad_input_are_rejected_and_write_nothing() {
    let env = Env::start().await;
    let s = &env.store;
    let cases: Vec<(&str, &str, Vec<NewEvent>)> = vec![
        (
            "user",
            "1",
            vec![NewEvent {
                data: "{\"a\":".to_owned(),
                ..numbered_event("Counted", 1)
            }],
        ),
        (
            "user",
            "1",
            vec![NewEvent {
                data: String::new(),
                ..numbered_event("Counted", 1)
            }],
        ),
        ("user", "", good()),
        ("", "1", good()),
        ("us{er", "1", good()),
        ("us}er", "1", good()),
        ("us er", "1", good()),
        ("user", "1", vec![NewEvent::new("", &json!({}))]),
        ("user", "1", vec![]),
    ];
    for (t, id, events) in cases {
        let err = s
            .append(t, id, events, ExpectedRevision::Any)
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{t:?}/{id:?}: {err}");
    }
    assert_eq!(dbsize(&env).await, 0, "nothing was written");
}

#[test]
fn event_data_that_is_not_json_is_refused_when_the_event_is_made() {
    assert!(
        NewEvent::from_json_text("Counted", "nope")
            .unwrap_err()
            .is_invalid_input()
    );
}

#[tokio::test]
async fn reads_with_bad_names_are_rejected() {
    let env = Env::start().await;
    let s = &env.store;
    assert!(
        s.read_all("us{er", "1", ReadOptions::default())
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(s.revision("user", "").await.unwrap_err().is_invalid_input());
    assert!(
        s.load_snapshot("", "1", "d")
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert_eq!(dbsize(&env).await, 0, "nothing was written");
}

/// Odd but valid ids are fine and stay apart.
#[tokio::test]
async fn odd_but_valid_ids_are_accepted_and_kept_apart() {
    let env = Env::start().await;
    let s = &env.store;
    for id in ["1:cat", "x}:agg:1", "*", "ünïcode id"] {
        s.append("user", id, good(), ExpectedRevision::NoStream)
            .await
            .unwrap();
    }
    assert_eq!(s.revision("user", "1").await.unwrap(), 0);
    let mut found = s.aggregate_ids("user", None).await.unwrap();
    found.sort();
    assert_eq!(found, ["*", "1:cat", "x}:agg:1", "ünïcode id"]);
}

#[tokio::test]
async fn connecting_with_a_key_prefix_holding_a_brace_is_invalid_input() {
    let err = EventStore::connect("redis://127.0.0.1:1/", StoreConfig::default().prefix("a{b"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}
