//! Appending: the envelope written to both streams, batches that land whole or not at
//! all, and revisions that a trimmed or edited category stream does not disturb.

use redis::AsyncCommands;
use serde_json::json;
use streamfold_store::{
    AppendResult, CategoryReadOptions, EventStore, ExpectedRevision, NewEvent, ReadOptions,
};
use streamfold_test_support::{Env, counted_events, event_ids, revisions};

/// Appends `UserCreated` to `user/1`, then a batch of `EmailChanged` and a version-2
/// `NameChanged`; returns both results.
async fn append_alice(s: &EventStore) -> (AppendResult, AppendResult) {
    let created = NewEvent::new(
        "UserCreated",
        &json!({"id": 1, "name": "Alice", "email": "a@x.com"}),
    );
    let r = s
        .append("user", "1", vec![created], ExpectedRevision::NoStream)
        .await
        .unwrap();
    let r2 = s
        .append(
            "user",
            "1",
            vec![
                NewEvent::new("EmailChanged", &json!({"email": "b@x.com"})),
                NewEvent::from_json_text("NameChanged", r#"{"name":"Alicia"}"#)
                    .unwrap()
                    .with_version("2"),
            ],
            ExpectedRevision::Exact(1),
        )
        .await
        .unwrap();
    (r, r2)
}

#[tokio::test]
async fn appends_number_their_events_after_the_aggregates_revision() {
    let env = Env::start().await;
    let s = &env.store;
    let (r, r2) = append_alice(s).await;
    assert_eq!((r.first_revision, r.last_revision), (1, 1));
    assert!(!r.already_appended);
    assert_eq!(r.event_ids[0].get_version_num(), 4, "event ids are UUID v4");
    assert_eq!((r2.first_revision, r2.last_revision), (2, 3));
    assert_eq!(r2.positions.len(), 2);
    assert_eq!(s.revision("user", "1").await.unwrap(), 3);
}

#[tokio::test]
async fn a_read_event_carries_the_whole_envelope() {
    let env = Env::start().await;
    let s = &env.store;
    let (r, _) = append_alice(s).await;
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), [1, 2, 3]);
    let first = &all[0];
    assert_eq!(first.aggregate_type, "user");
    assert_eq!(first.aggregate_id, "1");
    assert_eq!(first.event_type, "UserCreated");
    assert_eq!(first.event_id, r.event_ids[0].to_string());
    assert_eq!(first.position, r.positions[0]);
    assert_eq!(first.version, "1");
    assert_eq!(all[2].version, "2");
    assert_eq!(first.data_value().unwrap()["name"], "Alice");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&first.timestamp).is_ok()
            && first.timestamp.ends_with('Z'),
        "RFC 3339 UTC: {}",
        first.timestamp
    );
    // Serialized with the seed's names, data embedded as JSON.
    let v = serde_json::to_value(first).unwrap();
    assert_eq!(v["data"]["email"], "a@x.com");
    assert_eq!(v["revision"], 1);
}

#[tokio::test]
async fn the_category_stream_gets_the_same_events_in_the_same_order() {
    let env = Env::start().await;
    let s = &env.store;
    append_alice(s).await;
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    let cat = s
        .read_category("user", CategoryReadOptions::default())
        .await
        .unwrap();
    assert_eq!(event_ids(&cat), event_ids(&all));
    assert_eq!(revisions(&cat), [1, 2, 3]);
    let keys = s.keys("user", "1").unwrap();
    assert_eq!(keys.stream, "sf:{user:0}:agg:1");
    assert_eq!(env.xlen(&keys.stream).await, 3);
    assert_eq!(env.xlen(&keys.category).await, 3);
}

#[tokio::test]
async fn an_unknown_aggregate_is_at_revision_zero_with_an_empty_history() {
    let env = Env::start().await;
    let s = &env.store;
    append_alice(s).await;
    assert_eq!(s.revision("user", "2").await.unwrap(), 0);
    assert!(
        s.read_all("user", "2", ReadOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// `user/1` at revision 2, and its keys.
async fn two_events(env: &Env) -> streamfold_store::AggregateKeys {
    let s = &env.store;
    s.append("user", "1", counted_events(1, 2), ExpectedRevision::Any)
        .await
        .unwrap();
    s.keys("user", "1").unwrap()
}

/// `user/1` is still at revision 2, with two entries in each stream.
async fn assert_still_two_events(env: &Env, keys: &streamfold_store::AggregateKeys) {
    assert_eq!(env.store.revision("user", "1").await.unwrap(), 2);
    assert_eq!(env.xlen(&keys.stream).await, 2);
    assert_eq!(env.xlen(&keys.category).await, 2);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_writes_none_of_it() {
    let env = Env::start().await;
    let keys = two_events(&env).await;
    let mut bad = counted_events(3, 3);
    bad[1].data = "{not json".to_owned();
    let err = env
        .store
        .append("user", "1", bad, ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_still_two_events(&env, &keys).await;
}

#[tokio::test]
async fn a_conflicting_batch_writes_none_of_it() {
    let env = Env::start().await;
    let keys = two_events(&env).await;
    let err = env
        .store
        .append(
            "user",
            "1",
            counted_events(3, 3),
            ExpectedRevision::Exact(1),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_still_two_events(&env, &keys).await;
}

#[tokio::test]
async fn a_good_batch_lands_whole_with_consecutive_revisions() {
    let env = Env::start().await;
    let s = &env.store;
    let keys = two_events(&env).await;
    let r = s
        .append(
            "user",
            "1",
            counted_events(3, 5),
            ExpectedRevision::Exact(2),
        )
        .await
        .unwrap();
    assert_eq!((r.first_revision, r.last_revision), (3, 7));
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=7).collect::<Vec<_>>());
    assert_eq!(env.xlen(&keys.category).await, 7);
}

/// A store whose category streams are trimmed at about 10 entries, and `user/1` with
/// 300 events appended in batches of 10.
async fn three_hundred_events_trimmed_to_ten() -> Env {
    let env = Env::start_with(|c| c.category_max_len(10)).await;
    for i in 0..30 {
        env.store
            .append(
                "user",
                "1",
                counted_events(i * 10 + 1, 10),
                ExpectedRevision::Exact(i * 10),
            )
            .await
            .unwrap();
    }
    env
}

#[tokio::test]
async fn a_trimmed_category_stream_leaves_the_aggregate_and_its_revision_whole() {
    let env = three_hundred_events_trimmed_to_ten().await;
    let s = &env.store;
    let keys = s.keys("user", "1").unwrap();
    let cat_len = env.xlen(&keys.category).await;
    assert!(
        cat_len < 300,
        "the category stream is trimmed (approximately): {cat_len}"
    );
    assert_eq!(
        env.xlen(&keys.stream).await,
        300,
        "the aggregate stream is never trimmed"
    );
    assert_eq!(s.revision("user", "1").await.unwrap(), 300);
}

#[tokio::test]
async fn an_entry_deleted_from_the_category_stream_does_not_break_revisions() {
    let env = three_hundred_events_trimmed_to_ten().await;
    let s = &env.store;
    let keys = s.keys("user", "1").unwrap();
    let (victim, _) = env.stream_entries(&keys.category).await.pop().unwrap();
    let deleted: u64 = env
        .raw()
        .await
        .xdel(&keys.category, &[&victim])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let r = s
        .append(
            "user",
            "1",
            counted_events(301, 1),
            ExpectedRevision::Exact(300),
        )
        .await
        .unwrap();
    assert_eq!(r.first_revision, 301);
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=301).collect::<Vec<_>>());
    // The category feed's newest entry is the new event.
    let cat = env.stream_entries(&keys.category).await;
    assert_eq!(cat.last().unwrap().1, r.event_ids[0].to_string());
}
