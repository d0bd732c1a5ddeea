//! The reducer runtime against a real redis-server and real components built
//! from `plugins/` and `tests/plugins/`.

use std::time::Duration;

use serde_json::{Value, json};
use streamfold::{Error, RegisterOptions, ReplayOptions, Runtime, RuntimeConfig};
use streamfold::{ExpectedRevision, NewEvent, ReadOptions, Snapshot};
use streamfold::{FailedEvent, FailureCause, Limits, LoadSource, RejectionKind};
use streamfold_tests::plugins;

use streamfold_test_support::{Env, a_millisecond_after, wait_until};

/// Quick limits so the misbehaving reducers fail fast.
pub(super) fn test_config() -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .snapshot_every(None)
        .limits(
            Limits::default()
                .call_timeout(Duration::from_millis(300))
                .memory_bytes(64 << 20),
        )
}

async fn runtime(env: &Env, config: RuntimeConfig) -> Runtime {
    Runtime::new(env.store.clone(), config).expect("runtime starts")
}

pub(super) fn ev(event_type: &str, data: Value) -> NewEvent {
    NewEvent::new(event_type, &data)
}

pub(super) async fn append(env: &Env, t: &str, id: &str, events: Vec<NewEvent>) {
    env.store
        .append(t, id, events, ExpectedRevision::Any)
        .await
        .expect("append");
}

fn state_json(s: &str) -> Value {
    serde_json::from_str(s).expect("state is JSON")
}

async fn seed_user(env: &Env, id: &str) {
    append(
        env,
        "user",
        id,
        vec![
            ev(
                "UserCreated",
                json!({"id": 1, "name": "Alice", "email": "alice@example.com", "timestamp": "t1"}),
            ),
            ev(
                "EmailChanged",
                json!({"email": "alice.smith@example.com", "timestamp": "t2"}),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn user_reducer_folds_the_seed_story_exactly() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    let reg = rt
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    assert!(reg.active);
    assert_eq!(reg.info.name, "user");
    assert_eq!(reg.info.aggregate_type, "user");

    seed_user(&env, "1").await;
    append(
        &env,
        "user",
        "1",
        vec![
            ev("PasswordReset", json!({"whatever": true})),
            ev("NameChanged", json!({"name": "Alicia"})),
        ],
    )
    .await;
    let r = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    // The seed's dict-merge semantics, key order included.
    assert_eq!(
        r.state,
        r#"{"id":1,"name":"Alicia","email":"alice.smith@example.com","created_at":"t1","email_updated_at":"t2"}"#
    );
    assert_eq!(r.revision, 4);
    assert_eq!(r.events_read, 4);
    assert_eq!(
        r.events_applied, 3,
        "PasswordReset is not handled and must be skipped"
    );
    assert_eq!(r.plugin.digest, reg.info.digest);
}

#[tokio::test]
async fn components_describe_themselves() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    let (user, _) = rt.load(&plugins::read(plugins::USER)).unwrap();
    assert_eq!(user.info().name, "user");
    assert_eq!(
        user.info().handles,
        ["UserCreated", "EmailChanged", "NameChanged"]
    );
    assert!(streamfold::digest(&plugins::read(plugins::USER)) == user.info().digest);
    let (cart, _) = rt.load(&plugins::read(plugins::CART)).unwrap();
    assert_eq!(cart.info().aggregate_type, "cart");
    assert!(cart.info().handles.iter().any(|h| h == "ItemAdded"));
}

#[tokio::test]
async fn bad_components_are_refused_at_registration() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "garbage",
            b"definitely not wasm".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core module",
            plugins::read(plugins::USER_CORE),
            "core WebAssembly module",
        ),
        (
            "other world",
            plugins::read(plugins::OTHER_WORLD),
            "does not export",
        ),
        (
            "a later contract version",
            plugins::read(plugins::NEXT_CONTRACT),
            "built against the contract streamfold:reducer@0.2.0",
        ),
        (
            "truncated",
            plugins::read(plugins::USER)[..1000].to_vec(),
            "does not compile",
        ),
    ];
    for (what, bytes, needle) in cases {
        let err = rt
            .register(bytes, RegisterOptions::default())
            .await
            .expect_err(what);
        assert!(err.is_invalid_plugin(), "{what}: {err}");
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    let too_big = runtime(
        &env,
        test_config().limits(Limits::default().component_bytes(1000)),
    )
    .await;
    let err = too_big
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("size limit"), "{err}");
    assert!(
        rt.plugins(None).await.unwrap().is_empty(),
        "nothing refused may be registered"
    );
}

#[tokio::test]
async fn activating_another_version_switches_the_next_replay() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    let good = rt
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let bad = rt
        .register(
            plugins::read(plugins::TRAP),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    assert!(!bad.active);
    seed_user(&env, "1").await;
    rt.state("user", "1", ReplayOptions::default())
        .await
        .unwrap();

    rt.activate("user", &bad.info.digest[..12]).await.unwrap();
    let err = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(err.reducer_failure().is_some_and(|f| f.is_trap()), "{err}");

    // Rollback, by semantic version this time.
    let back = rt.activate("user", &good.info.version).await;
    // Both fixtures may share a version with `user`; fall back to the digest.
    let back = match back {
        Ok(b) => b,
        Err(_) => rt.activate("user", &good.info.digest).await.unwrap(),
    };
    assert_eq!(back.info.digest, good.info.digest);
    let r = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(r.plugin.digest, good.info.digest);

    let list = rt.plugins(Some("user")).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|p| p.active).count(), 1);

    let err = rt.activate("cart", &good.info.digest).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn snapshots_are_used_only_for_their_own_reducer() {
    let env = Env::start().await;
    // Without the state cache, which would stand in for any snapshot once it holds
    // the state.
    let rt = runtime(&env, test_config().state_cache_bytes(0)).await;
    let reg = rt
        .register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "1").await;
    let full = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    let snap = |digest: &str, state: &str| Snapshot {
        state: state.into(),
        revision: 2,
        position: full.position.clone(),
        reducer_digest: digest.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    // Another reducer's snapshot is ignored.
    env.store
        .save_snapshot(
            "user",
            "1",
            &snap(&"0".repeat(64), r#"{"name":"FROM ANOTHER REDUCER"}"#),
        )
        .await
        .unwrap();
    let r = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, full.state);
    assert_eq!(r.snapshot_revision, None);

    // Our own is used (a doctored one proves it), unless snapshots are turned off.
    env.store
        .save_snapshot(
            "user",
            "1",
            &snap(&reg.info.digest, r#"{"name":"FROM SNAPSHOT"}"#),
        )
        .await
        .unwrap();
    let r = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(state_json(&r.state)["name"], "FROM SNAPSHOT");
    assert_eq!(r.snapshot_revision, Some(2));
    assert_eq!(r.events_read, 0);
    let r = rt
        .state("user", "1", ReplayOptions::default().use_snapshots(false))
        .await
        .unwrap();
    assert_eq!(r.state, full.state);

    // A snapshot past the requested point is not used for time travel.
    let r = rt
        .state("user", "1", ReplayOptions::default().at_revision(1))
        .await
        .unwrap();
    assert_eq!(state_json(&r.state)["name"], "Alice");
    assert_eq!(r.snapshot_revision, None);
}

#[tokio::test]
async fn automatic_snapshots_every_n_events() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config().snapshot_every(Some(10))).await;
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "1").await;
    let names: Vec<_> = (0..23)
        .map(|i| ev("NameChanged", json!({"name": format!("n{i}")})))
        .collect();
    append(&env, "user", "1", names).await;

    let first = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert!(first.snapshot_saved);
    assert_eq!(first.revision, 25);
    let second = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(second.snapshot_revision, Some(25));
    assert_eq!(second.events_read, 0);
    assert_eq!(second.state, first.state);
    assert!(!second.snapshot_saved);

    append(
        &env,
        "user",
        "1",
        vec![ev("NameChanged", json!({"name": "tail"}))],
    )
    .await;
    let third = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(third.snapshot_revision, Some(25));
    assert_eq!(third.events_read, 1);
    assert_eq!(state_json(&third.state)["name"], "tail");

    // On demand.
    let snap = rt.snapshot("user", "1").await.unwrap();
    assert_eq!(snap.revision, 26);
    let fourth = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(fourth.snapshot_revision, Some(26));
}

#[tokio::test]
async fn time_travel_by_revision_and_by_instant() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    append(
        &env,
        "user",
        "1",
        vec![ev(
            "UserCreated",
            json!({"id": 1, "name": "Alice", "email": "a@x", "timestamp": "t1"}),
        )],
    )
    .await;
    // Stream ids (and so `as_of`) have millisecond resolution: an instant strictly
    // between the two appends, waited for rather than slept.
    let between = a_millisecond_after(chrono::Utc::now()).await;
    a_millisecond_after(between).await;
    append(
        &env,
        "user",
        "1",
        vec![ev(
            "EmailChanged",
            json!({"email": "b@x", "timestamp": "t2"}),
        )],
    )
    .await;

    let at1 = rt
        .state("user", "1", ReplayOptions::default().at_revision(1))
        .await
        .unwrap();
    assert_eq!(at1.revision, 1);
    assert_eq!(state_json(&at1.state)["email"], "a@x");
    let then = rt
        .state("user", "1", ReplayOptions::default().as_of(between))
        .await
        .unwrap();
    assert_eq!(then.state, at1.state);
    let now = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(state_json(&now.state)["email"], "b@x");

    let err = rt
        .state("user", "1", ReplayOptions::default().at_revision(3))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let long_ago = between - chrono::Duration::days(1);
    let err = rt
        .state("user", "1", ReplayOptions::default().as_of(long_ago))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn an_empty_history_is_not_found() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    rt.register(plugins::read(plugins::USER), RegisterOptions::default())
        .await
        .unwrap();
    let err = rt
        .state("user", "nobody", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = rt
        .state("order", "1", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "no reducer for the type: {err}");
    assert!(err.to_string().contains("active reducer"), "{err}");
}

/// Registers `fixture` as the active `user` reducer, replays, and checks the host
/// still serves a good reducer afterwards, with the stored events untouched.
async fn misbehaving(fixture: &str) -> Error {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    let good = rt
        .register(
            plugins::read(plugins::USER),
            RegisterOptions::default().activate(false),
        )
        .await
        .unwrap();
    rt.register(plugins::read(fixture), RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "1").await;
    let before = env
        .store
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();

    let err = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap_err();
    let failure = err.reducer_failure().expect("a reducer failure");
    assert_eq!(failure.aggregate, "user/1");
    // The fixtures handle only UserCreated, so the host sent a batch of one.
    assert_eq!(
        failure.event,
        Some(FailedEvent::Batch {
            first_revision: 1,
            last_revision: 1
        })
    );
    let text = err.to_string();
    assert!(
        text.contains("user/1") && text.contains(&failure.plugin.digest[..12]),
        "{text}"
    );

    // The host keeps serving, and nothing stored changed.
    rt.activate("user", &good.info.digest).await.unwrap();
    let ok = rt
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(state_json(&ok.state)["email"], "alice.smith@example.com");
    let after = env
        .store
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&before).unwrap(),
        serde_json::to_string(&after).unwrap()
    );
    err
}

#[tokio::test]
async fn the_time_limit_clock_sleeps_while_idle_and_wakes_for_the_next_call() {
    const PATIENCE: Duration = Duration::from_secs(60);
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    // Registering calls the reducer's `info`: the clock runs for that call's limit.
    rt.register(plugins::read(plugins::SPIN), RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "1").await;
    let stopped = || async { (!rt.sandbox().epoch_clock_running()).then_some(()) };
    wait_until("the idle clock to stop", PATIENCE, stopped).await;
    // An endless loop after the idle spell is still stopped by its time limit.
    let err = tokio::time::timeout(PATIENCE, rt.state("user", "1", ReplayOptions::default()))
        .await
        .expect("the loop is interrupted")
        .unwrap_err();
    let f = err.reducer_failure().unwrap();
    assert!(f.is_timeout(), "{err}");
    wait_until("the clock to stop again", PATIENCE, stopped).await;
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_wall_clock_time_limit() {
    let err = misbehaving(plugins::SPIN).await;
    let f = err.reducer_failure().unwrap();
    assert!(f.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("time limit of 300ms (wall-clock)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let err = misbehaving(plugins::BOMB).await;
    let f = err.reducer_failure().unwrap();
    assert!(f.is_out_of_memory(), "{err}");
    assert!(matches!(f.cause, FailureCause::OutOfMemory { limit, .. } if limit == 64 << 20));
}

#[tokio::test]
async fn a_trap_is_reported_as_a_trap() {
    let err = misbehaving(plugins::TRAP).await;
    assert!(err.reducer_failure().unwrap().is_trap(), "{err}");
    assert!(err.to_string().contains("trapped"), "{err}");
}

#[tokio::test]
async fn a_reducer_rejection_names_the_event() {
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    rt.register(plugins::read(plugins::CART), RegisterOptions::default())
        .await
        .unwrap();
    let events = vec![
        ev("CartOpened", json!({"customer": "c-1"})),
        ev(
            "ItemAdded",
            json!({"sku": "A", "name": "Apple", "quantity": 2, "unit_price_cents": 50}),
        ),
        // Not in the reducer's `handles`: skipped, so the batch index is not the page's.
        ev("CouponPrinted", json!({})),
        ev("ItemRemoved", json!({"sku": "NEVER-ADDED"})),
    ];
    let r = env
        .store
        .append("cart", "9", events, ExpectedRevision::NoStream)
        .await
        .unwrap();
    let err = rt
        .state("cart", "9", ReplayOptions::default())
        .await
        .unwrap_err();
    let f = err.reducer_failure().expect("reducer failure");
    assert!(
        matches!(
            &f.cause,
            FailureCause::Rejected {
                reason: RejectionKind::RuleViolation,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        f.event,
        Some(FailedEvent::Event {
            revision: 4,
            event_id: r.event_ids[3].to_string(),
            event_type: "ItemRemoved".into()
        })
    );

    // Invalid data is its own kind.
    env.store
        .append(
            "cart",
            "10",
            vec![ev("CartOpened", json!({"customer": 42}))],
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    let err = rt
        .state("cart", "10", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err.reducer_failure().unwrap().cause,
            FailureCause::Rejected {
                reason: RejectionKind::InvalidData,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn long_histories_are_folded_across_pages() {
    let env = Env::start_with(|c| c.page_size(100)).await;
    let rt = runtime(&env, test_config()).await;
    rt.register(plugins::read(plugins::CART), RegisterOptions::default())
        .await
        .unwrap();
    append(
        &env,
        "cart",
        "big",
        vec![ev("CartOpened", json!({"customer": "c"}))],
    )
    .await;
    for chunk in 0..10 {
        let adds = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                ev("ItemAdded", json!({"sku": format!("s{}", n % 37), "name": "x", "quantity": 1, "unit_price_cents": 3}))
            })
            .collect();
        append(&env, "cart", "big", adds).await;
    }
    let r = rt
        .state("cart", "big", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(r.revision, 1001);
    assert_eq!(r.events_applied, 1001);
    let s = state_json(&r.state);
    assert_eq!(s["item_count"], 1000);
    assert_eq!(s["total_cents"], 3000);
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = || test_config().cache_dir(Some(dir.path().to_path_buf()));
    let bytes = plugins::read(plugins::USER);
    let first = runtime(&env, config()).await;
    let (_, source) = first.load(&bytes).unwrap();
    assert_eq!(source, LoadSource::Compiled);
    let (_, source) = first.load(&bytes).unwrap();
    assert_eq!(source, LoadSource::Memory);
    // A new runtime (as after a restart) finds the compiled code on disk.
    let second = runtime(&env, config()).await;
    let (p, source) = second.load(&bytes).unwrap();
    assert_eq!(source, LoadSource::DiskCache);
    second
        .register(bytes, RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "1").await;
    let r = second
        .state("user", "1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(r.plugin.digest, p.info().digest);
    // A corrupt cache file is recompiled, not trusted. (Replaced, not rewritten in
    // place: compiled code is mapped into memory, and so is never truncated under a
    // running host; the cache itself only ever renames files into place.)
    drop((first, second, p));
    for entry in walk(dir.path()) {
        let tmp = entry.with_extension("tmp");
        std::fs::write(&tmp, b"garbage").unwrap();
        std::fs::rename(&tmp, &entry).unwrap();
    }
    let third = runtime(&env, config()).await;
    let (_, source) = third.load(&plugins::read(plugins::USER)).unwrap();
    assert_eq!(source, LoadSource::Compiled);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn reducers_log_through_the_host() {
    crate::logs::capture();
    let env = Env::start().await;
    let rt = runtime(&env, test_config()).await;
    rt.register(plugins::read(plugins::TRAP), RegisterOptions::default())
        .await
        .unwrap();
    seed_user(&env, "log-5").await;
    // The trap fixture logs an error line, then panics.
    let err = rt
        .state("user", "log-5", ReplayOptions::default())
        .await
        .unwrap_err();
    assert!(err.reducer_failure().is_some_and(|f| f.is_trap()), "{err}");
    let lines = crate::logs::of("user/log-5");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].level, tracing::Level::ERROR, "{lines:?}");
    assert!(
        lines[0]
            .field("plugin")
            .starts_with("fixture-trap@0.1.0 (sha256:"),
        "{lines:?}"
    );
    assert!(!lines[0].field("message").is_empty(), "{lines:?}");
}
