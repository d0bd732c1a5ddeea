//! Retry safety: an append retried with the same event ids and the same expected
//! revision writes nothing and returns the original result, whatever came between
//! (exact revisions) or if nothing came between (`any`, `exists`).

use std::collections::HashSet;

use streamfold_store::{AppendResult, EventStore, ExpectedRevision, NewEvent, ReadOptions};
use streamfold_test_support::{Env, counted_events, event_ids, revisions};
use uuid::Uuid;

/// The events with ids of their own, so that a retry can send the same ids.
fn with_ids(events: Vec<NewEvent>) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|e| e.with_id(Uuid::new_v4()))
        .collect()
}

/// Nothing was written twice, in either stream: `user/1` has exactly `n` events, with
/// revisions 1..=n and `n` distinct ids.
async fn assert_written_once(env: &Env, n: u64) {
    let s = &env.store;
    let keys = s.keys("user", "1").unwrap();
    assert_eq!(s.revision("user", "1").await.unwrap(), n);
    assert_eq!(env.xlen(&keys.stream).await, n);
    assert_eq!(env.xlen(&keys.category).await, n);
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=n).collect::<Vec<_>>());
    assert_eq!(
        event_ids(&all).into_iter().collect::<HashSet<_>>().len() as u64,
        n
    );
}

/// Appends the events with `expected`, unwrapped.
async fn append(s: &EventStore, events: &[NewEvent], expected: ExpectedRevision) -> AppendResult {
    s.append("user", "1", events.to_vec(), expected)
        .await
        .unwrap()
}

/// Two batches with known ids, and what their appends returned.
struct ThreeBatches {
    first: Vec<NewEvent>,
    r1: AppendResult,
    second: Vec<NewEvent>,
    r2: AppendResult,
}

/// `user/1` with three events of known ids (`first`, appended with no-stream), then a
/// batch of two of known ids (`second`, at exact 3), then four others (at exact 5): at
/// revision 9.
async fn three_batches(s: &EventStore) -> ThreeBatches {
    let first = with_ids(counted_events(1, 3));
    let r1 = append(s, &first, ExpectedRevision::NoStream).await;
    let second = with_ids(counted_events(4, 2));
    let r2 = append(s, &second, ExpectedRevision::Exact(3)).await;
    append(s, &counted_events(6, 4), ExpectedRevision::Exact(5)).await;
    ThreeBatches {
        first,
        r1,
        second,
        r2,
    }
}

#[tokio::test]
async fn an_exact_retry_right_after_the_append_returns_the_original_result() {
    let env = Env::start().await;
    let s = &env.store;
    let first = with_ids(counted_events(1, 3));
    let r1 = append(s, &first, ExpectedRevision::NoStream).await;
    let again = append(s, &first, ExpectedRevision::NoStream).await;
    assert!(again.already_appended);
    assert_eq!(
        (
            again.first_revision,
            again.last_revision,
            &again.positions,
            &again.event_ids
        ),
        (1, 3, &r1.positions, &r1.event_ids)
    );
    assert_written_once(&env, 3).await;
}

#[tokio::test]
async fn an_exact_retry_after_later_appends_is_found_by_reading_back() {
    let env = Env::start().await;
    let s = &env.store;
    let b = three_batches(s).await;
    let late = append(s, &b.second, ExpectedRevision::Exact(3)).await;
    assert!(late.already_appended);
    assert_eq!((late.first_revision, &late.positions), (4, &b.r2.positions));
    assert_written_once(&env, 9).await;
}

#[tokio::test]
async fn a_no_stream_retry_after_later_appends_is_found_by_reading_back() {
    let env = Env::start().await;
    let s = &env.store;
    let b = three_batches(s).await;
    let late_first = append(s, &b.first, ExpectedRevision::NoStream).await;
    assert!(late_first.already_appended);
    assert_eq!(late_first.positions, b.r1.positions);
    assert_written_once(&env, 9).await;
}

#[tokio::test]
async fn the_same_ids_with_another_expected_revision_are_a_conflict_not_a_retry() {
    let env = Env::start().await;
    let s = &env.store;
    let b = three_batches(s).await;
    let err = s
        .append("user", "1", b.second, ExpectedRevision::Exact(2))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_written_once(&env, 9).await;
}

#[tokio::test]
async fn an_any_retry_of_the_last_batch_returns_the_original_result() {
    let env = Env::start().await;
    let s = &env.store;
    append(s, &counted_events(1, 9), ExpectedRevision::NoStream).await;
    let third = with_ids(counted_events(10, 2));
    let r3 = append(s, &third, ExpectedRevision::Any).await;
    let again = append(s, &third, ExpectedRevision::Any).await;
    assert!(again.already_appended);
    assert_eq!(
        (again.first_revision, &again.positions),
        (r3.first_revision, &r3.positions)
    );
    assert_written_once(&env, 11).await;
}

#[tokio::test]
async fn an_exists_retry_of_the_last_batch_is_recognised() {
    let env = Env::start().await;
    let s = &env.store;
    append(s, &counted_events(1, 11), ExpectedRevision::NoStream).await;
    let fourth = with_ids(counted_events(12, 1));
    append(s, &fourth, ExpectedRevision::Exists).await;
    assert!(
        append(s, &fourth, ExpectedRevision::Exists)
            .await
            .already_appended
    );
    assert_written_once(&env, 12).await;
}
