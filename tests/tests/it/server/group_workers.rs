//! Durable subscriptions under load, over real HTTP: several workers sharing a
//! partitioned category while a writer appends, a worker that dies holding events,
//! a Redis restart with the group in use, and a category trim the group holds back.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::json;
use streamfold_test_support::{Env, wait_until};

use super::groups::{fetch, metric, put, settle, status, step, tokens};
use super::{Harness, PATIENCE, json_body, runtime_config};

/// A server over a store whose `order` type has `partitions` partitions.
async fn harness(partitions: u32, redis_args: &[&str], max_len: u64) -> Harness {
    let env = Env::start_with_args(redis_args, |c| {
        c.partitions_for("order", partitions)
            .category_max_len(max_len)
    })
    .await;
    Harness::start_on(env, runtime_config(), |c| c).await
}

/// What the workers of one test saw, shared between them (they run as futures of one
/// task, so a `RefCell` is enough).
#[derive(Default)]
struct Seen {
    /// Aggregates with a delivery a worker holds and has not acknowledged yet.
    in_flight: HashSet<String>,
    /// Per aggregate, the revisions handled, in order.
    handled: BTreeMap<String, Vec<u64>>,
    /// Per worker, how many events it handled.
    by_worker: BTreeMap<String, usize>,
    /// Every delivery's (aggregate, revision, delivery count).
    deliveries: Vec<(String, u64, u64)>,
}

impl Seen {
    fn total(&self) -> usize {
        self.handled.values().map(Vec::len).sum()
    }
}

/// One worker's loop: fetch, handle (check the order rules), ack, until `want`
/// events are handled in all or the patience runs out.
async fn worker(h: &Harness, group: &str, name: &str, seen: &RefCell<Seen>, want: usize) {
    let deadline = Instant::now() + PATIENCE;
    while seen.borrow().total() < want {
        assert!(
            Instant::now() < deadline,
            "{name}: handled {} of {want}",
            seen.borrow().total()
        );
        let body = json!({"consumer": name, "max": 20, "wait_ms": 300});
        let got = fetch(h, "order", group, body).await;
        {
            let mut s = seen.borrow_mut();
            for d in &got {
                let e = &d["event"];
                let id = e["aggregate_id"].as_str().unwrap().to_owned();
                let revision = e["revision"].as_u64().unwrap();
                let count = d["delivery_count"].as_u64().unwrap();
                assert!(
                    s.in_flight.insert(id.clone()),
                    "{name} got {id}@{revision} while an earlier event of {id} was in flight"
                );
                let handled = s.handled.entry(id.clone()).or_default();
                assert_eq!(
                    revision,
                    handled.last().copied().unwrap_or(0) + 1,
                    "{name} got {id} out of order after {handled:?}"
                );
                handled.push(revision);
                *s.by_worker.entry(name.to_owned()).or_default() += 1;
                s.deliveries.push((id, revision, count));
            }
        }
        // Handling takes a moment: let the other workers run.
        tokio::task::yield_now().await;
        {
            let mut s = seen.borrow_mut();
            for d in &got {
                s.in_flight
                    .remove(d["event"]["aggregate_id"].as_str().unwrap());
            }
        }
        if !got.is_empty() {
            let done = settle(
                h,
                "order",
                group,
                "ack",
                json!({"deliveries": tokens(&got)}),
            )
            .await;
            assert_eq!(done["done"], got.len(), "{done}");
        }
    }
}

#[tokio::test]
async fn three_workers_share_a_partitioned_category_in_order_per_aggregate() {
    const AGGREGATES: u64 = 50;
    const EACH: u64 = 40;
    let h = harness(4, &[], 0).await;
    json_body(
        put(&h, "order", "workers", &json!({"start": "beginning"})).await,
        StatusCode::CREATED,
    )
    .await;
    let want = (AGGREGATES * EACH) as usize;
    let seen = RefCell::new(Seen::default());
    // The writer appends while the workers work: one event at a time, round robin.
    let writer = async {
        for n in 1..=EACH {
            for a in 0..AGGREGATES {
                h.append("order", &format!("o{a}"), vec![step(n)]).await;
            }
        }
    };
    tokio::join!(
        writer,
        worker(&h, "workers", "w1", &seen, want),
        worker(&h, "workers", "w2", &seen, want),
        worker(&h, "workers", "w3", &seen, want),
    );
    let seen = seen.into_inner();
    assert_eq!(seen.handled.len(), AGGREGATES as usize);
    let all: Vec<u64> = (1..=EACH).collect();
    for (id, revisions) in &seen.handled {
        assert_eq!(revisions, &all, "{id}");
    }
    // Exactly once: nothing was redelivered.
    assert_eq!(seen.deliveries.len(), want);
    assert!(seen.deliveries.iter().all(|(_, _, count)| *count == 1));
    assert!(
        seen.by_worker.len() >= 2,
        "one worker did everything: {:?}",
        seen.by_worker
    );
    let s = status(&h, "order", "workers").await;
    assert_eq!(
        (s["pending"].clone(), s["undelivered"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );
    assert_eq!(s["partitions"].as_array().unwrap().len(), 4, "{s}");
}

#[tokio::test]
async fn a_killed_workers_events_are_redelivered_and_only_those_twice() {
    let h = harness(4, &[], 0).await;
    for n in 1..=5 {
        for a in 0..20 {
            h.append("order", &format!("o{a}"), vec![step(n)]).await;
        }
    }
    json_body(
        put(&h, "order", "g", &json!({"ack_timeout_ms": 500})).await,
        StatusCode::CREATED,
    )
    .await;
    // The doomed worker takes a batch, then dies (its future is dropped: the server
    // only ever sees it stop asking).
    let held = fetch(&h, "order", "g", json!({"consumer": "doomed", "max": 15})).await;
    assert!(!held.is_empty());
    let held: HashSet<(String, u64)> = held
        .iter()
        .map(|d| {
            (
                d["event"]["aggregate_id"].as_str().unwrap().to_owned(),
                d["event"]["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    let seen = RefCell::new(Seen::default());
    tokio::join!(
        worker(&h, "g", "w1", &seen, 100),
        worker(&h, "g", "w2", &seen, 100),
    );
    let seen = seen.into_inner();
    let all: Vec<u64> = (1..=5).collect();
    for (id, revisions) in &seen.handled {
        assert_eq!(revisions, &all, "{id}");
    }
    // Nothing lost, and the doomed worker's events came again with a raised count.
    assert_eq!(seen.total(), 100);
    let again: HashSet<(String, u64)> = seen
        .deliveries
        .iter()
        .filter(|(_, _, count)| *count > 1)
        .map(|(id, r, _)| (id.clone(), *r))
        .collect();
    assert_eq!(again, held);
    assert!(
        seen.deliveries
            .iter()
            .all(|(id, r, count)| *count == 1 || held.contains(&(id.clone(), *r)))
    );
}

#[tokio::test]
async fn a_group_in_use_survives_a_redis_restart_with_aof() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut h = harness(2, &aof, 0).await;
    for n in 1..=3 {
        for a in 0..10 {
            h.append("order", &format!("o{a}"), vec![step(n)]).await;
        }
    }
    let settings = json!({"ack_timeout_ms": 1000, "max_deliveries": 5});
    json_body(put(&h, "order", "g", &settings).await, StatusCode::CREATED).await;
    // In use: a batch held unacknowledged, one event parked.
    let held = fetch(&h, "order", "g", json!({"consumer": "w1", "max": 20})).await;
    assert!(held.len() >= 2, "{held:?}");
    let t = tokens(&held);
    let parked = json!({"deliveries": [t[0]], "action": "park", "reason": "before the restart"});
    settle(&h, "order", "g", "nack", parked).await;
    let before = status(&h, "order", "g").await;
    assert_eq!(before["pending"], held.len() - 1, "{before}");
    assert_eq!(before["parked"], 1, "{before}");

    // kill -9, then the same server again: it loads the append-only file.
    h.env
        .redis_mut()
        .start_again()
        .expect("redis-server starts again");
    let after = wait_until("the group's status after the restart", PATIENCE, || async {
        let r = h.get("/v1/groups/order/g").await;
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    let after = json_body(after, StatusCode::OK).await;
    for field in [
        "settings",
        "pending",
        "parked",
        "undelivered",
        "created_at_ms",
    ] {
        assert_eq!(after[field], before[field], "{field}: {after} vs {before}");
    }
    let consumers: Vec<&str> = after["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(consumers, ["w1"], "{after}");

    // The workers go on: the held batch comes back after its ack timeout, then the
    // rest, and the parked event is replayed. (Parking lets the parked event's
    // aggregate go on without it: count it as handled.)
    let seen = RefCell::new(Seen::default());
    let e = &held[0]["event"];
    seen.borrow_mut().handled.insert(
        e["aggregate_id"].as_str().unwrap().to_owned(),
        vec![e["revision"].as_u64().unwrap()],
    );
    worker(&h, "g", "w2", &seen, 30).await;
    let replayed = json_body(
        h.post_json("/v1/groups/order/g/parked/replay", &json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let last = fetch(&h, "order", "g", json!({"consumer": "w2", "wait_ms": 5000})).await;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["delivery"], t[0]);
    let seen = seen.into_inner();
    let redelivered = seen.deliveries.iter().filter(|d| d.2 > 1).count();
    assert_eq!(redelivered, held.len() - 1);
}

#[tokio::test]
async fn a_category_trim_that_would_drop_unacknowledged_events_is_held_back_and_reported() {
    const MAX_LEN: u64 = 50;
    let h = harness(1, &[], MAX_LEN).await;
    json_body(
        put(&h, "order", "slow", &json!({"start": "beginning"})).await,
        StatusCode::CREATED,
    )
    .await;
    // 600 events, twelve times the category's length, none acknowledged yet.
    let store = &h.env.store;
    for a in 0..60 {
        let events = streamfold_test_support::counted_events(1, 10);
        store
            .append(
                "order",
                &format!("o{a}"),
                events,
                streamfold::ExpectedRevision::NoStream,
            )
            .await
            .unwrap();
    }
    let s = status(&h, "order", "slow").await;
    assert_eq!(s["undelivered"], 600, "{s}");
    let held = s["trim_held_back"].as_u64().unwrap();
    assert!(held >= 600 - MAX_LEN - 256, "{s}");
    let labels = r#"{aggregate_type="order",group="slow"}"#;
    let key = format!("streamfold_group_trim_held_back{labels}");
    wait_until("the held-back trim in /metrics", PATIENCE, || async {
        let (_, text) = super::status_and_text(h.get("/metrics").await).await;
        (metric(&text, &key).is_some_and(|v| v > 0.0)).then_some(())
    })
    .await;
    // Every event is still there to be handled, in order.
    let seen = RefCell::new(Seen::default());
    worker(&h, "slow", "w", &seen, 600).await;
    let seen = seen.into_inner();
    assert_eq!(seen.handled.len(), 60);
    assert!(seen.handled.values().all(|r| r.len() == 10));
    let s = status(&h, "order", "slow").await;
    assert_eq!(s["pending"], 0, "{s}");
}
