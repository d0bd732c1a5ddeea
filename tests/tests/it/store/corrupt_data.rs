//! Keys of ours that hold something else (another type of value): reported as corrupt
//! data with the key's name, never a panic, and an append that meets one writes
//! nothing, even when it fails after its first aggregate entry (the category stream is
//! written second).

use redis::AsyncCommands;
use streamfold_store::{AggregateKeys, Error, ExpectedRevision, ReadOptions};
use streamfold_test_support::{Env, counted_events, numbered_event};

/// `err` reports corrupt data in `key`. (The error no longer exposes the key as a
/// field: its message is `corrupt data in <key>: <reason>`.)
fn assert_corrupt_in(err: Error, key: &str) {
    assert!(err.is_corrupt(), "not reported as corrupt data: {err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("corrupt data in {key}: ")),
        "not reported as corrupt data in {key}: {message}"
    );
}

#[tokio::test]
async fn an_append_meeting_a_category_key_of_another_type_is_corrupt_data() {
    let env = Env::start().await;
    let s = &env.store;
    let keys = s.keys("user", "9").unwrap();
    let _: () = env
        .raw()
        .await
        .set(&keys.category, "not a stream")
        .await
        .unwrap();
    let err = s
        .append(
            "user",
            "9",
            vec![numbered_event("Counted", 1)],
            ExpectedRevision::Any,
        )
        .await
        .unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(env.xlen(&keys.stream).await, 0);
}

#[tokio::test]
async fn a_read_meeting_an_aggregate_key_of_another_type_is_corrupt_data() {
    let env = Env::start().await;
    let s = &env.store;
    let other = s.keys("user", "9").unwrap();
    let _: () = env
        .raw()
        .await
        .set(&other.stream, "not a stream")
        .await
        .unwrap();
    let err = s
        .read_all("user", "9", ReadOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_corrupt(), "{err}");
}

/// `acct/1` with two events, then its category stream replaced by a string.
async fn category_replaced(env: &Env) -> AggregateKeys {
    let s = &env.store;
    s.append(
        "acct",
        "1",
        counted_events(1, 2),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    let one = s.keys("acct", "1").unwrap();
    let mut raw = env.raw().await;
    let _: () = raw.del(&one.category).await.unwrap();
    let _: () = raw.set(&one.category, "not a stream").await.unwrap();
    one
}

/// The append fails after its first aggregate entry, which is taken back.
#[tokio::test]
async fn an_append_failing_at_the_category_stream_takes_its_aggregate_entries_back() {
    let env = Env::start().await;
    let s = &env.store;
    let one = category_replaced(&env).await;
    let before = env.stream_entries(&one.stream).await;
    assert_eq!(before.len(), 2);
    for expected in [ExpectedRevision::Exact(2), ExpectedRevision::Any] {
        let err = s
            .append("acct", "1", counted_events(3, 3), expected)
            .await
            .unwrap_err();
        assert_corrupt_in(err, &one.category);
        assert_eq!(env.stream_entries(&one.stream).await, before);
        assert_eq!(s.revision("acct", "1").await.unwrap(), 2);
    }
}

/// A new aggregate whose append fails at the category stream: its stream is not left
/// behind, empty.
#[tokio::test]
async fn a_new_aggregate_failing_at_the_category_stream_leaves_no_empty_stream() {
    let env = Env::start().await;
    let s = &env.store;
    let one = category_replaced(&env).await;
    let err = s
        .append(
            "acct",
            "2",
            counted_events(1, 2),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap_err();
    assert_corrupt_in(err, &one.category);
    let two = s.keys("acct", "2").unwrap();
    let exists: bool = env.raw().await.exists(&two.stream).await.unwrap();
    assert!(!exists, "an empty stream was left behind");
    assert_eq!(s.aggregate_ids("acct", None).await.unwrap(), ["1"]);
}

#[tokio::test]
async fn a_revision_counter_of_another_type_is_corrupt_data_named_by_its_key() {
    let env = Env::start().await;
    let s = &env.store;
    let three = s.keys("acct", "3").unwrap();
    let mut raw = env.raw().await;
    let _: () = raw.set(&three.revision, "7").await.unwrap();
    let err = s
        .append("acct", "3", counted_events(1, 1), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert_corrupt_in(err, &three.revision);
    let cat_len: u64 = raw.xlen(&three.category).await.unwrap();
    assert_eq!(cat_len, 0, "nothing reached the category stream");
}

#[tokio::test]
async fn an_aggregate_stream_of_another_type_is_corrupt_data_named_by_its_key() {
    let env = Env::start().await;
    let s = &env.store;
    let four = s.keys("acct", "4").unwrap();
    let mut raw = env.raw().await;
    let _: () = raw.rpush(&four.stream, "x").await.unwrap();
    let err = s
        .append("acct", "4", counted_events(1, 1), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert_corrupt_in(err, &four.stream);
    let cat_len: u64 = raw.xlen(&four.category).await.unwrap();
    assert_eq!(cat_len, 0, "nothing reached the category stream");
}
