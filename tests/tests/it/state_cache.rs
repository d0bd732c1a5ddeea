//! The runtime's state cache against a real redis-server: a held state is served
//! only when the stream still ends where it did (or goes on from there), never
//! stale, and a reducer that fails on what is new fails the read every time.

use serde_json::json;
use streamfold::{
    LiveUpdate, NewEvent, RegisterOptions, ReplayOptions, Replayed, Runtime, Snapshot,
    SubscribeOptions,
};
use streamfold_test_support::Env;
use streamfold_tests::plugins;

use crate::runtime::{append, ev, test_config};
use crate::subscribe::update;

async fn runtimes(env: &Env, path: &str) -> (Runtime, Runtime) {
    let cached = Runtime::new(env.store.clone(), test_config()).unwrap();
    let plain = Runtime::new(env.store.clone(), test_config().state_cache_bytes(0)).unwrap();
    cached
        .register(plugins::read(path), RegisterOptions::default())
        .await
        .unwrap();
    (cached, plain)
}

async fn state(rt: &Runtime, t: &str, id: &str) -> Replayed {
    rt.state(t, id, ReplayOptions::default()).await.unwrap()
}

fn renamed(name: &str) -> NewEvent {
    ev("NameChanged", json!({"name": name}))
}

async fn seed_user(env: &Env, id: &str) {
    append(
        env,
        "user",
        id,
        vec![ev(
            "UserCreated",
            json!({"id": 1, "name": "Alice", "email": "alice@example.com", "timestamp": "t1"}),
        )],
    )
    .await;
}

#[tokio::test]
async fn a_held_state_is_served_then_extended_by_what_is_new() {
    let env = Env::start().await;
    let (rt, plain) = runtimes(&env, plugins::USER).await;
    seed_user(&env, "1").await;
    append(&env, "user", "1", vec![renamed("Bo")]).await;

    let first = state(&rt, "user", "1").await;
    assert_eq!((first.cached_revision, first.events_read), (None, 2));
    // Nothing new: the held state, no event read, no reducer call.
    let again = state(&rt, "user", "1").await;
    assert_eq!(again.cached_revision, Some(2));
    assert_eq!((again.events_read, again.events_applied), (0, 0));
    assert_eq!(
        (&again.state, again.revision, &again.position),
        (&first.state, first.revision, &first.position)
    );

    // New events: only they are read and folded, onto the held state, and the
    // result is what a replay from the start gives.
    append(&env, "user", "1", vec![renamed("Cy"), renamed("Di")]).await;
    let extended = state(&rt, "user", "1").await;
    assert_eq!(extended.cached_revision, Some(2));
    assert_eq!((extended.events_read, extended.revision), (2, 4));
    let full = state(&plain, "user", "1").await;
    assert_eq!(full.cached_revision, None);
    assert_eq!(full.events_read, 4);
    assert_eq!(extended.state, full.state);
    assert_eq!(extended.position, full.position);
    assert!(extended.state.contains("\"Di\""), "{}", extended.state);

    // Beyond one page of new events too.
    let many: Vec<_> = (0..150).map(|i| renamed(&format!("n{i}"))).collect();
    append(&env, "user", "1", many).await;
    let long = state(&rt, "user", "1").await;
    assert_eq!((long.cached_revision, long.events_read), (Some(4), 150));
    assert_eq!(long.state, state(&plain, "user", "1").await.state);

    // The past, and reads without snapshots, never use it.
    let past = rt
        .state("user", "1", ReplayOptions::default().at_revision(3))
        .await
        .unwrap();
    assert_eq!((past.cached_revision, past.revision), (None, 3));
    let no_snap = rt
        .state("user", "1", ReplayOptions::default().use_snapshots(false))
        .await
        .unwrap();
    assert_eq!((no_snap.cached_revision, no_snap.events_read), (None, 154));
    // Nor a chosen reducer (there to be compared), even the active one.
    let active = rt.active_plugin("user").await.unwrap();
    let chosen = rt
        .state("user", "1", ReplayOptions::default().plugin(active))
        .await
        .unwrap();
    assert_eq!((chosen.cached_revision, chosen.events_read), (None, 154));
    // A runtime with it off never holds anything.
    assert_eq!(state(&plain, "user", "1").await.cached_revision, None);
}

/// The stream is recreated behind the runtime's back: deleted, then written again
/// by another program with an entry at the very position the held state ended at,
/// at the same revision, but another event. The held state is not served.
#[tokio::test]
async fn a_held_state_is_never_served_stale() {
    let env = Env::start().await;
    let (rt, plain) = runtimes(&env, plugins::USER).await;
    seed_user(&env, "7").await;
    let held = state(&rt, "user", "7").await;
    assert_eq!(state(&rt, "user", "7").await.cached_revision, Some(1));

    let keys = env.store.keys("user", "7").unwrap();
    let mut raw = env.raw().await;
    let _: () = redis::cmd("DEL")
        .arg(&keys.stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    // Written again at the same position and revision, with another event.
    let _: String = redis::cmd("XADD")
        .arg(&keys.stream)
        .arg(&held.position)
        .arg("event_id")
        .arg(uuid::Uuid::new_v4().to_string())
        .arg("aggregate_type")
        .arg("user")
        .arg("aggregate_id")
        .arg("7")
        .arg("event_type")
        .arg("UserCreated")
        .arg("data")
        .arg(r#"{"id":7,"name":"Mallory","email":"m@example.com","timestamp":"t9"}"#)
        .arg("timestamp")
        .arg("2026-12-07T10:00:00.000000Z")
        .arg("version")
        .arg("1")
        .arg("revision")
        .arg("1")
        .query_async(&mut raw)
        .await
        .unwrap();
    let now = state(&rt, "user", "7").await;
    assert_eq!(now.cached_revision, None, "the stale state was used");
    assert!(now.state.contains("Mallory"), "{}", now.state);
    assert_eq!(now.state, state(&plain, "user", "7").await.state);
    // And the new state is held from then on.
    assert_eq!(state(&rt, "user", "7").await.cached_revision, Some(1));

    // Gone: not found, not the held state.
    let _: () = redis::cmd("DEL")
        .arg(&keys.stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = rt
        .state("user", "7", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no events"), "{err}");
}

#[tokio::test]
async fn a_reducer_that_rejects_what_is_new_fails_every_read() {
    let env = Env::start().await;
    let (rt, _) = runtimes(&env, plugins::CART).await;
    append(
        &env,
        "cart",
        "9",
        vec![ev("CartOpened", json!({"customer": "c-1"}))],
    )
    .await;
    let ok = state(&rt, "cart", "9").await;
    assert_eq!(state(&rt, "cart", "9").await.cached_revision, Some(1));
    append(
        &env,
        "cart",
        "9",
        vec![ev("ItemRemoved", json!({"sku": "NEVER-ADDED"}))],
    )
    .await;
    for _ in 0..2 {
        let err = rt
            .state("cart", "9", ReplayOptions::default())
            .await
            .unwrap_err();
        assert!(err.reducer_failure().is_some(), "{err}");
    }
    // The past is still there.
    let past = rt
        .state("cart", "9", ReplayOptions::default().at_revision(1))
        .await
        .unwrap();
    assert_eq!(past.state, ok.state);
}

#[tokio::test]
async fn a_reducer_that_cannot_restore_its_own_state_gets_a_replay() {
    let env = Env::start().await;
    let (rt, _) = runtimes(&env, plugins::FORGETFUL).await;
    let tick = || vec![ev("Ticked", json!({}))];
    let counted = |r: &Replayed| serde_json::from_str::<serde_json::Value>(&r.state).unwrap();
    for _ in 0..3 {
        append(&env, "forgetful", "1", tick()).await;
    }
    let first = state(&rt, "forgetful", "1").await;
    assert_eq!(counted(&first), json!({"events": 3}));
    // Held: with nothing new it is served as it is (no restore needed).
    assert_eq!(state(&rt, "forgetful", "1").await.cached_revision, Some(3));
    // Something new must be folded onto the held state, which the reducer cannot
    // restore: each read replays the whole history instead, and answers.
    for n in [5, 6] {
        let more = if n == 5 { 2 } else { 1 };
        for _ in 0..more {
            append(&env, "forgetful", "1", tick()).await;
        }
        let read = state(&rt, "forgetful", "1").await;
        assert_eq!(counted(&read), json!({"events": n}));
        assert_eq!((read.cached_revision, read.events_read), (None, n));
    }
}

#[tokio::test]
async fn a_new_active_reducer_does_not_see_the_old_ones_states() {
    let env = Env::start().await;
    let (rt, _) = runtimes(&env, plugins::USER).await;
    seed_user(&env, "3").await;
    let v1 = state(&rt, "user", "3").await;
    assert_eq!(state(&rt, "user", "3").await.cached_revision, Some(1));
    let v2 = rt
        .register(plugins::read(plugins::USER_V2), RegisterOptions::default())
        .await
        .unwrap();
    assert!(v2.active);
    let now = state(&rt, "user", "3").await;
    assert_eq!(now.cached_revision, None);
    assert_eq!(now.plugin.digest, v2.info.digest);
    assert_ne!(now.plugin.digest, v1.plugin.digest);
    assert_eq!(state(&rt, "user", "3").await.cached_revision, Some(1));
}

#[tokio::test]
async fn a_live_state_from_the_end_starts_from_the_held_state() {
    let env = Env::start().await;
    let (rt, plain) = runtimes(&env, plugins::USER).await;
    seed_user(&env, "1").await;
    let read = state(&rt, "user", "1").await;
    // A doctored snapshot of the same reducer where the held state ends: a start
    // from the snapshot shows it, a start from the held state does not.
    env.store
        .save_snapshot(
            "user",
            "1",
            &Snapshot {
                state: r#"{"email":"FROM SNAPSHOT"}"#.into(),
                revision: read.revision,
                position: read.position.clone(),
                reducer_digest: read.plugin.digest.clone(),
                created_at: "2026-01-01T00:00:00Z".into(),
            },
        )
        .await
        .unwrap();
    append(&env, "user", "1", vec![renamed("Bo")]).await;
    let replayed = state_of(&plain).await;

    let start = |rt: Runtime| async move {
        let mut live = rt
            .subscribe_state("user", "1", SubscribeOptions::new().from_end())
            .await
            .unwrap();
        match update(&mut live).await {
            LiveUpdate::Start {
                state, revision, ..
            } => (state, revision, live),
            other => panic!("expected the start state, got {other:?}"),
        }
    };
    let (state, revision, mut live) = start(rt.clone()).await;
    assert_eq!((state, revision), (replayed, 2));
    // Without the cache, the same subscription starts from the snapshot.
    let (doctored, _, _) = start(plain.clone()).await;
    assert!(doctored.contains("FROM SNAPSHOT"), "{doctored}");

    // The session goes on from the held state like any other.
    assert!(matches!(
        update(&mut live).await,
        LiveUpdate::CaughtUp { revision: 2, .. }
    ));
    append(&env, "user", "1", vec![renamed("Cy")]).await;
    match update(&mut live).await {
        LiveUpdate::Event { event, state } => {
            assert_eq!(event.revision, 3);
            assert_eq!(state, state_of(&plain).await);
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The state of `user` 1 replayed from its first event (no snapshot, no held state
/// when `rt` has the cache off).
async fn state_of(rt: &Runtime) -> String {
    rt.state("user", "1", ReplayOptions::default().use_snapshots(false))
        .await
        .unwrap()
        .state
}
