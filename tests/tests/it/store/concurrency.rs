//! Optimistic concurrency: each kind of expected revision, the conflicts it reports
//! (with the expected and the actual revision), and concurrent writers that retry.

use std::collections::HashSet;

use serde_json::json;
use streamfold_store::{
    CategoryReadOptions, Error, ErrorKind, ExpectedRevision, NewEvent, ReadOptions,
};
use streamfold_test_support::{Env, counted_events, event_ids, revisions};

/// `err` is a conflict on `user/1` between `want_expected` and `want_actual`.
fn assert_conflict(err: Error, want_expected: ExpectedRevision, want_actual: u64) {
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "expected a conflict, got {err:?}"
    );
    let conflict = err.conflict().expect("a conflict has its details");
    assert_eq!(conflict.aggregate, "user/1");
    assert_eq!(conflict.expected, want_expected);
    assert_eq!(conflict.actual, want_actual);
}

/// A store with `user/1` at revision 2.
async fn at_revision_two() -> Env {
    let env = Env::start().await;
    env.store
        .append(
            "user",
            "1",
            counted_events(1, 2),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    env
}

#[tokio::test]
async fn exists_on_a_missing_aggregate_conflicts() {
    let env = Env::start().await;
    let s = &env.store;
    let err = s
        .append("user", "1", counted_events(1, 1), ExpectedRevision::Exists)
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exists, 0);
    assert_eq!(s.revision("user", "1").await.unwrap(), 0);
}

#[tokio::test]
async fn an_exact_revision_on_a_missing_aggregate_conflicts() {
    let env = Env::start().await;
    let s = &env.store;
    let err = s
        .append(
            "user",
            "1",
            counted_events(1, 1),
            ExpectedRevision::Exact(3),
        )
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(3), 0);
    assert_eq!(s.revision("user", "1").await.unwrap(), 0);
}

#[tokio::test]
async fn no_stream_on_an_existing_aggregate_conflicts_and_says_so() {
    let env = at_revision_two().await;
    let s = &env.store;
    let err = s
        .append(
            "user",
            "1",
            counted_events(3, 1),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_conflict(err, ExpectedRevision::NoStream, 2);
    assert!(
        message.contains("user/1") && message.contains("no-stream") && message.contains('2'),
        "{message}"
    );
    assert_eq!(
        s.revision("user", "1").await.unwrap(),
        2,
        "conflicts write nothing"
    );
}

#[tokio::test]
async fn an_exact_revision_behind_or_ahead_conflicts() {
    let env = at_revision_two().await;
    let s = &env.store;
    let err = s
        .append(
            "user",
            "1",
            counted_events(3, 1),
            ExpectedRevision::Exact(1),
        )
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(1), 2);
    let err = s
        .append(
            "user",
            "1",
            counted_events(3, 1),
            ExpectedRevision::Exact(5),
        )
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(5), 2);
    assert_eq!(
        s.revision("user", "1").await.unwrap(),
        2,
        "conflicts write nothing"
    );
}

#[tokio::test]
async fn each_expected_revision_kind_that_matches_goes_through() {
    let env = at_revision_two().await;
    let s = &env.store;
    s.append("user", "1", counted_events(3, 1), ExpectedRevision::Exists)
        .await
        .unwrap();
    s.append(
        "user",
        "1",
        counted_events(4, 1),
        ExpectedRevision::Exact(3),
    )
    .await
    .unwrap();
    let r = s
        .append("user", "1", counted_events(5, 1), ExpectedRevision::Any)
        .await
        .unwrap();
    assert_eq!(r.last_revision, 5);
}

#[tokio::test]
async fn concurrent_writers_with_retry_loops_leave_no_gap_or_duplicate() {
    const TASKS: u64 = 10;
    const BATCHES: u64 = 6;
    const PER_BATCH: u64 = 3;
    let env = Env::start().await;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = env.store.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for b in 0..BATCHES {
                let events: Vec<NewEvent> = (0..PER_BATCH)
                    .map(|i| NewEvent::new("Counted", &json!({"task": task, "batch": b, "i": i})))
                    .collect();
                loop {
                    let current = store.revision("counter", "shared").await.unwrap();
                    match store
                        .append(
                            "counter",
                            "shared",
                            events.clone(),
                            ExpectedRevision::Exact(current),
                        )
                        .await
                    {
                        Ok(r) => {
                            assert_eq!(r.first_revision, current + 1);
                            break;
                        }
                        Err(e) if e.is_conflict() => {
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("task {task}: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.unwrap();
    }
    let total = TASKS * BATCHES * PER_BATCH;
    let s = &env.store;
    assert_eq!(s.revision("counter", "shared").await.unwrap(), total);
    let all = s
        .read_all("counter", "shared", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        revisions(&all),
        (1..=total).collect::<Vec<_>>(),
        "revisions 1..N, no gap, no duplicate"
    );
    assert_eq!(
        event_ids(&all).into_iter().collect::<HashSet<_>>().len() as u64,
        total
    );
    // Each batch stayed contiguous.
    for chunk in all.chunks(PER_BATCH as usize) {
        let first = chunk[0].data_value().unwrap();
        for (i, e) in chunk.iter().enumerate() {
            let d = e.data_value().unwrap();
            assert_eq!(
                (&d["task"], &d["batch"], d["i"].as_u64()),
                (&first["task"], &first["batch"], Some(i as u64))
            );
        }
    }
    // The category stream holds the same events in the same order.
    let cat = s
        .read_category("counter", CategoryReadOptions::default().count(10_000))
        .await
        .unwrap();
    assert_eq!(event_ids(&cat), event_ids(&all));
    eprintln!("{conflicts} conflicts were retried");
}
