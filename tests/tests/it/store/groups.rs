//! Durable subscriptions: consumer groups over the category partitions (create,
//! fetch, ack, nack, redelivery, parking, replay, status, delete).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamfold_store::{
    Delivery, EventStore, ExpectedRevision, GroupSettings, GroupStart, NackAction, ParkReason,
};
use streamfold_test_support::{Env, counted_events};

const DEADLINE: Duration = Duration::from_secs(60);

/// A store with `order` split into `partitions` partitions.
async fn env(partitions: u32) -> Env {
    Env::start_with(|c| c.partitions_for("order", partitions).prefix("g")).await
}

async fn append(s: &EventStore, id: &str, n: u64) {
    s.append("order", id, counted_events(1, n), ExpectedRevision::Any)
        .await
        .unwrap();
}

fn tokens(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.delivery.clone()).collect()
}

/// Fetches until `want` deliveries arrived in total (acking none).
async fn fetch_n(s: &EventStore, group: &str, consumer: &str, want: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < want {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for {want} deliveries"
        );
        let more = s.fetch("order", group, consumer, 100).await.unwrap();
        if more.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        got.extend(more);
    }
    got
}

#[tokio::test]
async fn creating_a_group_is_idempotent_and_other_settings_conflict() {
    let env = env(2).await;
    let s = &env.store;
    let settings = GroupSettings::new().max_deliveries(3);
    let first = s
        .create_group("order", "mailer", settings.clone())
        .await
        .unwrap();
    assert!(first.created);
    let again = s
        .create_group("order", "mailer", settings.clone())
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.info, first.info);
    let other = s
        .create_group("order", "mailer", settings.clone().max_deliveries(4))
        .await
        .unwrap_err();
    assert!(other.is_conflict(), "{other}");
    let other = s
        .create_group("order", "mailer", settings.start(GroupStart::End))
        .await
        .unwrap_err();
    assert!(other.is_conflict(), "{other}");

    s.create_group("user", "audit", GroupSettings::new())
        .await
        .unwrap();
    let all: Vec<(String, String)> = s
        .list_groups(None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.aggregate_type, g.group))
        .collect();
    assert_eq!(
        all,
        [
            ("order".to_owned(), "mailer".to_owned()),
            ("user".to_owned(), "audit".to_owned())
        ]
    );
    let orders = s.list_groups(Some("order")).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].settings.max_deliveries, 3);
    assert_eq!(orders[0].settings.ack_timeout_ms, 30_000);
}

#[tokio::test]
async fn unknown_groups_and_bad_input_are_refused() {
    let env = env(2).await;
    let s = &env.store;
    append(s, "o1", 1).await;
    let nf = |e: streamfold_store::Error| assert!(e.is_not_found(), "{e}");
    nf(s.fetch("order", "nope", "c", 10).await.unwrap_err());
    nf(s.ack("order", "nope", &["0/1-0"]).await.unwrap_err());
    nf(s.nack("order", "nope", &["0/1-0"], NackAction::Skip, None)
        .await
        .unwrap_err());
    nf(s.group_status("order", "nope").await.unwrap_err());
    nf(s.group("order", "nope").await.unwrap_err());
    nf(s.delete_group("order", "nope").await.unwrap_err());
    nf(s.parked("order", "nope", None, 10).await.unwrap_err());
    nf(s.replay_parked("order", "nope").await.unwrap_err());

    let long = "g".repeat(129);
    for bad in ["", "a b", "a{b", "x}", "tab\t", long.as_str()] {
        let e = s
            .create_group("order", bad, GroupSettings::new())
            .await
            .unwrap_err();
        assert!(e.is_invalid_input(), "{bad:?}: {e}");
    }
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    for bad in ["", "a b", "{c}", long.as_str()] {
        let e = s.fetch("order", "g", bad, 10).await.unwrap_err();
        assert!(e.is_invalid_input(), "consumer {bad:?}: {e}");
    }
    for max in [0, 1001] {
        assert!(
            s.fetch("order", "g", "c", max)
                .await
                .unwrap_err()
                .is_invalid_input()
        );
    }
    let settings = [
        GroupSettings::new().max_deliveries(0),
        GroupSettings::new().ack_timeout(Duration::ZERO),
        GroupSettings::new().start(GroupStart::After("1-0".into())), // 1 part, 2 partitions
    ];
    for bad in settings {
        let e = s.create_group("order", "h", bad).await.unwrap_err();
        assert!(e.is_invalid_input(), "{e}");
    }
    let got = s.fetch("order", "g", "c", 10).await.unwrap();
    assert_eq!(got.len(), 1);
    let e = s
        .nack(
            "order",
            "g",
            &tokens(&got),
            NackAction::Retry(Duration::from_secs(31)),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.is_invalid_input(), "a delay over the ack timeout: {e}");
    // The seed layout has no hash tags for a group's keys (nor runs on a cluster).
    if env.backend() == streamfold_test_support::Backend::Single {
        let seed = env
            .store_with(
                streamfold_store::StoreConfig::default().layout(streamfold_store::Layout::Seed),
            )
            .await;
        assert!(
            seed.create_group("order", "g", GroupSettings::new())
                .await
                .unwrap_err()
                .is_invalid_input()
        );
    }
}

#[tokio::test]
async fn a_group_starts_at_the_beginning_the_end_or_a_position() {
    let env = env(1).await;
    let s = &env.store;
    append(s, "o1", 2).await;
    append(s, "o2", 1).await;
    let (_, position) = s.read_category_merged("order", None, 1).await.unwrap();
    s.create_group("order", "all", GroupSettings::new())
        .await
        .unwrap();
    s.create_group("order", "new", GroupSettings::new().start(GroupStart::End))
        .await
        .unwrap();
    s.create_group(
        "order",
        "after",
        GroupSettings::new().start(GroupStart::After(position)),
    )
    .await
    .unwrap();
    append(s, "o3", 1).await;
    let ids = |ds: Vec<Delivery>| -> Vec<(String, u64)> {
        ds.into_iter()
            .map(|d| (d.event.aggregate_id, d.event.revision))
            .collect()
    };
    // A batch stops before an aggregate's second event.
    assert_eq!(
        ids(s.fetch("order", "all", "c", 10).await.unwrap()),
        [("o1".to_owned(), 1)]
    );
    assert_eq!(
        ids(s.fetch("order", "new", "c", 10).await.unwrap()),
        [("o3".to_owned(), 1)]
    );
    assert_eq!(
        ids(s.fetch("order", "after", "c", 10).await.unwrap()),
        [
            ("o1".to_owned(), 2),
            ("o2".to_owned(), 1),
            ("o3".to_owned(), 1)
        ]
    );
}

/// 3 consumers, 4 partitions, 30 aggregates, events appended while they work: each
/// event handled exactly once, each aggregate's in revision order, never two of one
/// aggregate in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn competing_consumers_share_the_events_in_order_per_aggregate() {
    compete(false).await;
}

/// The same with each consumer on a store of its own, as in processes of their own:
/// their fetches race for the same free partition (the one that reads it second has
/// its batch refused, and leaves the partition to the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_of_separate_stores_share_the_events_in_order_per_aggregate() {
    compete(true).await;
}

async fn compete(separate_stores: bool) {
    let env = env(4).await;
    let s = env.store.clone();
    s.create_group(
        "order",
        "workers",
        GroupSettings::new().ack_timeout(DEADLINE * 2),
    )
    .await
    .unwrap();
    const AGGREGATES: u64 = 30;
    const PER: u64 = 12;
    let total = (AGGREGATES * PER) as usize;

    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for round in 0..PER / 2 {
                for a in 0..AGGREGATES {
                    s.append(
                        "order",
                        &format!("o{a}"),
                        counted_events(round * 2 + 1, 2),
                        ExpectedRevision::Exact(round * 2),
                    )
                    .await
                    .unwrap();
                }
            }
        })
    };

    let in_flight = Arc::new(Mutex::new(HashSet::<String>::new()));
    let handled = Arc::new(Mutex::new(HashMap::<String, Vec<u64>>::new()));
    let per_consumer = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let count = |h: &HashMap<String, Vec<u64>>| h.values().map(Vec::len).sum::<usize>();
    let mut workers = Vec::new();
    for c in 0..3 {
        let s = if separate_stores {
            env.store_with(s.config().clone()).await
        } else {
            s.clone()
        };
        let (s, in_flight, handled, per_consumer) =
            (s, in_flight.clone(), handled.clone(), per_consumer.clone());
        workers.push(tokio::spawn(async move {
            let name = format!("c{c}");
            let started = std::time::Instant::now();
            while count(&handled.lock().unwrap()) < total {
                assert!(started.elapsed() < DEADLINE, "the consumers did not finish");
                let got = s.fetch("order", "workers", &name, 7).await.unwrap();
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for d in &got {
                    assert_eq!(d.delivery_count, 1, "no redelivery without a timeout");
                    assert!(
                        in_flight
                            .lock()
                            .unwrap()
                            .insert(d.event.aggregate_id.clone()),
                        "two events of {} in flight at once",
                        d.event.aggregate_id
                    );
                }
                tokio::task::yield_now().await;
                for d in &got {
                    handled
                        .lock()
                        .unwrap()
                        .entry(d.event.aggregate_id.clone())
                        .or_default()
                        .push(d.event.revision);
                    // Out of flight before the ack lets the next one go.
                    in_flight.lock().unwrap().remove(&d.event.aggregate_id);
                }
                *per_consumer
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default() += got.len();
                let acked = s.ack("order", "workers", &tokens(&got)).await.unwrap();
                assert_eq!(acked.done, got.len());
                assert!(acked.unknown.is_empty());
            }
        }));
    }
    writer.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), AGGREGATES as usize);
    for (id, revs) in handled.iter() {
        assert_eq!(*revs, (1..=PER).collect::<Vec<_>>(), "{id}");
    }
    let per_consumer = per_consumer.lock().unwrap().clone();
    assert!(
        per_consumer.len() >= 2,
        "the consumers shared the work: {per_consumer:?}"
    );
    let status = s.group_status("order", "workers").await.unwrap();
    assert_eq!(status.undelivered, Some(0));
    assert_eq!(status.pending, 0);
    assert!(
        s.fetch("order", "workers", "c0", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unacknowledged_events_are_redelivered_after_the_ack_timeout() {
    let env = env(2).await;
    let s = &env.store;
    for a in 0..4 {
        append(s, &format!("o{a}"), 1).await;
    }
    s.create_group(
        "order",
        "g",
        GroupSettings::new().ack_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let held = s.fetch("order", "g", "dies", 100).await.unwrap();
    assert_eq!(held.len(), 4);
    let held: HashSet<String> = tokens(&held).into_iter().collect();
    // Whatever another consumer gets of them is a redelivery, after the timeout.
    let again = fetch_n(s, "g", "lives", 4).await;
    assert_eq!(tokens(&again).into_iter().collect::<HashSet<_>>(), held);
    for d in &again {
        assert_eq!(d.delivery_count, 2, "{}", d.delivery);
    }
    let acked = s.ack("order", "g", &tokens(&again)).await.unwrap();
    assert_eq!(acked.done, 4);
    // The late ack of the dead consumer finds nothing: harmless.
    let late = s
        .ack("order", "g", &held.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(late.done, 0);
    assert_eq!(late.unknown.len(), 4);
}

#[tokio::test]
async fn a_poison_event_is_parked_after_max_deliveries_and_replay_brings_it_back() {
    let env = env(1).await;
    let s = &env.store;
    append(s, "bad", 1).await;
    append(s, "good", 3).await;
    s.create_group("order", "g", GroupSettings::new().max_deliveries(3))
        .await
        .unwrap();
    let mut bad_counts = Vec::new();
    let mut good = Vec::new();
    let started = Instant::now();
    while good.len() < 3 {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out: {bad_counts:?} {good:?}"
        );
        for d in s.fetch("order", "g", "w", 10).await.unwrap() {
            if d.event.aggregate_id == "bad" {
                bad_counts.push(d.delivery_count);
                let reason = format!("boom {}", d.delivery_count);
                let retry = NackAction::Retry(Duration::ZERO);
                let r = s
                    .nack("order", "g", &[&d.delivery], retry, Some(&reason))
                    .await
                    .unwrap();
                assert_eq!(r.done, 1);
            } else {
                good.push(d.event.revision);
                s.ack("order", "g", &[&d.delivery]).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(bad_counts, [1, 2, 3]);
    assert_eq!(good, [1, 2, 3]);

    let parked = s.parked("order", "g", None, 10).await.unwrap();
    assert_eq!(parked.events.len(), 1);
    assert!(parked.next.is_none());
    let p = &parked.events[0];
    assert_eq!(p.reason, ParkReason::MaxDeliveries);
    assert_eq!(p.last_error.as_deref(), Some("boom 3"));
    assert_eq!(p.delivery_count, 3);
    let event = p.event.as_ref().expect("the event is kept");
    assert_eq!((event.aggregate_id.as_str(), event.revision), ("bad", 1));
    assert_eq!(event.position, p.position);
    assert_eq!(s.group_status("order", "g").await.unwrap().parked, 1);

    let replayed = s.replay_parked("order", "g").await.unwrap();
    assert_eq!((replayed.replayed, replayed.kept), (1, 0));
    assert!(
        s.parked("order", "g", None, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(s.group_status("order", "g").await.unwrap().replaying, 1);
    let back = s.fetch("order", "g", "w", 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].event.aggregate_id, "bad");
    assert_eq!(back[0].event.position, p.position);
    assert_eq!(back[0].delivery_count, 1);
    assert_eq!(s.ack("order", "g", &tokens(&back)).await.unwrap().done, 1);
    let status = s.group_status("order", "g").await.unwrap();
    assert_eq!((status.pending, status.parked, status.replaying), (0, 0, 0));
}

#[tokio::test]
async fn acks_and_nacks_report_unknown_deliveries_and_refuse_bad_tokens() {
    let env = env(2).await;
    let s = &env.store;
    for a in 0..6 {
        append(s, &format!("o{a}"), 1).await;
    }
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    let got = s.fetch("order", "g", "w", 100).await.unwrap();
    assert_eq!(got.len(), 6);
    let t = tokens(&got);
    for bad in ["", "x", "0/1", "9/1-0", "0/1-0/1", "0:1-0"] {
        let e = s
            .ack("order", "g", &[t[0].as_str(), bad])
            .await
            .unwrap_err();
        assert!(e.is_invalid_input(), "{bad:?}: {e}");
    }
    // Nothing was acknowledged by the refused calls.
    assert_eq!(s.group_status("order", "g").await.unwrap().pending, 6);

    let never = format!("{}/1-0", got[0].partition);
    let r = s.ack("order", "g", &[t[0].as_str(), &never]).await.unwrap();
    assert_eq!((r.done, r.unknown.clone()), (1, vec![never.clone()]));
    let r = s.ack("order", "g", &[&t[0]]).await.unwrap();
    assert_eq!((r.done, r.unknown.clone()), (0, vec![t[0].clone()]));

    let r = s
        .nack(
            "order",
            "g",
            &[&t[1], &t[0]],
            NackAction::Park,
            Some("no such user"),
        )
        .await
        .unwrap();
    assert_eq!((r.done, r.unknown.clone()), (1, vec![t[0].clone()]));
    let r = s
        .nack("order", "g", &[&t[2]], NackAction::Skip, None)
        .await
        .unwrap();
    assert_eq!(r.done, 1);
    let parked = s.parked("order", "g", None, 10).await.unwrap();
    assert_eq!(parked.events.len(), 1);
    assert_eq!(parked.events[0].reason, ParkReason::Nacked);
    assert_eq!(parked.events[0].last_error.as_deref(), Some("no such user"));
    assert_eq!(parked.events[0].position, got[1].event.position);
    let status = s.group_status("order", "g").await.unwrap();
    assert_eq!((status.pending, status.parked), (3, 1));
}

#[tokio::test]
async fn the_status_follows_lag_pending_parked_and_consumers() {
    let env = env(1).await;
    let s = &env.store;
    for a in 0..5 {
        append(s, &format!("o{a}"), 1).await;
    }
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    let st = s.group_status("order", "g").await.unwrap();
    assert_eq!(st.undelivered, Some(5));
    assert_eq!((st.pending, st.parked, st.oldest_pending_ms), (0, 0, None));
    assert!(st.consumers.is_empty());

    let got = s.fetch("order", "g", "w1", 2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        s.fetch("order", "g", "w2", 2).await.unwrap().is_empty(),
        "held by w1"
    );
    let st = s.group_status("order", "g").await.unwrap();
    assert_eq!((st.undelivered, st.pending), (Some(3), 2));
    assert!(st.oldest_pending_ms.is_some());
    let names: Vec<(&str, u64)> = st
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending))
        .collect();
    assert!(
        names.contains(&("w1", 2)) && names.contains(&("w2", 0)),
        "{names:?}"
    );
    assert!(st.consumers.iter().all(|c| c.last_poll_ms > 0));
    assert_eq!(st.partitions.len(), 1);
    assert_eq!(st.partitions[0].last_delivered, got[1].event.position);

    s.nack("order", "g", &[&got[0].delivery], NackAction::Park, None)
        .await
        .unwrap();
    s.ack("order", "g", &[&got[1].delivery]).await.unwrap();
    let st = s.group_status("order", "g").await.unwrap();
    assert_eq!(
        (st.undelivered, st.pending, st.parked, st.oldest_pending_ms),
        (Some(3), 0, 1, None)
    );
    assert_eq!(s.fetch("order", "g", "w2", 10).await.unwrap().len(), 3);
    assert_eq!(
        s.group_status("order", "g").await.unwrap().undelivered,
        Some(0)
    );
}

#[tokio::test]
async fn deleting_a_group_frees_every_key_it_made() {
    let env = env(2).await;
    let s = &env.store;
    for a in 0..6 {
        append(s, &format!("o{a}"), 2).await;
    }
    let before = s.keys_with_prefix("g:").await.unwrap();
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    s.create_group("empty", "g", GroupSettings::new())
        .await
        .unwrap();
    // Use everything: pending, a retry's last error, parked, replaying.
    let got = fetch_n(s, "g", "w", 2).await;
    s.nack(
        "order",
        "g",
        &[&got[0].delivery],
        NackAction::Park,
        Some("x"),
    )
    .await
    .unwrap();
    s.nack(
        "order",
        "g",
        &[&got[1].delivery],
        NackAction::Retry(Duration::ZERO),
        Some("y"),
    )
    .await
    .unwrap();
    s.replay_parked("order", "g").await.unwrap();
    s.fetch("empty", "g", "w", 10).await.unwrap();
    let during = s.keys_with_prefix("g:").await.unwrap();
    assert!(during.len() > before.len(), "{during:?}");

    s.delete_group("order", "g").await.unwrap();
    s.delete_group("empty", "g").await.unwrap();
    let after = s.keys_with_prefix("g:").await.unwrap();
    let partitions_record = "g:partitions".to_owned(); // the type "empty" was recorded
    let after: Vec<String> = after
        .into_iter()
        .filter(|k| *k != partitions_record)
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|k| *k != partitions_record)
        .collect();
    assert_eq!(after, before);
    let mut raw = env.raw().await;
    for p in 0..2 {
        let key = s.category_key("order", p).unwrap();
        let groups: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(groups.is_empty(), "{key}: {groups:?}");
    }
    assert!(
        s.fetch("order", "g", "w", 10)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(s.list_groups(None).await.unwrap().is_empty());
    // And it can be made again.
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retry_with_a_delay_keeps_the_partition_waiting_for_it() {
    let env = env(1).await;
    let s = &env.store;
    append(s, "o2", 1).await;
    append(s, "o1", 2).await;
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    let first = s.fetch("order", "g", "w1", 10).await.unwrap();
    assert_eq!(first.len(), 2, "o2's event and o1's first");
    let first: Vec<Delivery> = first.into_iter().rev().collect(); // o1's first
    s.ack("order", "g", &[&first[1].delivery]).await.unwrap();
    let delay = NackAction::Retry(Duration::from_millis(300));
    s.nack("order", "g", &[&first[0].delivery], delay, Some("later"))
        .await
        .unwrap();
    // Until the retried event comes back, nothing else of its partition does.
    let started = Instant::now();
    let again = loop {
        assert!(started.elapsed() < DEADLINE, "the retry never came");
        let got = s.fetch("order", "g", "w2", 10).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(tokens(&again), tokens(&first[..1]));
    assert_eq!(again[0].delivery_count, 2);
    s.ack("order", "g", &tokens(&again)).await.unwrap();
    let next = s.fetch("order", "g", "w2", 10).await.unwrap();
    assert_eq!(
        (next[0].event.aggregate_id.as_str(), next[0].event.revision),
        ("o1", 2)
    );
}

#[tokio::test]
async fn events_trimmed_before_their_ack_are_parked_as_trimmed() {
    let env = env(1).await;
    let s = &env.store;
    for a in 0..3 {
        append(s, &format!("o{a}"), 1).await;
    }
    s.create_group(
        "order",
        "g",
        GroupSettings::new().ack_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let held = s.fetch("order", "g", "dies", 10).await.unwrap();
    assert_eq!(held.len(), 3);
    let key = s.category_key("order", 0).unwrap();
    let _: u64 = redis::cmd("XTRIM")
        .arg(&key)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let started = Instant::now();
    let parked = loop {
        assert!(started.elapsed() < DEADLINE, "nothing was parked");
        assert!(s.fetch("order", "g", "w", 10).await.unwrap().is_empty());
        let parked = s.parked("order", "g", None, 10).await.unwrap().events;
        if parked.len() == 3 {
            break parked;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for p in &parked {
        assert_eq!(p.reason, ParkReason::Trimmed);
        assert!(p.event.is_none());
    }
    let mut positions: Vec<String> = parked.iter().map(|p| p.position.clone()).collect();
    positions.sort();
    let mut want: Vec<String> = held.iter().map(|d| d.event.position.clone()).collect();
    want.sort();
    assert_eq!(positions, want);
    let replayed = s.replay_parked("order", "g").await.unwrap();
    assert_eq!((replayed.replayed, replayed.kept), (0, 3));
    assert_eq!(s.group_status("order", "g").await.unwrap().pending, 0);
}

/// Sum of the lengths of a type's category partitions.
async fn category_len(env: &Env, partitions: u32) -> u64 {
    let mut total = 0;
    for p in 0..partitions {
        let key = env.store.category_key("order", p).unwrap();
        let n: u64 = redis::cmd("XLEN")
            .arg(&key)
            .query_async(&mut env.raw().await)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// Fetches and acks until `want` events arrived; returns them (id, revision) in
/// delivery order, checking that each aggregate's come in revision order after
/// revision `after`.
async fn drain(s: &EventStore, group: &str, want: usize, after: u64) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let started = Instant::now();
    while got.len() < want {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out: {} of {want} events",
            got.len()
        );
        let batch = s.fetch("order", group, "w", 500).await.unwrap();
        for d in &batch {
            let e = &d.event;
            let before = last
                .insert(e.aggregate_id.clone(), e.revision)
                .unwrap_or(after);
            assert_eq!(e.revision, before + 1, "{} out of order", e.aggregate_id);
            got.push((e.aggregate_id.clone(), e.revision));
        }
        s.ack("order", group, &tokens(&batch)).await.unwrap();
    }
    got
}

#[tokio::test]
async fn the_category_trim_waits_for_unacknowledged_events_and_says_so() {
    const MAX_LEN: u64 = 100;
    let env = Env::start_with(|c| {
        c.partitions_for("order", 2)
            .prefix("gt")
            .category_max_len(MAX_LEN)
    })
    .await;
    let s = &env.store;
    s.create_group("order", "slow", GroupSettings::new())
        .await
        .unwrap();
    // 1,500 events on 30 aggregates, 5 at a time: far past the category's length.
    for round in 0..10 {
        for a in 0..30 {
            let id = format!("o{a}");
            s.append(
                "order",
                &id,
                counted_events(round * 5 + 1, 5),
                ExpectedRevision::Exact(round * 5),
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(
        category_len(&env, 2).await,
        1500,
        "the trim dropped events the group has not acknowledged"
    );
    let status = s.group_status("order", "slow").await.unwrap();
    assert_eq!(status.undelivered, Some(1500));
    assert!(
        status.trim_held_back > 1500 - 2 * MAX_LEN - 2 * 256,
        "the status does not say the trim is held back: {}",
        status.trim_held_back
    );

    // Every event is delivered, in order per aggregate, none lost.
    let got = drain(s, "slow", 1500, 0).await;
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), 1500);

    // Once acknowledged, the trim goes on: the old entries go, the new ones stay.
    for a in 0..30 {
        s.append(
            "order",
            &format!("o{a}"),
            counted_events(51, 20),
            ExpectedRevision::Exact(50),
        )
        .await
        .unwrap();
    }
    let len = category_len(&env, 2).await;
    assert!(len < 1500, "nothing was trimmed after the acks: {len}");
    assert!(len >= 600, "new, undelivered events were trimmed: {len}");
    let got = drain(s, "slow", 600, 50).await;
    assert!(got.iter().all(|(_, r)| *r > 50));
    assert_eq!(
        s.group_status("order", "slow")
            .await
            .unwrap()
            .trim_held_back,
        0
    );

    // Without the group, the category is trimmed as configured again.
    s.delete_group("order", "slow").await.unwrap();
    for a in 0..30 {
        s.append(
            "order",
            &format!("o{a}"),
            counted_events(71, 20),
            ExpectedRevision::Exact(70),
        )
        .await
        .unwrap();
    }
    let len = category_len(&env, 2).await;
    assert!(
        len <= 2 * (MAX_LEN + 256),
        "the trim did not resume without the group: {len}"
    );
    let holds: u64 = redis::cmd("EXISTS")
        .arg("gt:{order:0}:holds")
        .arg("gt:{order:1}:holds")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    assert_eq!(holds, 0, "deleting the group left its trim holds");
}

#[tokio::test]
async fn a_readers_trim_hold_keeps_what_it_has_not_handled() {
    const MAX_LEN: u64 = 100;
    let env = Env::start_with(|c| c.prefix("th").category_max_len(MAX_LEN)).await;
    let s = &env.store;
    s.hold_trim("order", 0, "p:reader", None).await.unwrap();
    for a in 0..60 {
        s.append(
            "order",
            &format!("o{a}"),
            counted_events(1, 10),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    }
    assert_eq!(category_len(&env, 1).await, 600, "the hold was not kept");
    let key = s.category_key("order", 0).unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let positions: Vec<String> = entries.into_iter().map(|(id, _)| id).collect();
    // The reader handled the first 400: the trim may take those, never the rest.
    s.hold_trim("order", 0, "p:reader", Some(&positions[399]))
        .await
        .unwrap();
    for a in 0..30 {
        s.append(
            "order",
            &format!("o{a}"),
            counted_events(11, 10),
            ExpectedRevision::Exact(10),
        )
        .await
        .unwrap();
    }
    let len = category_len(&env, 1).await;
    assert!(len < 900, "nothing was trimmed: {len}");
    assert!(len >= 500, "entries after the hold were trimmed: {len}");
    let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg(&positions[400])
        .arg(&positions[400])
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "the first unhandled entry is gone");
    // Released: the category is trimmed as configured again.
    s.release_trim("order", "p:reader").await.unwrap();
    for a in 0..30 {
        s.append(
            "order",
            &format!("o{a}"),
            counted_events(21, 10),
            ExpectedRevision::Exact(20),
        )
        .await
        .unwrap();
    }
    let len = category_len(&env, 1).await;
    assert!(len <= MAX_LEN + 256, "the trim did not resume: {len}");
    assert!(s.hold_trim("order", 0, "g:taken", None).await.is_err());
    assert!(s.hold_trim("order", 1, "p:reader", None).await.is_err());
}

#[tokio::test]
async fn consumers_gone_for_a_day_with_nothing_pending_are_forgotten() {
    let env = env(1).await;
    let s = &env.store;
    append(s, "o1", 2).await;
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    let got = s.fetch("order", "g", "gone", 1).await.unwrap();
    s.ack("order", "g", &tokens(&got)).await.unwrap();
    let held = s.fetch("order", "g", "holder", 1).await.unwrap();
    assert_eq!(held.len(), 1);
    // Both last polled two days ago (as Redis' clock sees it): only the one holding
    // nothing is forgotten.
    let two_days_ago = {
        let (secs, _): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut env.raw().await)
            .await
            .unwrap();
        secs * 1000 - 2 * 86_400_000
    };
    let _: () = redis::cmd("HSET")
        .arg("g:{order:0}:grp:g")
        .arg("c:gone")
        .arg(two_days_ago)
        .arg("c:holder")
        .arg(two_days_ago)
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let status = s.group_status("order", "g").await.unwrap();
    let names: Vec<&str> = status.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["holder"]);
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(s.category_key("order", 0).unwrap())
        .arg("g")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    assert_eq!(consumers.len(), 1, "the Redis consumer was not deleted");
}

/// A category entry another writer made by hand (fields missing, one repeated, text
/// that is not UTF-8) is delivered leniently rather than wedging the partition: the
/// same event on a first delivery (read from the stream) and once parked (read back
/// through the parked listing).
#[tokio::test]
async fn a_hand_written_entry_is_delivered_and_parked_leniently() {
    let env = env(1).await;
    let s = &env.store;
    s.create_group("order", "g", GroupSettings::new())
        .await
        .unwrap();
    let category = s.category_key("order", 0).unwrap();
    let position: String = redis::cmd("XADD")
        .arg(&category)
        .arg("*")
        .arg("event_type")
        .arg("Odd")
        .arg("event_type")
        .arg("Ignored")
        .arg("data")
        .arg(&b"{\"x\":\"\xff\"}"[..])
        .arg("revision")
        .arg("not a number")
        .arg("other")
        .arg("field")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();

    let got = fetch_n(s, "g", "w", 1).await;
    assert_eq!(got.len(), 1);
    let event = &got[0].event;
    assert_eq!(event.position, position);
    assert_eq!(
        event.event_type, "Odd",
        "the first of a repeated field counts"
    );
    assert_eq!(event.data, "{\"x\":\"\u{fffd}\"}", "not UTF-8: replaced");
    assert_eq!((event.revision, event.version.as_str()), (0, "1"));
    assert_eq!(
        (event.event_id.as_str(), event.aggregate_id.as_str()),
        ("", "")
    );

    s.nack("order", "g", &[&got[0].delivery], NackAction::Park, None)
        .await
        .unwrap();
    let parked = s.parked("order", "g", None, 10).await.unwrap();
    assert_eq!(parked.events.len(), 1);
    assert_eq!(parked.events[0].event.as_ref(), Some(event));
}
