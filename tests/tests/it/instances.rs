//! Warm reducer instances: replays reuse an instance that served other aggregates
//! and give the states fresh instances give; an instance that failed in any way is
//! never used again; instances are recycled after their quota; the fresh policy and
//! per-plugin fresh serving; and the determinism guard, which catches a reducer
//! that keeps state across aggregates and serves it fresh from then on.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use streamfold::{
    ExpectedRevision, Instances, Limits, NewEvent, Plugin, RegisterOptions, ReplayOptions, Runtime,
    RuntimeConfig, VerifyOptions,
};
use streamfold_test_support::Env;
use streamfold_tests::plugins;

fn config(instances: Instances) -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .snapshot_every(None)
        .instances(instances)
        .limits(Limits::default().call_timeout(Duration::from_secs(2)))
}

fn warm(sessions_per_instance: u32) -> Instances {
    Instances::Warm {
        sessions_per_instance,
        idle_per_plugin: 4,
    }
}

async fn user(env: &Env, id: u64) {
    let events = vec![
        NewEvent::new(
            "UserCreated",
            &json!({"id": id, "name": format!("User {id}"), "email": format!("u{id}@example.com"), "timestamp": "t1"}),
        ),
        NewEvent::new(
            "EmailChanged",
            &json!({"email": format!("u{id}@example.org"), "timestamp": "t2"}),
        ),
    ];
    env.store
        .append("user", &id.to_string(), events, ExpectedRevision::Any)
        .await
        .expect("append");
}

async fn with(env: &Env, instances: Instances, plugin: &str) -> (Runtime, Arc<Plugin>) {
    let rt = Runtime::new(env.store.clone(), config(instances)).expect("runtime");
    rt.register(plugins::read(plugin), RegisterOptions::default())
        .await
        .expect("register");
    let p = rt.active_plugin("user").await.expect("active");
    (rt, p)
}

async fn states(rt: &Runtime, ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let r = rt
            .state("user", &id.to_string(), ReplayOptions::default())
            .await
            .expect("replay");
        out.push(serde_json::from_str(&r.state).unwrap());
    }
    out
}

#[tokio::test]
async fn sequential_replays_share_one_warm_instance_and_agree_with_fresh_ones() {
    let env = Env::start().await;
    for id in 1..=20 {
        user(&env, id).await;
    }
    let (rt, plugin) = with(&env, Instances::default(), plugins::USER).await;
    let made = plugin.instances_made();
    assert!(made >= 1, "loading warms one instance up");
    let warm_states = states(&rt, 1..=20).await;
    assert_eq!(
        plugin.instances_made(),
        made,
        "20 sequential replays made no new instance"
    );
    assert_eq!(plugin.idle_instances(), 1);

    let (fresh_rt, fresh_plugin) = with(&env, Instances::Fresh, plugins::USER).await;
    let fresh_states = states(&fresh_rt, 1..=20).await;
    assert_eq!(fresh_plugin.instances_made(), 20, "one instance per replay");
    assert_eq!(fresh_plugin.idle_instances(), 0);
    assert_eq!(warm_states, fresh_states);
    assert_eq!(warm_states[6]["email"], "u7@example.org");
}

#[tokio::test]
async fn an_instance_is_replaced_after_its_quota_of_sessions() {
    let env = Env::start().await;
    for id in 1..=9 {
        user(&env, id).await;
    }
    // 3 sessions per instance: the warm-up, then 2 replays, then a new instance.
    let (rt, plugin) = with(&env, warm(3), plugins::USER).await;
    assert_eq!(plugin.instances_made(), 1);
    states(&rt, 1..=8).await;
    assert_eq!(
        plugin.instances_made(),
        (1 + 8) / 3,
        "a new one every 3 sessions"
    );
}

#[tokio::test]
async fn an_instance_that_failed_is_never_used_again() {
    let env = Env::start().await;
    user(&env, 1).await;
    // `trap` panics on every UserCreated: each replay fails on its own instance.
    let (rt, plugin) = with(&env, Instances::default(), plugins::TRAP).await;
    let made = plugin.instances_made();
    assert_eq!(
        plugin.idle_instances(),
        1,
        "warmed up (an empty aggregate folds)"
    );
    for round in 1..=3 {
        let e = rt
            .state("user", "1", ReplayOptions::default())
            .await
            .expect_err("the reducer traps");
        assert!(e.reducer_failure().is_some_and(|f| f.is_trap()), "{e}");
        assert_eq!(
            plugin.idle_instances(),
            0,
            "round {round}: the trapped instance was not kept"
        );
        assert_eq!(
            plugin.instances_made(),
            made + round - 1,
            "round {round}: a new instance replaced the failed one"
        );
    }
}

#[tokio::test]
async fn a_plugin_served_fresh_makes_an_instance_per_replay() {
    let env = Env::start().await;
    for id in 1..=5 {
        user(&env, id).await;
    }
    let (rt, plugin) = with(&env, Instances::default(), plugins::USER).await;
    plugin.serve_fresh();
    assert!(plugin.serves_fresh());
    assert_eq!(plugin.idle_instances(), 0, "its idle instances are let go");
    let made = plugin.instances_made();
    states(&rt, 1..=5).await;
    assert_eq!(plugin.instances_made(), made + 5);
    assert_eq!(plugin.idle_instances(), 0);
}

#[tokio::test]
async fn verify_catches_a_reducer_that_keeps_state_across_aggregates_and_serves_it_fresh() {
    let env = Env::start().await;
    for id in 1..=6 {
        user(&env, id).await;
    }
    let rt = Runtime::new(env.store.clone(), config(Instances::default())).expect("runtime");
    let (leaky, _) = rt
        .load_async(plugins::read(plugins::LEAKY).into())
        .await
        .expect("loads");
    // Warm: its states depend on what its instance served before.
    let a = rt
        .state("user", "1", ReplayOptions::default().plugin(leaky.clone()))
        .await
        .unwrap();
    let b = rt
        .state("user", "1", ReplayOptions::default().plugin(leaky.clone()))
        .await
        .unwrap();
    assert_ne!(a.state, b.state, "the fixture leaks on warm instances");

    let report = rt
        .verify(leaky.clone(), VerifyOptions::default().all(), |_, _| {})
        .await
        .expect("verify runs");
    assert!(!report.passed(), "{report:?}");
    assert_eq!(report.keeps_state_across_aggregates.len(), 6, "{report:?}");
    let leak = &report.keeps_state_across_aggregates[0];
    assert_eq!(leak.path, "/aggregates_before", "{leak:?}");
    assert_eq!(leak.fresh, json!(0), "{leak:?}");
    assert!(leak.warm.as_u64().is_some_and(|n| n > 0), "{leak:?}");

    // From then on it is served on fresh instances: the same history, the same state.
    assert!(leaky.serves_fresh());
    let c = rt
        .state("user", "1", ReplayOptions::default().plugin(leaky.clone()))
        .await
        .unwrap();
    let d = rt
        .state("user", "1", ReplayOptions::default().plugin(leaky.clone()))
        .await
        .unwrap();
    assert_eq!(c.state, d.state);
    assert_eq!(
        serde_json::from_str::<Value>(&c.state).unwrap()["aggregates_before"],
        0
    );

    // The verdict is kept in the registry: another host (a new runtime, as after a
    // restart) that loads the registered plugin serves it fresh too.
    let reg = rt
        .register(
            plugins::read(plugins::LEAKY),
            streamfold::RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    let other = Runtime::new(env.store.clone(), config(Instances::default())).expect("runtime");
    let loaded = other.plugin(&reg.info.digest).await.unwrap();
    assert!(loaded.serves_fresh(), "the other host read the verdict");

    // A reducer that keeps nothing across aggregates passes the same guard.
    let (user, _) = rt
        .load_async(plugins::read(plugins::USER).into())
        .await
        .unwrap();
    let report = rt
        .verify(user, VerifyOptions::default().all(), |_, _| {})
        .await
        .unwrap();
    assert!(
        report.keeps_state_across_aggregates.is_empty(),
        "{report:?}"
    );
}
