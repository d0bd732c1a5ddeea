//! The event store against a real redis-server (one per test).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::json;
use streamfold::Error;
use streamfold::store::{
    CategoryReadOptions, EventStore, ExpectedRevision, Layout, NewEvent, ReadOptions,
    RecordedEvent, Snapshot, StoreConfig,
};
use streamfold_tests::Env;
use uuid::Uuid;

fn ev(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(event_type, &json!({ "n": n }))
}

fn batch(from: u64, count: u64) -> Vec<NewEvent> {
    (from..from + count).map(|n| ev("Counted", n)).collect()
}

fn with_ids(events: Vec<NewEvent>) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|e| e.with_id(Uuid::new_v4()))
        .collect()
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

async fn xlen(env: &Env, key: &str) -> u64 {
    env.raw().await.xlen(key).await.expect("XLEN")
}

/// Every entry of a stream, read raw in pages, as (id, event_id).
async fn raw_stream(env: &Env, key: &str) -> Vec<(String, String)> {
    let mut con = env.raw().await;
    let mut out = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let reply: redis::streams::StreamRangeReply = con
            .xrange_count(key, &start, "+", 500)
            .await
            .expect("XRANGE");
        if reply.ids.is_empty() {
            return out;
        }
        for entry in &reply.ids {
            let event_id: String = entry.get("event_id").unwrap_or_default();
            out.push((entry.id.clone(), event_id));
        }
        start = format!("({}", reply.ids.last().unwrap().id);
    }
}

fn assert_conflict(err: Error, want_expected: ExpectedRevision, want_actual: u64) {
    match err {
        Error::Conflict {
            aggregate,
            expected,
            actual,
        } => {
            assert_eq!(aggregate, "user/1");
            assert_eq!(expected, want_expected);
            assert_eq!(actual, want_actual);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn appends_write_the_envelope_to_both_streams() {
    let env = Env::start().await;
    let s = &env.store;
    let created = NewEvent::new(
        "UserCreated",
        &json!({"id": 1, "name": "Alice", "email": "a@x.com"}),
    );
    let r = s
        .append("user", "1", vec![created], ExpectedRevision::NoStream)
        .await
        .unwrap();
    assert_eq!((r.first_revision, r.last_revision), (1, 1));
    assert!(!r.already_appended);
    assert_eq!(r.event_ids[0].get_version_num(), 4, "event ids are UUID v4");

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
    assert_eq!((r2.first_revision, r2.last_revision), (2, 3));
    assert_eq!(r2.positions.len(), 2);
    assert_eq!(s.revision("user", "1").await.unwrap(), 3);

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

    // The category stream got the same events, in the same order.
    let cat = s
        .read_category("user", CategoryReadOptions::default())
        .await
        .unwrap();
    assert_eq!(ids(&cat), ids(&all));
    assert_eq!(revisions(&cat), [1, 2, 3]);
    let keys = s.keys("user", "1").unwrap();
    assert_eq!(keys.stream, "sf:{user:0}:agg:1");
    assert_eq!(xlen(&env, &keys.stream).await, 3);
    assert_eq!(xlen(&env, &keys.category).await, 3);

    // Unknown aggregate: revision 0, empty history.
    assert_eq!(s.revision("user", "2").await.unwrap(), 0);
    assert!(
        s.read_all("user", "2", ReadOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let env = Env::start().await;
    let s = &env.store;
    s.append("user", "1", batch(1, 2), ExpectedRevision::Any)
        .await
        .unwrap();

    // One bad event in the batch: nothing of it is written.
    let mut bad = batch(3, 3);
    bad[1].data = "{not json".to_owned();
    let err = s
        .append("user", "1", bad, ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // A conflicting batch: nothing written either.
    let err = s
        .append("user", "1", batch(3, 3), ExpectedRevision::Exact(1))
        .await
        .unwrap_err();
    assert!(err.is_conflict());

    let keys = s.keys("user", "1").unwrap();
    assert_eq!(s.revision("user", "1").await.unwrap(), 2);
    assert_eq!(xlen(&env, &keys.stream).await, 2);
    assert_eq!(xlen(&env, &keys.category).await, 2);

    // A good batch lands whole, with consecutive revisions.
    let r = s
        .append("user", "1", batch(3, 5), ExpectedRevision::Exact(2))
        .await
        .unwrap();
    assert_eq!((r.first_revision, r.last_revision), (3, 7));
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=7).collect::<Vec<_>>());
    assert_eq!(xlen(&env, &keys.category).await, 7);
}

#[tokio::test]
async fn each_expected_revision_kind_conflicts_with_expected_and_actual() {
    let env = Env::start().await;
    let s = &env.store;

    // exists on a missing aggregate
    let err = s
        .append("user", "1", batch(1, 1), ExpectedRevision::Exists)
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exists, 0);
    // exact N on a missing aggregate
    let err = s
        .append("user", "1", batch(1, 1), ExpectedRevision::Exact(3))
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(3), 0);
    assert_eq!(s.revision("user", "1").await.unwrap(), 0);

    s.append("user", "1", batch(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap();
    // no-stream on an existing aggregate
    let err = s
        .append("user", "1", batch(3, 1), ExpectedRevision::NoStream)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_conflict(err, ExpectedRevision::NoStream, 2);
    assert!(
        message.contains("user/1") && message.contains("no-stream") && message.contains('2'),
        "{message}"
    );
    // exact, behind and ahead
    let err = s
        .append("user", "1", batch(3, 1), ExpectedRevision::Exact(1))
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(1), 2);
    let err = s
        .append("user", "1", batch(3, 1), ExpectedRevision::Exact(5))
        .await
        .unwrap_err();
    assert_conflict(err, ExpectedRevision::Exact(5), 2);
    assert_eq!(
        s.revision("user", "1").await.unwrap(),
        2,
        "conflicts write nothing"
    );

    // And the kinds that match go through.
    s.append("user", "1", batch(3, 1), ExpectedRevision::Exists)
        .await
        .unwrap();
    s.append("user", "1", batch(4, 1), ExpectedRevision::Exact(3))
        .await
        .unwrap();
    let r = s
        .append("user", "1", batch(5, 1), ExpectedRevision::Any)
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
        ids(&all).into_iter().collect::<HashSet<_>>().len() as u64,
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
    assert_eq!(ids(&cat), ids(&all));
    eprintln!("{conflicts} conflicts were retried");
}

#[tokio::test]
async fn a_retried_append_writes_nothing_twice() {
    let env = Env::start().await;
    let s = &env.store;
    let keys = s.keys("user", "1").unwrap();

    // exact: the retry right after the first attempt
    let first = with_ids(batch(1, 3));
    let r1 = s
        .append("user", "1", first.clone(), ExpectedRevision::NoStream)
        .await
        .unwrap();
    let again = s
        .append("user", "1", first.clone(), ExpectedRevision::NoStream)
        .await
        .unwrap();
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

    // exact: the retry after someone else appended (found by reading back)
    let second = with_ids(batch(4, 2));
    let r2 = s
        .append("user", "1", second.clone(), ExpectedRevision::Exact(3))
        .await
        .unwrap();
    s.append("user", "1", batch(6, 4), ExpectedRevision::Exact(5))
        .await
        .unwrap();
    let late = s
        .append("user", "1", second.clone(), ExpectedRevision::Exact(3))
        .await
        .unwrap();
    assert!(late.already_appended);
    assert_eq!((late.first_revision, &late.positions), (4, &r2.positions));
    let late_first = s
        .append("user", "1", first.clone(), ExpectedRevision::NoStream)
        .await
        .unwrap();
    assert!(late_first.already_appended);
    assert_eq!(late_first.positions, r1.positions);

    // Same ids but another expected revision is not a retry: a conflict.
    let err = s
        .append("user", "1", second, ExpectedRevision::Exact(2))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");

    // any / exists: the retry of the last batch
    let third = with_ids(batch(10, 2));
    let r3 = s
        .append("user", "1", third.clone(), ExpectedRevision::Any)
        .await
        .unwrap();
    let again = s
        .append("user", "1", third.clone(), ExpectedRevision::Any)
        .await
        .unwrap();
    assert!(again.already_appended);
    assert_eq!(
        (again.first_revision, &again.positions),
        (r3.first_revision, &r3.positions)
    );
    let fourth = with_ids(batch(12, 1));
    s.append("user", "1", fourth.clone(), ExpectedRevision::Exists)
        .await
        .unwrap();
    assert!(
        s.append("user", "1", fourth, ExpectedRevision::Exists)
            .await
            .unwrap()
            .already_appended
    );

    // Nothing was written twice, in either stream.
    assert_eq!(s.revision("user", "1").await.unwrap(), 12);
    assert_eq!(xlen(&env, &keys.stream).await, 12);
    assert_eq!(xlen(&env, &keys.category).await, 12);
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=12).collect::<Vec<_>>());
    assert_eq!(ids(&all).into_iter().collect::<HashSet<_>>().len(), 12);
}

#[tokio::test]
async fn category_trimming_and_deleted_entries_do_not_break_revisions() {
    let env = Env::start_with(|c| c.category_max_len(10)).await;
    let s = &env.store;
    for i in 0..30 {
        s.append(
            "user",
            "1",
            batch(i * 10 + 1, 10),
            ExpectedRevision::Exact(i * 10),
        )
        .await
        .unwrap();
    }
    let keys = s.keys("user", "1").unwrap();
    let cat_len = xlen(&env, &keys.category).await;
    assert!(
        cat_len < 300,
        "the category stream is trimmed (approximately): {cat_len}"
    );
    assert_eq!(
        xlen(&env, &keys.stream).await,
        300,
        "the aggregate stream is never trimmed"
    );
    assert_eq!(s.revision("user", "1").await.unwrap(), 300);

    // An entry deleted by hand from the category stream changes nothing either.
    let (victim, _) = raw_stream(&env, &keys.category).await.pop().unwrap();
    let deleted: u64 = env
        .raw()
        .await
        .xdel(&keys.category, &[&victim])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let r = s
        .append("user", "1", batch(301, 1), ExpectedRevision::Exact(300))
        .await
        .unwrap();
    assert_eq!(r.first_revision, 301);
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&all), (1..=301).collect::<Vec<_>>());
    // The category feed's newest entries carry their aggregate revisions.
    let cat = raw_stream(&env, &keys.category).await;
    assert_eq!(cat.last().unwrap().1, r.event_ids[0].to_string());
}

#[tokio::test]
async fn time_travel_by_revision_and_by_timestamp() {
    let env = Env::start().await;
    let s = &env.store;
    s.append("user", "1", batch(1, 3), ExpectedRevision::NoStream)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.append("user", "1", batch(4, 2), ExpectedRevision::Exact(3))
        .await
        .unwrap();

    let as_of = s
        .read_all("user", "1", ReadOptions::default().as_of(between))
        .await
        .unwrap();
    assert_eq!(revisions(&as_of), [1, 2, 3]);
    let before_all = between - chrono::Duration::hours(1);
    assert!(
        s.read_all("user", "1", ReadOptions::default().as_of(before_all))
            .await
            .unwrap()
            .is_empty()
    );
    let now = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().as_of(chrono::Utc::now()),
        )
        .await
        .unwrap();
    assert_eq!(now.len(), 5);

    let to2 = s
        .read_all("user", "1", ReadOptions::default().to_revision(2))
        .await
        .unwrap();
    assert_eq!(revisions(&to2), [1, 2]);
    let to4_paged = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().to_revision(4).page_size(2),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&to4_paged), [1, 2, 3, 4]);
    assert!(
        s.read_all("user", "1", ReadOptions::default().to_revision(0))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn history_pages_over_a_stream_longer_than_one_page() {
    let env = Env::start_with(|c| c.page_size(7)).await;
    let s = &env.store;
    s.append("user", "1", batch(1, 50), ExpectedRevision::NoStream)
        .await
        .unwrap();

    let mut history = s.history("user", "1", ReadOptions::default());
    let mut pages = Vec::new();
    while let Some(page) = history.next_page().await.unwrap() {
        assert!(
            !page.is_empty() && page.len() <= 7,
            "page of {}",
            page.len()
        );
        pages.push(page);
    }
    assert_eq!(pages.len(), 8, "50 events in pages of 7");
    assert!(history.next_page().await.unwrap().is_none(), "stays done");
    let all: Vec<RecordedEvent> = pages.iter().flat_map(|p| p.to_events()).collect();
    assert_eq!(revisions(&all), (1..=50).collect::<Vec<_>>());
    for (e, n) in all.iter().zip(1u64..) {
        assert_eq!(e.data_value().unwrap()["n"], n, "in order");
    }

    // The per-read page size overrides the store's.
    let mut history = s.history("user", "1", ReadOptions::default().page_size(20));
    assert_eq!(history.next_page().await.unwrap().unwrap().len(), 20);
}

#[tokio::test]
async fn reading_from_a_revision_or_after_a_position() {
    let env = Env::start_with(|c| c.page_size(7)).await;
    let s = &env.store;
    s.append("user", "1", batch(1, 50), ExpectedRevision::NoStream)
        .await
        .unwrap();

    let from = s
        .read_all("user", "1", ReadOptions::default().from_revision(20))
        .await
        .unwrap();
    assert_eq!(revisions(&from), (20..=50).collect::<Vec<_>>());
    let window = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().from_revision(9).to_revision(23),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&window), (9..=23).collect::<Vec<_>>());
    assert!(
        s.read_all("user", "1", ReadOptions::default().from_revision(51))
            .await
            .unwrap()
            .is_empty()
    );

    // after(position, revision): what a snapshot gives, without reading what it covers.
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    let at30 = &all[29];
    let tail = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().after(at30.position.clone(), 30),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&tail), (31..=50).collect::<Vec<_>>());
    assert_eq!(tail[0].position, all[30].position);

    let bad = s
        .read_all("user", "1", ReadOptions::default().after("+", 1))
        .await
        .unwrap_err();
    assert!(bad.is_invalid_input(), "{bad}");
}

#[tokio::test]
async fn snapshots_round_trip_and_are_kept_per_reducer_digest() {
    let env = Env::start().await;
    let s = &env.store;
    let r = s
        .append("user", "1", batch(1, 4), ExpectedRevision::NoStream)
        .await
        .unwrap();
    assert!(
        s.load_snapshot("user", "1", "sha256:aaa")
            .await
            .unwrap()
            .is_none()
    );

    let snap = Snapshot::new(r#"{"count":4}"#, 4, r.positions[3].clone(), "sha256:aaa");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    let other = Snapshot::new(r#"{"total":10}"#, 2, r.positions[1].clone(), "sha256:bbb");
    s.save_snapshot("user", "1", &other).await.unwrap();

    assert_eq!(
        s.load_snapshot("user", "1", "sha256:aaa").await.unwrap(),
        Some(snap.clone())
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
    assert!(
        s.load_snapshot("user", "2", "sha256:aaa")
            .await
            .unwrap()
            .is_none()
    );

    // A newer snapshot of the same reducer replaces the old one.
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

    let bad_state = Snapshot::new("{nope", 1, "1-0", "sha256:aaa");
    assert!(
        s.save_snapshot("user", "1", &bad_state)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    let no_digest = Snapshot::new("{}", 1, "1-0", "");
    assert!(
        s.save_snapshot("user", "1", &no_digest)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

/// Writes an event the way the seed's `EventStore.append` does: two plain `XADD`s of
/// its seven fields (category first, with `MAXLEN`), no revision, no script.
async fn seed_append(
    con: &mut redis::aio::MultiplexedConnection,
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

#[tokio::test]
async fn the_seed_layout_adopts_streams_the_seed_wrote() {
    let env = Env::start().await;
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

    let s = env
        .store_with(StoreConfig::default().layout(Layout::Seed))
        .await;
    assert_eq!(s.revision("user", "1").await.unwrap(), 3);
    let read = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&read), [1, 2, 3], "revisions by position");
    assert_eq!(read[1].event_type, "EmailChanged");
    assert_eq!(read[1].data_value().unwrap()["email"], "alice@example.com");

    // Appends continue at N+1, in the seed's keys, and the seed's readers see them.
    let r = s
        .append(
            "user",
            "1",
            vec![ev("EmailChanged", 4)],
            ExpectedRevision::Exact(3),
        )
        .await
        .unwrap();
    assert_eq!((r.first_revision, r.last_revision), (4, 4));
    let err = s
        .append("user", "1", vec![ev("X", 5)], ExpectedRevision::Exact(3))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    let read = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&read), [1, 2, 3, 4]);
    assert_eq!(xlen(&env, "events:user:1").await, 4);
    assert_eq!(xlen(&env, "events:user").await, 4);

    // Reading in pages and from a revision work on unnumbered entries too.
    let tail = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().from_revision(2).page_size(1),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&tail), [2, 3, 4]);
    // The category feed: the seed's entries have no revision there (0), ours do.
    let cat = s
        .read_category("user", CategoryReadOptions::default())
        .await
        .unwrap();
    assert_eq!(revisions(&cat), [0, 0, 0, 4]);

    // Snapshots sit beside the seed's fields, which stay untouched.
    let snap = Snapshot::new(r#"{"name":"Alicia"}"#, 4, r.positions[0].clone(), "d1");
    s.save_snapshot("user", "1", &snap).await.unwrap();
    assert_eq!(
        s.load_snapshot("user", "1", "d1").await.unwrap(),
        Some(snap)
    );
    let state: String = raw.hget("snapshot:user:1", "state").await.unwrap();
    assert_eq!(state, "{}");

    // A type with the seed layout's separator in it cannot be used.
    let err = s
        .append("a:b", "1", vec![ev("X", 1)], ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());
    assert_eq!(s.aggregate_ids("user", None).await.unwrap(), ["1"]);
}

#[tokio::test]
async fn bad_input_is_rejected_and_writes_nothing() {
    let env = Env::start().await;
    let s = &env.store;
    let good = || vec![ev("Counted", 1)];
    let cases: Vec<(&str, &str, Vec<NewEvent>)> = vec![
        (
            "user",
            "1",
            vec![NewEvent {
                data: "{\"a\":".to_owned(),
                ..ev("Counted", 1)
            }],
        ),
        (
            "user",
            "1",
            vec![NewEvent {
                data: String::new(),
                ..ev("Counted", 1)
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
    assert!(
        NewEvent::from_json_text("Counted", "nope")
            .unwrap_err()
            .is_invalid_input()
    );
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
    let dbsize: u64 = redis::cmd("DBSIZE")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    assert_eq!(dbsize, 0, "nothing was written");

    // Odd but valid ids are fine and stay apart.
    for id in ["1:cat", "x}:agg:1", "*", "ünïcode id"] {
        s.append("user", id, good(), ExpectedRevision::NoStream)
            .await
            .unwrap();
    }
    assert_eq!(s.revision("user", "1").await.unwrap(), 0);
    let mut found = s.aggregate_ids("user", None).await.unwrap();
    found.sort();
    assert_eq!(found, ["*", "1:cat", "x}:agg:1", "ünïcode id"]);

    // A key of ours holding something else is reported, not a panic or a half-write.
    let keys = s.keys("user", "9").unwrap();
    let _: () = env
        .raw()
        .await
        .set(&keys.category, "not a stream")
        .await
        .unwrap();
    let err = s
        .append("user", "9", good(), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(xlen(&env, &keys.stream).await, 0);
}

#[tokio::test]
async fn a_redis_restart_gives_a_clear_error_then_the_same_store_works_again() {
    let mut env = Env::start_with(|c| c.response_timeout(Duration::from_secs(2))).await;
    let store = env.store.clone();
    store
        .append("user", "1", batch(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap();

    env.redis.stop();
    let started = Instant::now();
    let err = store
        .append("user", "1", batch(3, 1), ExpectedRevision::Exact(2))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        matches!(
            err,
            Error::Unreachable { .. } | Error::Redis(_) | Error::Timeout(_)
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("127.0.0.1"),
        "names the server: {err}"
    );
    let err = store
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fails in bounded time: {:?}",
        started.elapsed()
    );

    env.redis.start_again().unwrap();
    // No persistence: the restarted server is empty; the same store (and its clones)
    // reconnect by themselves and the script is loaded again.
    let r = store
        .append("user", "1", batch(1, 1), ExpectedRevision::NoStream)
        .await
        .unwrap();
    assert_eq!(r.first_revision, 1);
    assert_eq!(
        env.store
            .read_all("user", "1", ReadOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn connecting_to_a_missing_redis_fails_fast_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = EventStore::connect(
        &format!("redis://:hunter2@127.0.0.1:{port}/0"),
        StoreConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.is_unavailable());
    let text = err.to_string();
    assert!(
        !text.contains("hunter2") && text.contains(&port.to_string()),
        "{text}"
    );

    let err = EventStore::connect("redis://127.0.0.1:1/", StoreConfig::default().prefix("a{b"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

#[tokio::test]
async fn appends_still_work_after_script_flush() {
    let env = Env::start().await;
    let s = &env.store;
    s.append("user", "1", batch(1, 1), ExpectedRevision::NoStream)
        .await
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let r = s
        .append("user", "1", batch(2, 1), ExpectedRevision::Exact(1))
        .await
        .unwrap();
    assert_eq!(r.first_revision, 2);
}

#[tokio::test]
async fn partitions_split_the_category_and_ids_can_be_listed() {
    let env = Env::start_with(|c| c.partitions_for("order", 4).prefix("shop")).await;
    let s = &env.store;
    for i in 0..20 {
        s.append(
            "order",
            &format!("o{i}"),
            batch(1, 2),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    }
    s.append("user", "u1", batch(1, 1), ExpectedRevision::NoStream)
        .await
        .unwrap();

    let mut per_partition = 0;
    let mut used = 0;
    for p in 0..4 {
        let events = s
            .read_category("order", CategoryReadOptions::default().partition(p))
            .await
            .unwrap();
        for e in &events {
            assert_eq!(s.keys("order", &e.aggregate_id).unwrap().partition, p);
            assert!(
                s.keys("order", &e.aggregate_id)
                    .unwrap()
                    .stream
                    .starts_with(&format!("shop:{{order:{p}}}:"))
            );
        }
        used += usize::from(!events.is_empty());
        per_partition += events.len();
    }
    assert_eq!(per_partition, 40);
    assert!(used >= 2, "20 ids spread over partitions");
    assert!(
        s.read_category("order", CategoryReadOptions::default().partition(4))
            .await
            .unwrap_err()
            .is_invalid_input()
    );

    let mut listed = s.aggregate_ids("order", None).await.unwrap();
    listed.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(s.aggregate_ids("order", Some(5)).await.unwrap().len(), 5);
    assert_eq!(s.aggregate_ids("user", None).await.unwrap(), ["u1"]);

    // Reading the category feed in steps, after the last position seen.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut opts = CategoryReadOptions::default().partition(0).count(3);
        if let Some(p) = &after {
            opts = opts.after(p.clone());
        }
        let page = s.read_category("order", opts).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.position.clone());
        seen.extend(page);
    }
    let whole = s
        .read_category("order", CategoryReadOptions::default().partition(0))
        .await
        .unwrap();
    assert_eq!(ids(&seen), ids(&whole));
}

/// Reads go over the store's own lean connections (not the `redis` crate's): they must
/// log in and select the database the URL names, give up after the response timeout,
/// report a key of the wrong type, and say so when a login stops working.
#[tokio::test]
async fn reads_log_in_select_the_database_and_time_out() {
    let env = Env::start().await;
    let mut raw = env.raw().await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}/3", env.redis.port());
    let timeout = Duration::from_millis(300);
    let store = EventStore::connect(&url, StoreConfig::default().response_timeout(timeout))
        .await
        .unwrap();
    store
        .append("user", "1", batch(1, 3), ExpectedRevision::NoStream)
        .await
        .unwrap();
    let got = store
        .read_all("user", "1", ReadOptions::new().page_size(2))
        .await
        .unwrap();
    assert_eq!(revisions(&got), [1, 2, 3]);
    let keys = store.keys("user", "1").unwrap();
    let in_db0: bool = raw.exists(&keys.stream).await.unwrap();
    assert!(!in_db0, "the events went to database 3, not 0");

    // A key of ours holding something else.
    let other = store.keys("user", "9").unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut db3 = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = db3.set(&other.stream, "not a stream").await.unwrap();
    let err = store
        .read_all("user", "9", ReadOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    // Redis stops answering (every client paused): the read gives up on time, and the
    // next one after the pause works on a new connection.
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "1000", "ALL"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    let started = Instant::now();
    let err = store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(t) if t == timeout), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let got = streamfold_tests::eventually(20, Duration::from_millis(100), || {
        store.read_all("user", "1", ReadOptions::new())
    })
    .await
    .unwrap();
    assert_eq!(revisions(&got), [1, 2, 3]);

    // The password changes and the connections are dropped: reads say why they fail.
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "resetpass", ">other"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "app"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    let err = store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGPASS"), "{err}");
}

/// Keys of ours that hold something else are reported with the key's name, and an
/// append that meets one writes nothing, even when it fails after its first
/// aggregate entry (the category stream is written second).
#[tokio::test]
async fn keys_of_the_wrong_type_never_leave_half_a_batch() {
    let env = Env::start().await;
    let s = &env.store;
    let mut raw = env.raw().await;
    let corrupt_key = |err: Error| match err {
        Error::Corrupt { key, .. } => key,
        other => panic!("not reported as corrupt data: {other}"),
    };

    s.append("acct", "1", batch(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap();
    let one = s.keys("acct", "1").unwrap();
    let before = raw_stream(&env, &one.stream).await;

    // The category stream is replaced: the append fails after its first aggregate
    // entry, which is taken back.
    let _: () = raw.del(&one.category).await.unwrap();
    let _: () = raw.set(&one.category, "not a stream").await.unwrap();
    for expected in [ExpectedRevision::Exact(2), ExpectedRevision::Any] {
        let err = s
            .append("acct", "1", batch(3, 3), expected)
            .await
            .unwrap_err();
        assert_eq!(corrupt_key(err), one.category);
        assert_eq!(raw_stream(&env, &one.stream).await, before);
        assert_eq!(s.revision("acct", "1").await.unwrap(), 2);
    }
    // A new aggregate: its stream is not left behind, empty.
    let err = s
        .append("acct", "2", batch(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap_err();
    assert_eq!(corrupt_key(err), one.category);
    let two = s.keys("acct", "2").unwrap();
    let exists: bool = raw.exists(&two.stream).await.unwrap();
    assert!(!exists, "an empty stream was left behind");
    assert_eq!(s.aggregate_ids("acct", None).await.unwrap(), ["1"]);
    let _: () = raw.del(&one.category).await.unwrap();

    // The revision counter and the aggregate stream.
    let three = s.keys("acct", "3").unwrap();
    let _: () = raw.set(&three.revision, "7").await.unwrap();
    let err = s
        .append("acct", "3", batch(1, 1), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert_eq!(corrupt_key(err), three.revision);
    let four = s.keys("acct", "4").unwrap();
    let _: () = raw.rpush(&four.stream, "x").await.unwrap();
    let err = s
        .append("acct", "4", batch(1, 1), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert_eq!(corrupt_key(err), four.stream);
    let cat_len: u64 = raw.xlen(&one.category).await.unwrap();
    assert_eq!(cat_len, 0, "nothing reached the category stream");
}

/// Replies much larger than the read connection's buffer (a page of three 2 MB
/// payloads, then a small one on the same pooled connection) come back byte for byte.
#[tokio::test]
async fn large_payloads_read_back_exactly() {
    let env = Env::start().await;
    let s = &env.store;
    let big = |n: u64| {
        let text: String = (0..2 << 20)
            .map(|i| char::from(b'a' + ((i + n) % 26) as u8))
            .collect();
        NewEvent::new("Big", &json!({ "n": n, "text": text }))
    };
    let events: Vec<NewEvent> = (1..=3).map(big).collect();
    let sent: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    s.append("blob", "1", events, ExpectedRevision::NoStream)
        .await
        .unwrap();
    s.append("blob", "2", batch(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap();
    for _ in 0..2 {
        let got = s
            .read_all("blob", "1", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), sent);
        let small = s
            .read_all("blob", "2", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(revisions(&small), [1, 2]);
    }
}
