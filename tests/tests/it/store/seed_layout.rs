//! The seed layout ([`Layout::Seed`]): streams the seed document's `EventStore` wrote
//! are adopted, continued in its keys, and stay readable by it.

use redis::AsyncCommands;
use serde_json::json;
use streamfold_store::{
    AppendResult, CategoryReadOptions, EventStore, ExpectedRevision, Layout, ReadOptions, Snapshot,
    StoreConfig,
};
use streamfold_test_support::{Env, numbered_event, revisions};
use uuid::Uuid;

/// Writes an event the way the seed's `EventStore.append` does: two plain `XADD`s of
/// its seven fields (category first, with `MAXLEN`), no revision, no script.
async fn seed_append(
    con: &mut streamfold_store::Connection,
    id: &str,
    event_type: &str,
    data: serde_json::Value,
) {
    let fields = [
        ("event_id", Uuid::new_v4().to_string()),
        ("aggregate_type", "user".to_owned()),
        ("aggregate_id", id.to_owned()),
        ("event_type", event_type.to_owned()),
        ("data", data.to_string()),
        (
            "timestamp",
            chrono::Utc::now()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string(),
        ),
        ("version", "1".to_owned()),
    ];
    let _: String = con
        .xadd_maxlen(
            "events:user",
            redis::streams::StreamMaxlen::Equals(100_000),
            "*",
            &fields,
        )
        .await
        .unwrap();
    let _: String = con
        .xadd(format!("events:user:{id}"), "*", &fields)
        .await
        .unwrap();
}

/// `user/1` as the seed wrote it (three events and the seed's own snapshot fields),
/// and a store in the seed layout on the same server.
async fn seed_wrote_alice(env: &Env) -> EventStore {
    let mut raw = env.raw().await;
    seed_append(
        &mut raw,
        "1",
        "UserCreated",
        json!({"id": 1, "name": "Alice", "email": "a@x.com"}),
    )
    .await;
    seed_append(
        &mut raw,
        "1",
        "EmailChanged",
        json!({"email": "alice@example.com"}),
    )
    .await;
    seed_append(&mut raw, "1", "NameChanged", json!({"name": "Alicia"})).await;
    // The seed's own snapshot fields.
    let _: () = raw
        .hset_multiple("snapshot:user:1", &[("state", "{}"), ("version_id", "0-1")])
        .await
        .unwrap();
    env.store_with(StoreConfig::default().layout(Layout::Seed))
        .await
}

/// Appends a fourth event to the seed's `user/1` through the store.
async fn append_fourth(s: &EventStore) -> AppendResult {
    s.append(
        "user",
        "1",
        vec![numbered_event("EmailChanged", 4)],
        ExpectedRevision::Exact(3),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_history_the_seed_wrote_is_read_with_revisions_by_position() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    assert_eq!(s.revision("user", "1").await.unwrap(), 3);
    let read = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&read), [1, 2, 3], "revisions by position");
    assert_eq!(read[1].event_type, "EmailChanged");
    assert_eq!(read[1].data_value().unwrap()["email"], "alice@example.com");
}

/// Appends continue at N+1, in the seed's keys, where the seed's readers see them.
#[tokio::test]
async fn appends_continue_the_seeds_history_in_its_keys() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    let r = append_fourth(&s).await;
    assert_eq!((r.first_revision, r.last_revision), (4, 4));
    let err = s
        .append(
            "user",
            "1",
            vec![numbered_event("X", 5)],
            ExpectedRevision::Exact(3),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    let read = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&read), [1, 2, 3, 4]);
    assert_eq!(env.xlen("events:user:1").await, 4);
    assert_eq!(env.xlen("events:user").await, 4);
}

/// Reading in pages and from a revision work on unnumbered entries too.
#[tokio::test]
async fn paged_reads_from_a_revision_count_the_seeds_entries() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    append_fourth(&s).await;
    let tail = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().from_revision(2).page_size(1),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&tail), [2, 3, 4]);
}

/// The category feed: the seed's entries have no revision there (0), ours do.
#[tokio::test]
async fn the_category_feed_has_revisions_only_for_our_entries() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    append_fourth(&s).await;
    let cat = s
        .read_category("user", CategoryReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&cat), [0, 0, 0, 4]);
}

/// Snapshots sit beside the seed's fields, which stay untouched.
#[tokio::test]
async fn snapshots_sit_beside_the_seeds_snapshot_fields() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    let r = append_fourth(&s).await;
    let snap = Snapshot::new(r#"{"name":"Alicia"}"#, 4, r.positions[0].clone(), "d1");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    assert_eq!(
        s.load_snapshot("user", "1", "d1").await.unwrap(),
        Some(snap)
    );
    let state: String = env
        .raw()
        .await
        .hget("snapshot:user:1", "state")
        .await
        .unwrap();
    assert_eq!(state, "{}");
}

/// A type with the seed layout's separator in it cannot be used.
#[tokio::test]
async fn a_type_with_the_seed_layouts_separator_is_refused() {
    let env = Env::start().await;
    let s = seed_wrote_alice(&env).await;
    let err = s
        .append(
            "a:b",
            "1",
            vec![numbered_event("X", 1)],
            ExpectedRevision::Any,
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());
    assert_eq!(s.aggregate_ids("user", None).await.unwrap(), ["1"]);
}
