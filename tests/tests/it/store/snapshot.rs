//! Snapshots: saved and loaded per aggregate and per reducer digest, replaced by a
//! newer one of the same reducer, and checked when saved.

use streamfold_store::{AppendResult, ExpectedRevision, Snapshot};
use streamfold_test_support::{Env, counted_events};

/// `user/1` with four events.
async fn four_events(env: &Env) -> AppendResult {
    env.store
        .append(
            "user",
            "1",
            counted_events(1, 4),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn no_snapshot_is_found_before_one_is_saved() {
    let env = Env::start().await;
    four_events(&env).await;
    assert!(
        env.store
            .load_snapshot("user", "1", "sha256:aaa")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn snapshots_round_trip_and_are_kept_per_reducer_digest() {
    let env = Env::start().await;
    let s = &env.store;
    let r = four_events(&env).await;
    let snap = Snapshot::new(r#"{"count":4}"#, 4, r.positions[3].clone(), "sha256:aaa");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    let other = Snapshot::new(r#"{"total":10}"#, 2, r.positions[1].clone(), "sha256:bbb");
    s.save_snapshot("user", "1", &other).await.unwrap();

    assert_eq!(
        s.load_snapshot("user", "1", "sha256:aaa").await.unwrap(),
        Some(snap)
    );
    assert_eq!(
        s.load_snapshot("user", "1", "sha256:bbb").await.unwrap(),
        Some(other)
    );
    assert!(
        s.load_snapshot("user", "1", "sha256:ccc")
            .await
            .unwrap()
            .is_none(),
        "another reducer's snapshot is ignored"
    );
}

#[tokio::test]
async fn a_snapshot_is_not_found_for_another_aggregate() {
    let env = Env::start().await;
    let s = &env.store;
    let r = four_events(&env).await;
    let snap = Snapshot::new(r#"{"count":4}"#, 4, r.positions[3].clone(), "sha256:aaa");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    assert!(
        s.load_snapshot("user", "2", "sha256:aaa")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_newer_snapshot_of_the_same_reducer_replaces_the_old_one() {
    let env = Env::start().await;
    let s = &env.store;
    let r = four_events(&env).await;
    let snap = Snapshot::new(r#"{"count":4}"#, 4, r.positions[3].clone(), "sha256:aaa");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    let newer = Snapshot::new(r#"{"count":5}"#, 5, r.positions[3].clone(), "sha256:aaa");
    s.save_snapshot("user", "1", &newer).await.unwrap();
    assert_eq!(
        s.load_snapshot("user", "1", "sha256:aaa")
            .await
            .unwrap()
            .unwrap()
            .revision,
        5
    );
}

#[tokio::test]
async fn a_snapshot_whose_state_is_not_json_is_refused() {
    let env = Env::start().await;
    four_events(&env).await;
    let bad_state = Snapshot::new("{nope", 1, "1-0", "sha256:aaa");
    assert!(
        env.store
            .save_snapshot("user", "1", &bad_state)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

#[tokio::test]
async fn a_snapshot_without_a_reducer_digest_is_refused() {
    let env = Env::start().await;
    four_events(&env).await;
    let no_digest = Snapshot::new("{}", 1, "1-0", "");
    assert!(
        env.store
            .save_snapshot("user", "1", &no_digest)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}
