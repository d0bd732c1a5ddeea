//! Live subscriptions against a real redis-server: the store's [`Subscription`]s (catch-up,
//! the caught-up signal, live events; exact resumes while appends race them; category
//! order; a Redis restart) and the runtime's live state (a session fed each event,
//! whose states equal full replays; reducer failures; a newly activated reducer).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use streamfold::{
    ExpectedRevision, FailedEvent, Live, LiveState, LiveUpdate, NewEvent, ReadOptions,
    RecordedEvent, RegisterOptions, ReplayOptions, Runtime, RuntimeConfig, SubscribeOptions,
    Subscription,
};
use streamfold_store::CategoryReadOptions;
use streamfold_test_support::{Env, counted_events, numbered_event, revisions, wait_until};
use streamfold_tests::plugins;

/// How long any one expected item may take to arrive: generous, it takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(30);

/// The next item of a store subscription; fails the test on an error, an end, or
/// nothing within [`DEADLINE`].
async fn next(sub: &mut Subscription) -> Live {
    match tokio::time::timeout(DEADLINE, sub.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
        Ok(None) => panic!("the subscription ended"),
        Err(_) => panic!("nothing from the subscription within {DEADLINE:?}"),
    }
}

/// The next `n` events, failing the test on anything else.
async fn events(sub: &mut Subscription, n: usize) -> Vec<RecordedEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match next(sub).await {
            Live::Event(e) => out.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    out
}

/// Events up to the caught-up signal, and the position it reports.
async fn catch_up(sub: &mut Subscription) -> (Vec<RecordedEvent>, Option<String>) {
    let mut out = Vec::new();
    loop {
        match next(sub).await {
            Live::Event(e) => out.push(e),
            Live::CaughtUp { position } => return (out, position),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next update of a live state; fails the test on an error, an end, or nothing
/// within [`DEADLINE`].
pub(super) async fn update(live: &mut LiveState) -> LiveUpdate {
    match tokio::time::timeout(DEADLINE, live.next()).await {
        Ok(Some(Ok(u))) => u,
        Ok(Some(Err(e))) => panic!("the live state failed: {e}"),
        Ok(None) => panic!("the live state ended"),
        Err(_) => panic!("nothing from the live state within {DEADLINE:?}"),
    }
}

async fn append(env: &Env, id: &str, events: Vec<NewEvent>) {
    env.store
        .append("user", id, events, ExpectedRevision::Any)
        .await
        .expect("append");
}

fn assert_consecutive(events: &[RecordedEvent], from: u64) {
    let want: Vec<u64> = (from..from + events.len() as u64).collect();
    assert_eq!(revisions(events), want, "consecutive revisions from {from}");
}

#[tokio::test]
async fn catch_up_then_caught_up_then_live_events_in_order() {
    let env = Env::start().await;
    append(&env, "1", counted_events(1, 5)).await;
    // Pages of two: the catch-up takes three reads, the last one short.
    let mut sub = env
        .store
        .subscribe("user", "1", SubscribeOptions::new().page_size(2))
        .await
        .unwrap();
    assert_eq!(sub.position(), None, "from the beginning");
    let (caught_up, position) = catch_up(&mut sub).await;
    assert_consecutive(&caught_up, 1);
    assert_eq!(position.as_deref(), Some(caught_up[4].position.as_str()));
    let stored = env
        .store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(caught_up, stored, "the events as reads decode them");

    // Live: one append at a time, each delivered as it comes.
    let mut live = Vec::new();
    for n in 6..=8 {
        append(&env, "1", vec![numbered_event("Counted", n)]).await;
        let got = events(&mut sub, 1).await;
        assert_eq!(got[0].revision, n);
        assert_eq!(got[0].data, format!("{{\"n\":{n}}}"));
        assert_eq!(sub.position(), Some(got[0].position.as_str()));
        live.extend(got);
    }
    // A batch arrives whole, in order.
    append(&env, "1", counted_events(9, 4)).await;
    live.extend(events(&mut sub, 4).await);
    assert_consecutive(&live, 6);
    let all = env
        .store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(live, all[5..], "live events as reads decode them");
}

/// A writer appends `N` events one at a time while the reader takes a few, drops its
/// subscription and resubscribes after the last position it saw, again and again
/// (alternately with and without the revision there). The writer stays at most
/// `WINDOW` events ahead, so appends keep racing every resubscription: some resume
/// in the catch-up, some right at the live edge.
#[tokio::test]
async fn resuming_after_the_last_seen_position_while_appends_race_loses_and_repeats_nothing() {
    const N: u64 = 300;
    const WINDOW: u64 = 16;
    let env = Env::start().await;
    let seen = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let store = env.store.clone();
        let seen = seen.clone();
        async move {
            for n in 1..=N {
                wait_until("the reader to keep up", DEADLINE, || async {
                    (seen.load(Ordering::SeqCst) + WINDOW >= n).then_some(())
                })
                .await;
                store
                    .append(
                        "user",
                        "1",
                        vec![numbered_event("Counted", n)],
                        ExpectedRevision::Exact(n - 1),
                    )
                    .await
                    .expect("append");
            }
        }
    });

    let mut delivered: Vec<RecordedEvent> = Vec::new();
    let mut subscriptions = 0u64;
    while (delivered.len() as u64) < N {
        let opts = SubscribeOptions::new().page_size(4);
        let opts = match delivered.last() {
            None => opts,
            Some(e) if subscriptions.is_multiple_of(2) => opts.after(e.position.clone()),
            Some(e) => opts.after_revision(e.position.clone(), e.revision),
        };
        let mut sub = env.store.subscribe("user", "1", opts).await.unwrap();
        subscriptions += 1;
        let take = 1 + subscriptions % 9;
        let mut taken = 0;
        while taken < take && (delivered.len() as u64) < N {
            if let Live::Event(e) = next(&mut sub).await {
                delivered.push(e);
                seen.store(delivered.len() as u64, Ordering::SeqCst);
                taken += 1;
            }
        }
        drop(sub);
    }
    writer.await.expect("the writer finished");

    assert_consecutive(&delivered, 1);
    let ids: HashSet<&str> = delivered.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len() as u64, N, "no event delivered twice");
    let stored = env
        .store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(delivered, stored);
    assert!(subscriptions > N / 9, "resubscribed {subscriptions} times");
}

#[tokio::test]
async fn a_category_subscription_sees_several_aggregates_in_category_order() {
    let env = Env::start().await;
    let ids = ["a", "b", "c"];
    for round in 0..3u64 {
        for id in ids {
            append(&env, id, counted_events(round * 2 + 1, 2)).await;
        }
    }
    let mut sub = env
        .store
        .subscribe_category("user", 0, SubscribeOptions::new().page_size(4))
        .await
        .unwrap();
    // Subscribed from the end: only what comes next.
    let mut from_end = env
        .store
        .subscribe_category("user", 0, SubscribeOptions::new().from_end())
        .await
        .unwrap();
    let (caught_up, _) = catch_up(&mut sub).await;
    let feed = env
        .store
        .read_category("user", CategoryReadOptions::new().count(1000))
        .await
        .unwrap();
    assert_eq!(feed.len(), 18);
    assert_eq!(caught_up, feed, "the category feed, in its order");
    let (none, position) = catch_up(&mut from_end).await;
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(position.as_deref(), Some(feed[17].position.as_str()));

    // Live, interleaved across the aggregates.
    for round in 3..5u64 {
        for id in ids.iter().rev() {
            append(&env, id, counted_events(round * 2 + 1, 2)).await;
        }
    }
    let live = events(&mut sub, 12).await;
    let live_from_end = events(&mut from_end, 12).await;
    let feed = env
        .store
        .read_category(
            "user",
            CategoryReadOptions::new().after(feed[17].position.clone()),
        )
        .await
        .unwrap();
    assert_eq!(live, feed);
    assert_eq!(live_from_end, feed);
    let order: Vec<&str> = live.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(
        order,
        ["c", "c", "b", "b", "a", "a", "c", "c", "b", "b", "a", "a"]
    );
    // Each aggregate's events keep their own consecutive revisions.
    for id in ids {
        let of: Vec<RecordedEvent> = [caught_up.clone(), live.clone()]
            .concat()
            .into_iter()
            .filter(|e| e.aggregate_id == id)
            .collect();
        assert_consecutive(&of, 1);
    }
}

/// Redis is stopped and started again (with its data: saved before, loaded at start)
/// while a subscription is live: it reconnects by itself and goes on after the last
/// event it delivered.
#[tokio::test]
async fn a_redis_restart_mid_subscription_resumes_without_gap_or_duplicate() {
    let mut env = Env::start_with(|c| c.response_timeout(Duration::from_secs(2))).await;
    append(&env, "1", counted_events(1, 3)).await;
    let mut sub = env
        .store
        .subscribe(
            "user",
            "1",
            SubscribeOptions::new().block(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    let (mut delivered, _) = catch_up(&mut sub).await;
    append(&env, "1", counted_events(4, 2)).await;
    delivered.extend(events(&mut sub, 2).await);

    // Persist what is there, so the restarted server has it (as a real one would).
    redis::cmd("SAVE")
        .exec_async(&mut env.raw().await)
        .await
        .unwrap();
    env.redis_mut().stop();
    // While it is down, calls fail (and the subscription keeps trying).
    let down = env
        .store
        .append(
            "user",
            "1",
            counted_events(6, 1),
            ExpectedRevision::Exact(5),
        )
        .await;
    assert!(down.is_err(), "an append while Redis is down");
    env.redis_mut().start_again().unwrap();
    let more = counted_events(6, 3); // fixed ids: a retried append is recognised
    let store = env.store.clone();
    wait_until("an append after the restart", DEADLINE, || {
        let (store, more) = (store.clone(), more.clone());
        async move {
            store
                .append("user", "1", more, ExpectedRevision::Exact(5))
                .await
                .ok()
        }
    })
    .await;
    delivered.extend(events(&mut sub, 3).await);
    assert_consecutive(&delivered, 1);
    let stored = env
        .store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(delivered, stored);

    // And it is still live.
    append(&env, "1", counted_events(9, 1)).await;
    assert_eq!(events(&mut sub, 1).await[0].revision, 9);
}

fn runtime_config() -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .snapshot_every(None)
}

fn user_events() -> Vec<NewEvent> {
    vec![
        NewEvent::new(
            "UserCreated",
            &json!({"id": 1, "name": "Alice", "email": "a@x", "timestamp": "t1"}),
        ),
        NewEvent::new("EmailChanged", &json!({"email": "b@x", "timestamp": "t2"})),
        NewEvent::new("PasswordReset", &json!({"whatever": true})),
        NewEvent::new("NameChanged", &json!({"name": "Alicia"})),
        NewEvent::new("EmailChanged", &json!({"email": "c@x", "timestamp": "t3"})),
        NewEvent::new("NameChanged", &json!({"name": "Ali"})),
    ]
}

/// The state a full replay gives at `revision`.
async fn replayed_at(rt: &Runtime, revision: u64) -> String {
    rt.state(
        "user",
        "1",
        ReplayOptions::default()
            .at_revision(revision)
            .use_snapshots(false),
    )
    .await
    .unwrap()
    .state
}

/// The next update, which must be an event's: the event and the state after it.
async fn event_update(live: &mut LiveState) -> (RecordedEvent, String) {
    match update(live).await {
        LiveUpdate::Event { event, state } => (event, state),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn live_state_after_each_event_equals_a_full_replay() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), runtime_config()).unwrap();
    let reg = rt
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let mut history = user_events().into_iter();
    append(&env, "1", history.by_ref().take(2).collect()).await;
    // A snapshot at revision 2: the live session starts from it.
    rt.snapshot("user", "1").await.unwrap();

    let mut live = rt
        .subscribe_state("user", "1", SubscribeOptions::new().from_end())
        .await
        .unwrap();
    match update(&mut live).await {
        LiveUpdate::Start {
            state,
            revision,
            position,
            plugin,
        } => {
            assert_eq!(revision, 2);
            assert_eq!(state, replayed_at(&rt, 2).await);
            assert_eq!(plugin.digest, reg.info.digest);
            assert_eq!(
                position.as_deref(),
                Some(
                    env.store
                        .read_all("user", "1", ReadOptions::new())
                        .await
                        .unwrap()[1]
                        .position
                        .as_str()
                )
            );
        }
        other => panic!("expected the start state, got {other:?}"),
    }
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::CaughtUp { revision: 2, .. }
    ));

    // One event at a time: each pushed state is the full replay's at that revision,
    // the unhandled PasswordReset included (its state repeats the one before).
    for (event, revision) in history.zip(3..) {
        append(&env, "1", vec![event]).await;
        let (event, state) = event_update(&mut live).await;
        assert_eq!(event.revision, revision);
        assert_eq!(
            state,
            replayed_at(&rt, revision).await,
            "at revision {revision}"
        );
    }
    let last: Value = serde_json::from_str(&replayed_at(&rt, 6).await).unwrap();
    assert_eq!(last["name"], "Ali");

    // Resuming after a position: the state there first, then the events after it.
    let stored = env
        .store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    let mut resumed = rt
        .subscribe_state(
            "user",
            "1",
            SubscribeOptions::new().after(stored[3].position.clone()),
        )
        .await
        .unwrap();
    match update(&mut resumed).await {
        LiveUpdate::Start {
            state,
            revision,
            position,
            ..
        } => {
            assert_eq!(revision, 4);
            assert_eq!(state, replayed_at(&rt, 4).await);
            assert_eq!(position.as_deref(), Some(stored[3].position.as_str()));
        }
        other => panic!("expected the start state, got {other:?}"),
    }
    for revision in 5..=6 {
        let (event, state) = event_update(&mut resumed).await;
        assert_eq!(event, stored[revision as usize - 1]);
        assert_eq!(state, replayed_at(&rt, revision).await);
    }
    assert!(matches!(
        update(&mut resumed).await,
        LiveUpdate::CaughtUp { revision: 6, .. }
    ));
}

#[tokio::test]
async fn live_state_from_the_beginning_folds_every_event_of_a_new_aggregate() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), runtime_config()).unwrap();
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    // No events yet: the reducer's empty state, and it waits for the first.
    let mut live = rt
        .subscribe_state("user", "1", SubscribeOptions::new())
        .await
        .unwrap();
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::Start {
            revision: 0,
            position: None,
            ..
        }
    ));
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::CaughtUp {
            revision: 0,
            position: None
        }
    ));
    append(&env, "1", user_events()).await;
    for revision in 1..=6 {
        let (event, state) = event_update(&mut live).await;
        assert_eq!(event.revision, revision);
        assert_eq!(state, replayed_at(&rt, revision).await);
    }
}

#[tokio::test]
async fn a_reducer_failure_ends_the_live_state_with_the_typed_error() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), runtime_config()).unwrap();
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    append(&env, "1", user_events().into_iter().take(1).collect()).await;
    let mut live = rt
        .subscribe_state("user", "1", SubscribeOptions::new().from_end())
        .await
        .unwrap();
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::Start { revision: 1, .. }
    ));
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::CaughtUp { .. }
    ));
    // The user reducer refuses an EmailChanged without its timestamp.
    append(
        &env,
        "1",
        vec![NewEvent::new("EmailChanged", &json!({"email": "x"}))],
    )
    .await;
    let err = match tokio::time::timeout(DEADLINE, live.next()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected the reducer's error, got {other:?}"),
    };
    assert!(err.is_reducer_failure(), "{err:?}");
    let failure = err.reducer_failure().expect("the failure's details");
    assert_eq!(failure.aggregate, "user/1");
    assert!(
        matches!(&failure.event, Some(FailedEvent::Event { revision: 2, .. })),
        "{failure:?}"
    );
    assert!(err.to_string().contains("timestamp"), "{err}");
    assert!(live.next().await.is_none(), "ended after the error");
}

#[tokio::test]
async fn live_state_continues_with_a_newly_activated_reducer_at_the_next_event() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), runtime_config()).unwrap();
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let v2 = rt
        .register(
            plugins::read(plugins::USER_V2),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    append(&env, "1", user_events().into_iter().take(2).collect()).await;
    let mut live = rt
        .subscribe_state("user", "1", SubscribeOptions::new().from_end())
        .await
        .unwrap();
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::Start { revision: 2, .. }
    ));
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::CaughtUp { .. }
    ));

    rt.activate("user", &v2.info.version).await.unwrap();
    append(
        &env,
        "1",
        vec![NewEvent::new("NameChanged", &json!({"name": "Alicia"}))],
    )
    .await;
    match update(&mut live).await {
        LiveUpdate::ReducerChanged {
            state,
            revision,
            plugin,
            ..
        } => {
            assert_eq!(plugin.digest, v2.info.digest);
            assert_eq!(revision, 2);
            assert_eq!(state, replayed_at(&rt, 2).await, "v2's state at revision 2");
        }
        other => panic!("expected the reducer change, got {other:?}"),
    }
    let (event, state) = event_update(&mut live).await;
    assert_eq!(event.revision, 3);
    assert_eq!(state, replayed_at(&rt, 3).await);
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["name"], "ALICIA", "folded by v2");
}

/// The next item of a merged category feed (see [`next`]).
async fn feed_next(feed: &mut streamfold::CategoryFeed) -> Live {
    match tokio::time::timeout(DEADLINE, feed.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(e))) => panic!("the feed failed: {e}"),
        Ok(None) => panic!("the feed ended"),
        Err(_) => panic!("nothing from the feed within {DEADLINE:?}"),
    }
}

#[tokio::test]
async fn a_partitioned_category_is_followed_as_one_feed_and_resumes_from_its_position() {
    let env = crate::store::partitions::twenty_orders_in_four_partitions().await;
    let s = &env.store;
    let mut feed = s
        .subscribe_category_merged("order", SubscribeOptions::new().page_size(5))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let caught_up_at = loop {
        match feed_next(&mut feed).await {
            Live::Event(e) => seen.push((e.aggregate_id.clone(), e.revision)),
            Live::CaughtUp { position } => break position.expect("a position after 40 events"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(seen.len(), 40, "every stored event before caught-up");
    assert_eq!(caught_up_at.split(',').count(), 4, "{caught_up_at}");
    for i in 0..20 {
        let id = format!("o{i}");
        let revs: Vec<u64> = seen
            .iter()
            .filter(|(a, _)| *a == id)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(revs, [1, 2], "{id} in order, once each");
    }
    // Live: appends to aggregates in different partitions arrive.
    for i in [0, 5, 7] {
        s.append(
            "order",
            &format!("o{i}"),
            counted_events(3, 1),
            ExpectedRevision::Exact(2),
        )
        .await
        .unwrap();
    }
    let mut live = Vec::new();
    let mut mid = None;
    while live.len() < 3 {
        if let Live::Event(e) = feed_next(&mut feed).await {
            live.push(e.aggregate_id.clone());
            if live.len() == 1 {
                mid = feed.position();
            }
        }
    }
    live.sort();
    assert_eq!(live, ["o0", "o5", "o7"]);
    // A new feed after the position of the first live event delivers the other two.
    let mut again = s
        .subscribe_category_merged("order", SubscribeOptions::new().after(mid.unwrap()))
        .await
        .unwrap();
    let mut rest = Vec::new();
    loop {
        match feed_next(&mut again).await {
            Live::Event(e) => rest.push((e.aggregate_id.clone(), e.revision)),
            Live::CaughtUp { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        rest.len(),
        2,
        "exactly the events after the position: {rest:?}"
    );
    assert!(rest.iter().all(|(_, r)| *r == 3));
    // A position for another partition count is refused.
    let e = s
        .subscribe_category_merged("order", SubscribeOptions::new().after("1-0"))
        .await
        .unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
}
