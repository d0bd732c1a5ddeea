//! Live reducer updates: running hosts follow activations, swaps never break a
//! replay, versions are kept and can be rolled back, and a candidate can be
//! compared with the active version before it is activated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};
use streamfold::VerifyOptions;
use streamfold::{ExpectedRevision, NewEvent};
use streamfold::{RegisterOptions, ReplayOptions, Runtime, RuntimeConfig};
use streamfold_test_support::{Env, wait_until};
use streamfold_tests::plugins;

fn config() -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .snapshot_every(None)
}

async fn user_history(env: &Env, id: &str) {
    let events = vec![
        NewEvent::new(
            "UserCreated",
            &json!({"id": 1, "name": "Alice", "email": "a@x", "timestamp": "t1"}),
        ),
        NewEvent::new("EmailChanged", &json!({"email": "b@x", "timestamp": "t2"})),
        NewEvent::new("NameChanged", &json!({"name": "Alicia"})),
    ];
    env.store
        .append("user", id, events, ExpectedRevision::NoStream)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_running_host_uses_a_new_activation_without_restart() {
    let env = Env::start().await;
    let client = Runtime::new(env.store.clone(), config()).unwrap();
    let v1 = client
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    user_history(&env, "1").await;

    // A separate host (its own store connection and runtime), following activations.
    let host_store = env.store_with(streamfold::StoreConfig::default()).await;
    let host = Runtime::new(host_store, config()).unwrap();
    host.follow_activations().await.unwrap();
    let before = host
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(before.plugin.digest, v1.info.digest);

    // The deployment path: register (running hosts compile it ahead), then activate.
    let v2 = client
        .register(
            plugins::read(plugins::USER_V2),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();

    client.activate("user", &v2.info.version).await.unwrap();
    let activated = Instant::now();
    let after = replay_until(&host, &v2.info.digest, Duration::from_secs(60)).await;
    // Printed, not asserted: CI machines are several times slower than this one.
    eprintln!(
        "activate -> first replay on the new version: {:?}",
        activated.elapsed()
    );
    let state: Value = serde_json::from_str(&after.state).unwrap();
    assert_eq!(state["name"], "ALICIA");

    // Rollback is an activation too.
    client.activate("user", &v1.info.digest).await.unwrap();
    let back = replay_until(&host, &v1.info.digest, Duration::from_secs(60)).await;
    assert_eq!(back.state, before.state);
}

#[tokio::test]
async fn a_missed_notice_is_caught_by_the_periodic_check() {
    let env = Env::start().await;
    let client = Runtime::new(env.store.clone(), config()).unwrap();
    client
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let v2 = client
        .register(
            plugins::read(plugins::USER_V2),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    user_history(&env, "1").await;
    let host = Runtime::new(
        env.store_with(Default::default()).await,
        config().activation_check_every(Duration::from_millis(100)),
    )
    .unwrap();
    host.follow_activations().await.unwrap();
    host.state("user", "1", ReplayOptions::default())
        .await
        .unwrap();

    // Switch the active digest behind the registry's back: no notice is published.
    let mut raw = env.raw().await;
    let _: () = raw
        .hset("sf:plugins:active", "user", &v2.info.digest)
        .await
        .unwrap();
    replay_until(&host, &v2.info.digest, Duration::from_secs(60)).await;
}

/// Replays `user/1` on `host` back to back until a replay is made by the reducer
/// `digest`; fails the test if none is within `limit`.
async fn replay_until(host: &Runtime, digest: &str, limit: Duration) -> streamfold::Replayed {
    let t = Instant::now();
    loop {
        let r = host
            .state("user", "1", ReplayOptions::default())
            .await
            .unwrap();
        if r.plugin.digest == digest {
            return r;
        }
        assert!(
            t.elapsed() < limit,
            "after {limit:?}, the host still replays with {} instead of {digest}",
            r.plugin.digest
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_never_fail_a_replay_and_each_result_comes_from_one_version() {
    let env = Env::start_with(|c| c.page_size(10)).await;
    let client = Runtime::new(env.store.clone(), config()).unwrap();
    let v1 = client
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let v2 = client
        .register(
            plugins::read(plugins::USER_V2),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    // Long enough that a replay spans several pages and batches.
    user_history(&env, "1").await;
    let names: Vec<_> = (0..57)
        .map(|i| NewEvent::new("NameChanged", &json!({"name": format!("n{i}")})))
        .collect();
    env.store
        .append("user", "1", names, ExpectedRevision::Exact(3))
        .await
        .unwrap();

    let host = Runtime::new(env.store_with(Default::default()).await, config()).unwrap();
    host.follow_activations().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let replays = {
        let (host, stop, results) = (host.clone(), stop.clone(), results.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = host.state("user", "1", ReplayOptions::default()).await;
                results.lock().unwrap().push(r);
            }
        })
    };
    // Each swap waits until the host has served the version it swapped to, so every
    // swap is seen however slow the machine (no fixed pause to guess).
    for i in 0..40 {
        let target = if i % 2 == 0 { &v2 } else { &v1 };
        let seen = results.lock().unwrap().len();
        client.activate("user", &target.info.digest).await.unwrap();
        let digest = target.info.digest.as_str();
        wait_until(
            &format!("a replay by {digest} after swap {i}"),
            Duration::from_secs(60),
            || {
                let found = results.lock().unwrap()[seen..]
                    .iter()
                    .any(|r| r.as_ref().is_ok_and(|r| r.plugin.digest == digest));
                async move { found.then_some(()) }
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    replays.await.unwrap();
    let results = std::mem::take(&mut *results.lock().unwrap());

    let (mut by_v1, mut by_v2) = (0, 0);
    for r in &results {
        let r = r.as_ref().expect("no replay may fail because of a swap");
        let state: Value = serde_json::from_str(&r.state).unwrap();
        if r.plugin.digest == v2.info.digest {
            // v2 counts every event it applied: all 60 went through v2.
            assert_eq!(state["v2_events"], 60, "{state}");
            assert_eq!(state["name"], "N56");
            by_v2 += 1;
        } else {
            assert_eq!(r.plugin.digest, v1.info.digest);
            assert!(state.get("v2_events").is_none(), "{state}");
            assert_eq!(state["name"], "n56");
            by_v1 += 1;
        }
    }
    eprintln!(
        "{} replays during 40 swaps: {by_v1} by v1, {by_v2} by v2",
        results.len()
    );
    assert!(
        by_v1 > 0 && by_v2 > 0,
        "both versions served: {by_v1} / {by_v2}"
    );
}

#[tokio::test]
async fn versions_are_kept_with_history_and_the_active_one_cannot_be_removed() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), config()).unwrap();
    let v1 = rt
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let v2 = rt
        .register(plugins::read(plugins::USER_V2), RegisterOptions::default())
        .await
        .unwrap();
    rt.activate("user", &v1.info.version).await.unwrap();

    let history = rt.activation_history("user").await.unwrap();
    let digests: Vec<_> = history.iter().map(|a| a.digest.as_str()).collect();
    assert_eq!(
        digests,
        [&v1.info.digest, &v2.info.digest, &v1.info.digest],
        "newest first"
    );

    let err = rt.remove("user", &v1.info.digest).await.unwrap_err();
    assert!(err.to_string().contains("active reducer"), "{err}");
    assert_eq!(rt.plugins(Some("user")).await.unwrap().len(), 2);
    rt.remove("user", &v2.info.digest).await.unwrap();
    let left = rt.plugins(Some("user")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].info.digest, v1.info.digest);
    assert!(
        rt.activate("user", &v2.info.digest)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // A reducer is never activated for a type it does not fold.
    let cart = rt
        .register(
            plugins::read(plugins::CART),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    assert!(rt.activate("user", &cart.info.digest).await.is_err());
}

#[tokio::test]
async fn verify_compares_a_candidate_with_the_active_version() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), config()).unwrap();
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    for i in 0..30 {
        user_history(&env, &i.to_string()).await;
    }
    // One aggregate that only v2 can fold: its data is not an object for `name`.
    env.store
        .append(
            "user",
            "odd",
            vec![NewEvent::new("NameChanged", &json!({"nom": "x"}))],
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();

    let (same, _) = rt.load(&plugins::read(plugins::USER)).unwrap();
    let report = rt
        .verify(same, VerifyOptions::default().all(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.checked, 31);
    assert_eq!(report.agreed, 30);
    assert_eq!(
        report.active_failed.len(),
        1,
        "the active reducer rejects `odd`"
    );
    assert!(report.passed());

    let (v2, _) = rt.load(&plugins::read(plugins::USER_V2)).unwrap();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let report = rt
        .verify(v2, VerifyOptions::default().sample(10), |n, _| {
            done.store(n, Ordering::Relaxed)
        })
        .await
        .unwrap();
    assert_eq!(report.checked, 10);
    assert_eq!(done.load(Ordering::Relaxed), 10, "progress reached the end");
    assert!(!report.passed());
    assert_eq!(report.differed.len() + report.active_failed.len(), 10);
    if let Some(d) = report.differed.first() {
        // v2 keeps no `id`: the first field of v1's state.
        assert_eq!(d.path, "/id");
        assert_eq!(d.active, 1);
        assert_eq!(d.candidate, Value::Null);
    }

    let (trap, _) = rt.load(&plugins::read(plugins::TRAP)).unwrap();
    let report = rt
        .verify(trap, VerifyOptions::default().all(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        report.failed.len(),
        30,
        "every aggregate with a UserCreated traps"
    );
    assert!(
        report.failed[0]
            .failure
            .as_ref()
            .is_some_and(|f| f.is_trap())
    );
    // Verifying writes nothing: no snapshots, no activation.
    let active = rt.plugins(Some("user")).await.unwrap();
    assert_eq!(active.iter().filter(|p| p.active).count(), 1);
    let snaps: Vec<String> = env.raw().await.keys("sf:*:snap:*").await.unwrap();
    assert!(snaps.is_empty(), "{snaps:?}");
}
