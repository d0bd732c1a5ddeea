//! Group commit: appends to aggregates of one category partition that arrive while a
//! script call runs share the next call, and each keeps its own expected revision,
//! conflict and result.

use std::collections::BTreeMap;

use streamfold_store::{CategoryReadOptions, ExpectedRevision, ReadOptions};
use streamfold_test_support::{Env, counted_events, revisions};

/// Aggregates in the test, and appends racing on each.
const AGGREGATES: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_share_calls_and_each_gets_its_own_answer() {
    let env = Env::start().await;
    let before = env.store.append_calls();
    // Two appends race on every aggregate, both expecting no stream: on each, exactly
    // one must win and the other must conflict with revision 2 (the winner's batch),
    // whatever call either went in.
    let mut tasks = Vec::new();
    for i in 0..AGGREGATES {
        for writer in 0..2 {
            let store = env.store.clone();
            tasks.push(tokio::spawn(async move {
                let events = counted_events(writer * 10 + 1, 2);
                let r = store
                    .append("user", &i.to_string(), events, ExpectedRevision::NoStream)
                    .await;
                (i, writer, r)
            }));
        }
    }
    let mut outcomes: BTreeMap<u64, Vec<Result<u64, u64>>> = BTreeMap::new();
    for t in tasks {
        let (i, _, r) = t.await.unwrap();
        let outcome = match r {
            Ok(done) => {
                assert_eq!((done.first_revision, done.last_revision), (1, 2));
                assert!(!done.already_appended);
                Ok(done.last_revision)
            }
            Err(e) => Err(e.conflict().expect("only conflicts").actual),
        };
        outcomes.entry(i).or_default().push(outcome);
    }
    for (i, mut results) in outcomes {
        results.sort();
        assert_eq!(results, [Ok(2), Err(2)], "aggregate {i}");
        let history = env
            .store
            .read_all("user", &i.to_string(), ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(revisions(&history), [1, 2], "aggregate {i}");
    }
    let feed = env
        .store
        .read_category("user", CategoryReadOptions::default().count(10_000))
        .await
        .unwrap();
    assert_eq!(
        feed.len() as u64,
        AGGREGATES * 2,
        "only the winners' events"
    );

    // The appends shared calls: fewer script calls than appends.
    let after = env.store.append_calls();
    let appends = AGGREGATES * 2;
    assert_eq!(after.appends - before.appends, appends);
    assert!(
        after.calls - before.calls < appends,
        "{} script calls for {appends} racing appends",
        after.calls - before.calls
    );
}

#[tokio::test]
async fn one_appends_error_leaves_the_others_of_its_call_alone() {
    let env = Env::start().await;
    // A key of the wrong kind where one aggregate's stream goes.
    let keys = env.store.keys("user", "bad").unwrap();
    let mut con = env.raw().await;
    let _: () = redis::cmd("SET")
        .arg(&keys.stream)
        .arg("not a stream")
        .query_async(&mut con)
        .await
        .unwrap();
    let store = &env.store;
    let (bad, good, other) = tokio::join!(
        store.append("user", "bad", counted_events(1, 1), ExpectedRevision::Any),
        store.append(
            "user",
            "good",
            counted_events(1, 3),
            ExpectedRevision::NoStream
        ),
        store.append(
            "user",
            "other",
            counted_events(1, 1),
            ExpectedRevision::Exact(5)
        ),
    );
    assert!(bad.unwrap_err().is_corrupt());
    assert_eq!(good.unwrap().last_revision, 3);
    assert_eq!(other.unwrap_err().conflict().unwrap().actual, 0);
    assert_eq!(store.revision("user", "good").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn competing_exact_appends_to_one_aggregate_share_calls_and_one_wins() {
    // Many more than the calls a partition has in flight at once: the rest wait
    // for a call to end, and those that waited together share the next call.
    const WRITERS: u64 = 64;
    let env = Env::start().await;
    let before = env.store.append_calls();
    // Every writer expects the aggregate's revision 0; exactly one wins, and every
    // other gets a conflict naming the winner's revision.
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = env.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    "user",
                    "contended",
                    counted_events(writer * 10 + 1, 1),
                    ExpectedRevision::Exact(0),
                )
                .await
        }));
    }
    let (mut won, mut conflicts) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(done) => won.push((done.first_revision, done.already_appended)),
            Err(e) => conflicts.push(e.conflict().expect("only conflicts").actual),
        }
    }
    assert_eq!(won, [(1, false)]);
    assert_eq!(conflicts, vec![1; WRITERS as usize - 1]);
    let history = env
        .store
        .read_all("user", "contended", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&history), [1]);
    // Losers waiting behind the first calls got their answers together, not one call
    // each.
    let after = env.store.append_calls();
    assert_eq!(after.appends - before.appends, WRITERS);
    assert!(
        after.calls - before.calls < WRITERS,
        "{} script calls for {WRITERS} competing appends",
        after.calls - before.calls
    );
}
