//! Projections run by the runtime against a real Redis, with the `email-domains`
//! example (`plugins/email-domains`): the read model against an offline fold of the
//! same events, live following, failures (stop, skip, resume), two hosts and their
//! lease, blue/green with rollback, rebuilds, and runners killed at random moments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamfold::{
    ExpectedRevision, Limits, NewEvent, OnError, ProjectionChanges, ProjectionOptions,
    ProjectionSummary, RunState, Runtime, RuntimeConfig, ServingChangesPage, VersionStatus,
    text::has_controls,
};
use streamfold_test_support::{Backend, Env, eventually, wait_until};
use streamfold_tests::plugins;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NAME: &str = "email-domains";
const DEADLINE: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(2);

async fn env() -> Env {
    Env::start_with(|c| c.partitions_for("user", 3)).await
}

fn config() -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .projection_lease_ttl(TTL)
        .projection_check_every(Duration::from_millis(100))
        .projection_batch(50)
}

fn runtime(env: &Env) -> Runtime {
    Runtime::new(env.store.clone(), config()).expect("runtime starts")
}

fn component() -> Vec<u8> {
    plugins::read(plugins::path("email-domains"))
}

/// The same component with a custom section appended: another digest, so another
/// version, folding exactly alike.
fn component_v2() -> Vec<u8> {
    let mut bytes = component();
    let name = b"streamfold-test";
    let payload = b"v2";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// Runs `run_projections` in a task until stopped or aborted.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<streamfold::Result<()>>,
}

fn run(rt: &Runtime) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let rt = rt.clone();
    let join = tokio::spawn(async move {
        rt.run_projections(async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        stop: Some(tx),
        join,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        (&mut self.join).await.expect("joined").expect("ran");
    }

    /// The in-process kill -9: the task (and its runners) stop wherever they are.
    async fn kill(self) {
        self.join.abort();
        let _ = self.join.await;
    }
}

/// A user event: (type, email), `None` for no email at all.
async fn append(env: &Env, id: &str, event_type: &str, email: Option<&str>) {
    let data = match email {
        Some(e) => json!({"email": e, "name": id}),
        None => json!({"name": id}),
    };
    env.store
        .append(
            "user",
            id,
            vec![NewEvent::new(event_type, &data)],
            ExpectedRevision::Any,
        )
        .await
        .expect("append");
}

/// The offline fold: what `email-domains` must hold after these events (per user,
/// in order; events with no usable email are skipped, as the dead-letter policy
/// leaves them).
#[derive(Default, Clone)]
struct Fold {
    users: BTreeMap<String, String>,
}

impl Fold {
    fn apply(&mut self, id: &str, email: Option<&str>) {
        if let Some((_, d)) = email.and_then(|e| e.rsplit_once('@'))
            && !d.is_empty()
        {
            self.users.insert(id.to_owned(), d.to_lowercase());
        }
    }

    fn docs(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut domains: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (id, d) in &self.users {
            out.insert(format!("user/{id}"), json!({"domain": d}));
            domains.entry(d).or_default().insert(id);
        }
        for (d, ids) in domains {
            out.insert(
                format!("domain/{d}"),
                json!({"domain": d, "users": ids.len(), "user_ids": ids.iter().collect::<Vec<_>>()}),
            );
        }
        out
    }
}

/// Appends a deterministic mix of creations and email changes for users
/// `from..to`, recording them in `fold`.
async fn seed(env: &Env, fold: &mut Fold, from: usize, to: usize) -> usize {
    let mut n = 0;
    for i in from..to {
        let id = format!("u{i}");
        let email = format!("{id}@d{}.example", i % 7);
        append(env, &id, "UserCreated", Some(&email)).await;
        fold.apply(&id, Some(&email));
        n += 1;
        if i % 3 == 0 {
            let email = format!("{id}@D{}.Example", (i + 2) % 5);
            append(env, &id, "EmailChanged", Some(&email)).await;
            fold.apply(&id, Some(&email));
            n += 1;
        }
    }
    n
}

/// The serving read model, all of it (`None` before any version serves).
async fn model(rt: &Runtime) -> Option<BTreeMap<String, Value>> {
    model_of(rt, NAME).await
}

async fn model_of(rt: &Runtime, name: &str) -> Option<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = rt
            .projection_docs(name, "", after.as_deref(), 1000)
            .await
            .ok()?;
        for (k, v) in page.docs {
            out.insert(k, serde_json::from_str(&v).expect("documents are JSON"));
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Some(out),
        }
    }
}

async fn wait_model(rt: &Runtime, what: &str, expected: &BTreeMap<String, Value>) {
    wait_until(what, DEADLINE, || async {
        (model(rt).await.as_ref() == Some(expected)).then_some(())
    })
    .await;
}

async fn status(rt: &Runtime) -> ProjectionSummary {
    rt.projection_status(NAME).await.expect("status")
}

async fn wait_status(
    rt: &Runtime,
    what: &str,
    check: impl Fn(&ProjectionSummary) -> bool,
) -> ProjectionSummary {
    wait_until(what, DEADLINE, || async {
        let s = status(rt).await;
        check(&s).then_some(s)
    })
    .await
}

/// The feed's next page that `check` accepts (within the deadline).
async fn next_page(
    feed: &mut ProjectionChanges,
    what: &str,
    check: impl Fn(&ServingChangesPage) -> bool,
) -> ServingChangesPage {
    let started = Instant::now();
    loop {
        let page = feed.next().await.unwrap();
        if check(&page) {
            return page;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
    }
}

fn active(s: &ProjectionSummary) -> &VersionStatus {
    s.active_status().expect("an active version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_fold_the_categories_then_follow_live() {
    let env = env().await;
    let rt = runtime(&env);
    let reg = rt
        .register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    assert_eq!(reg.info.name, NAME);
    assert!(reg.active);
    assert!(
        !reg.serving,
        "nothing serves before the first version caught up"
    );

    let mut fold = Fold::default();
    let total = seed(&env, &mut fold, 0, 120).await;
    let running = run(&rt);
    wait_model(
        &rt,
        "the read model to equal the offline fold",
        &fold.docs(),
    )
    .await;
    let twice = rt.run_projections(async {}).await.unwrap_err();
    assert!(
        twice.is_invalid_input(),
        "one run_projections per runtime: {twice}"
    );
    let s = wait_status(&rt, "the version to be live", |s| {
        s.serving_status()
            .is_some_and(|v| v.state == RunState::Live && v.events == total as u64)
    })
    .await;
    assert_eq!(s.serving.as_deref(), Some(reg.info.digest.as_str()));
    let v = active(&s);
    assert!(v.serving && v.caught_up && v.failure.is_none());
    assert_eq!(v.lag_ms, 0);
    assert_eq!(v.lag_events, Some(0));
    assert_eq!(v.position.len(), 3, "a position for every partition");
    assert_eq!(
        v.runner.as_ref().map(|l| l.holder.as_str()),
        Some(rt.projection_holder())
    );

    // Live: a change feed from now, then new events appear within milliseconds.
    let mut feed = rt
        .watch_projection(NAME, None, 100, Duration::from_secs(5))
        .await
        .unwrap();
    let started = Instant::now();
    append(&env, "u1000", "UserCreated", Some("new@live.example")).await;
    fold.apply("u1000", Some("new@live.example"));
    let doc = wait_until("the live event to be folded", DEADLINE, || async {
        rt.projection_doc(NAME, "user/u1000").await.unwrap()
    })
    .await;
    // How long it took is the benchmark's business (./dev bench --only projections);
    // a test asserts no wall-clock figure.
    let _ = started;
    assert_eq!(
        serde_json::from_str::<Value>(&doc.doc).unwrap(),
        json!({"domain": "live.example"})
    );
    let page = feed.next().await.unwrap();
    let keys: BTreeSet<&str> = page.changes.iter().map(|c| c.change.key.as_str()).collect();
    assert!(keys.contains("user/u1000"), "{page:?}");
    assert!(page.changes[0].position.starts_with(&reg.info.digest));

    seed(&env, &mut fold, 1000, 1040).await;
    wait_model(&rt, "live events to be folded", &fold.docs()).await;
    running.stop().await;
    let s = status(&rt).await;
    assert_eq!(active(&s).state, RunState::Stopped, "the lease is released");
    assert_eq!(active(&s).lag_events, Some(0));
    // Nothing runs it now: what is appended is its lag, in events.
    let behind = seed(&env, &mut fold, 2000, 2010).await;
    assert!(behind > 0);
    let s = status(&rt).await;
    assert_eq!(active(&s).lag_events, Some(behind as u64), "{s:?}");
    assert!(!active(&s).caught_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_stops_the_projection_and_skip_dead_letters_it() {
    let env = env().await;
    let rt = runtime(&env);
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 20).await;
    let running = run(&rt);
    wait_model(&rt, "the first events", &fold.docs()).await;
    let served = fold.docs();

    append(&env, "u-bad", "UserCreated", None).await;
    append(&env, "u-bad", "EmailChanged", Some("fine@after.example")).await;
    fold.apply("u-bad", Some("fine@after.example"));
    let s = wait_status(&rt, "the projection to fail", |s| {
        active(s).state == RunState::Failed
    })
    .await;
    let failure = active(&s).failure.clone().unwrap();
    let poison = failure.position.clone();
    assert!(!poison.is_empty());
    assert_eq!(failure.aggregate_type, "user");
    assert_eq!(failure.aggregate_id, "u-bad");
    assert_eq!(failure.event_type, "UserCreated");
    assert!(failure.error.contains("email"), "{}", failure.error);
    assert_eq!(
        model(&rt).await.unwrap(),
        served,
        "reads keep the last commit"
    );

    // Resume alone retries the same event: it fails again (a later failure).
    rt.resume_projection(NAME).await.unwrap();
    wait_status(&rt, "the retry to fail again", |s| {
        active(s)
            .failure
            .as_ref()
            .is_some_and(|f| f.at_ms > failure.at_ms && f.position == poison)
    })
    .await;
    // With skip it goes to the dead letters and the rest flows.
    let reg = rt
        .activate_projection(NAME, "0.1.0", Some(OnError::Skip))
        .await
        .unwrap();
    assert!(reg.active && reg.serving);
    rt.resume_projection(NAME).await.unwrap();
    wait_model(&rt, "the events after the poison", &fold.docs()).await;
    let s = wait_status(&rt, "live again", |s| active(s).state == RunState::Live).await;
    assert_eq!(s.on_error, OnError::Skip);
    let v = active(&s);
    assert!(v.failure.is_none());
    assert_eq!(v.dead_letters, 1);
    let dead = rt
        .projection_dead_letters(NAME, None, None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].letter.event.position, poison);
    assert_eq!(dead[0].letter.event.aggregate_id, "u-bad");
    assert!(dead[0].letter.error.contains("email"));

    // More poison while skipping: dead-lettered as it comes.
    append(&env, "u-bad2", "UserCreated", Some("no-domain@")).await;
    seed(&env, &mut fold, 20, 30).await;
    wait_model(&rt, "events around a second poison", &fold.docs()).await;
    wait_status(&rt, "two dead letters", |s| active(s).dead_letters == 2).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_runs_a_version_and_another_takes_over_when_it_dies() {
    let env = env().await;
    let a = runtime(&env);
    let b = runtime(&env);
    assert_ne!(a.projection_holder(), b.projection_holder());
    a.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 60).await;
    let run_a = run(&a);
    let run_b = run(&b);
    wait_model(&a, "the read model", &fold.docs()).await;
    let s = wait_status(&a, "a runner", |s| active(s).runner.is_some()).await;
    let holder = active(&s).runner.clone().unwrap().holder;
    let (holder_run, other, other_rt) = if holder == a.projection_holder() {
        (run_a, run_b, b.clone())
    } else {
        assert_eq!(holder, b.projection_holder());
        (run_b, run_a, a.clone())
    };
    // Only the holder runs it: the lease stays with it while both run.
    tokio::time::sleep(TTL).await;
    let s = status(&a).await;
    assert_eq!(active(&s).runner.as_ref().unwrap().holder, holder);

    holder_run.kill().await;
    seed(&env, &mut fold, 60, 90).await;
    // (Within the lease time on a quiet machine; a test asserts no wall-clock
    // figure, so it waits with the usual deadline.)
    wait_model(&a, "the other host to take over", &fold.docs()).await;
    let s = status(&a).await;
    assert_eq!(
        active(&s).runner.as_ref().unwrap().holder,
        other_rt.projection_holder()
    );
    let events = active(&s).events;
    assert_eq!(events, fold_events(&env).await, "every event applied once");
    other.stop().await;
}

/// How many events the `user` category holds (what a version that folded all of
/// them exactly once counts).
async fn fold_events(env: &Env) -> u64 {
    let mut n = 0;
    for s in env.store.projection_sources(&["user"]).await.unwrap() {
        n += env.xlen(&s.key).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_builds_beside_the_serving_one_then_reads_switch_and_roll_back() {
    let env = env().await;
    let rt = runtime(&env);
    let v1 = rt
        .register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 300).await;
    let running = run(&rt);
    wait_model(&rt, "v1", &fold.docs()).await;
    wait_status(&rt, "v1 serving", |s| {
        s.serving.as_deref() == Some(v1.info.digest.as_str())
    })
    .await;

    let mut feed = rt
        .watch_projection(NAME, None, 100, Duration::from_millis(100))
        .await
        .unwrap();
    // Clients read all along: a domain whose users do not change in this test must
    // read the same whole document before, during and after the switch, never a
    // half-built one and never a failure.
    let (key, whole) = fold
        .docs()
        .into_iter()
        .filter(|(k, _)| k.starts_with("domain/"))
        .max_by_key(|(_, d)| d["users"].as_u64())
        .expect("a domain");
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (rt, key, reading) = (rt.clone(), key.clone(), reading.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            let mut versions = std::collections::BTreeSet::new();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let d = rt
                    .projection_doc(NAME, &key)
                    .await
                    .unwrap_or_else(|e| panic!("read {reads} failed: {e}"))
                    .unwrap_or_else(|| panic!("read {reads}: {key} is missing"));
                let doc: Value = serde_json::from_str(&d.doc).unwrap();
                assert_eq!(doc, whole, "read {reads} of {key} from {}", d.vid);
                versions.insert(d.vid);
                reads += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (reads, versions)
        })
    };
    let v2 = rt
        .register_projection(component_v2(), ProjectionOptions::default())
        .await
        .unwrap();
    assert_ne!(v1.info.digest, v2.info.digest);
    assert!(v2.active && !v2.serving);
    let s = status(&rt).await;
    assert_eq!(s.serving.as_deref(), Some(v1.info.digest.as_str()));
    assert_eq!(s.status.len(), 2, "serving and active");
    // The serving version keeps following while the new one builds.
    append(&env, "u-during", "UserCreated", Some("x@during.example")).await;
    fold.apply("u-during", Some("x@during.example"));
    wait_status(&rt, "reads to switch to v2", |s| {
        s.serving.as_deref() == Some(v2.info.digest.as_str())
    })
    .await;
    wait_model(&rt, "v2's read model", &fold.docs()).await;
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let (reads, versions) = reader.await.expect("every read was whole");
    assert!(reads > 0);
    assert!(
        versions.contains(&v2.info.digest),
        "reads came from the new version after the switch: {versions:?}"
    );
    // A change feed of the serving version says that reads switched, then goes on
    // with the new version's changes.
    let page = next_page(&mut feed, "the feed to see the switch", |p| p.switched).await;
    assert_eq!(page.vid, v2.info.digest);
    assert!(page.missed);
    append(&env, "u-after", "UserCreated", Some("y@after.example")).await;
    fold.apply("u-after", Some("y@after.example"));
    let page = next_page(&mut feed, "a change of v2", |p| !p.changes.is_empty()).await;
    assert!(page.changes[0].position.starts_with(&v2.info.digest));
    assert!(!page.switched);
    let s = status(&rt).await;
    assert_eq!(s.versions.len(), 2, "the old version is kept");
    let refused = rt
        .remove_projection(NAME, &v2.info.digest)
        .await
        .unwrap_err();
    assert!(refused.is_invalid_input(), "{refused}");

    // Rollback: v1 catches up from its checkpoint, then serves again.
    seed(&env, &mut fold, 300, 320).await;
    rt.activate_projection(NAME, &v1.info.digest[..12], None)
        .await
        .unwrap();
    wait_status(&rt, "reads to switch back to v1", |s| {
        s.serving.as_deref() == Some(v1.info.digest.as_str())
    })
    .await;
    wait_model(&rt, "v1 caught up", &fold.docs()).await;
    // v2 neither serves nor is active now: it can go.
    wait_status(&rt, "v2 to stop", |s| s.status.len() == 1).await;
    rt.remove_projection(NAME, &v2.info.digest).await.unwrap();
    let s = status(&rt).await;
    assert_eq!(s.versions.len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_a_version_gives_the_same_read_model() {
    let env = env().await;
    let rt = runtime(&env);
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 150).await;
    let running = run(&rt);
    wait_model(&rt, "the live run", &fold.docs()).await;
    let before = model(&rt).await.unwrap();
    let total = fold_events(&env).await;
    wait_status(&rt, "all events counted", |s| active(s).events == total).await;

    let commits_before = env
        .store
        .projection(NAME, active(&status(&rt).await).vid.as_str())
        .unwrap()
        .status()
        .await
        .unwrap()
        .commits;
    rt.rebuild_projection(NAME).await.unwrap();
    let s = wait_status(&rt, "the rebuild to finish", |s| {
        active(s).events == total && active(s).state == RunState::Live
    })
    .await;
    assert_eq!(model(&rt).await.unwrap(), before);
    let commits_after = env
        .store
        .projection(NAME, &active(&s).vid)
        .unwrap()
        .status()
        .await
        .unwrap()
        .commits;
    assert!(commits_after <= commits_before + 10, "counters were reset");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_killed_at_random_moments_never_apply_an_event_twice_or_skip_one() {
    let env = env().await;
    let rt = runtime(&env);
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let writer = {
        let store = env.store.clone();
        tokio::spawn(async move {
            let mut fold = Fold::default();
            for i in 0..400usize {
                let id = format!("w{}", i % 50);
                let email = format!("{id}@k{}.example", (i * 7) % 11);
                let kind = if i < 50 {
                    "UserCreated"
                } else {
                    "EmailChanged"
                };
                store
                    .append(
                        "user",
                        &id,
                        vec![NewEvent::new(kind, &json!({ "email": email }))],
                        ExpectedRevision::Any,
                    )
                    .await
                    .expect("append");
                fold.apply(&id, Some(&email));
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            fold
        })
    };
    let mut seed_rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..8 {
        seed_rng ^= seed_rng << 13;
        seed_rng ^= seed_rng >> 7;
        seed_rng ^= seed_rng << 17;
        let running = run(&rt);
        // A random moment to kill it at (this is the randomness, not a wait).
        tokio::time::sleep(Duration::from_millis(30 + seed_rng % 400)).await;
        running.kill().await;
    }
    let fold = writer.await.unwrap();
    let running = run(&rt);
    wait_model(&rt, "the read model after the kills", &fold.docs()).await;
    let total = fold_events(&env).await;
    assert_eq!(total, 400);
    let s = wait_status(&rt, "every event counted", |s| active(s).events >= total).await;
    assert_eq!(active(&s).events, total, "no event applied twice");
    assert_eq!(model(&rt).await.unwrap(), fold.docs());
    running.stop().await;
}

async fn hostile(env: &Env, event_type: &str) {
    env.store
        .append(
            "hostile",
            "h1",
            vec![NewEvent::new(event_type, &json!({}))],
            ExpectedRevision::Any,
        )
        .await
        .expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_spins_bombs_or_floods_is_stopped_and_the_host_keeps_serving() {
    let env = env().await;
    let config = config().limits(
        Limits::default()
            .call_timeout(Duration::from_millis(300))
            .memory_bytes(64 << 20),
    );
    let rt = Runtime::new(env.store.clone(), config).unwrap();
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let reg = rt
        .register_projection(
            plugins::read(plugins::path("projection-hostile")),
            ProjectionOptions::default(),
        )
        .await
        .unwrap();
    let name = reg.info.name.clone();
    let version = env.store.projection(&name, &reg.info.digest).unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 10).await;
    for t in ["Count", "Count", "Count", "Spin", "Count"] {
        hostile(&env, t).await;
    }
    let running = run(&rt);
    let s = wait_until("the spinning projection to fail", DEADLINE, || async {
        let s = rt.projection_status(&name).await.unwrap();
        (active(&s).state == RunState::Failed).then_some(s)
    })
    .await;
    let failure = active(&s).failure.clone().unwrap();
    assert_eq!(failure.event_type, "Spin");
    assert_eq!(failure.aggregate_id, "h1");
    assert_eq!(version.get("count").await.unwrap().as_deref(), Some("3"));
    // The host keeps serving the other projection, live.
    wait_model(&rt, "email-domains beside it", &fold.docs()).await;

    // Skip them all: every bad event is dead-lettered, the rest is folded.
    rt.activate_projection(&name, &reg.info.digest, Some(OnError::Skip))
        .await
        .unwrap();
    rt.resume_projection(&name).await.unwrap();
    for t in [
        "Bomb", "Count", "Flood", "Count", "Refuse", "Count", "NotJson", "Count",
    ] {
        hostile(&env, t).await;
    }
    seed(&env, &mut fold, 10, 20).await;
    let s = wait_until("the bad events to be dead-lettered", DEADLINE, || async {
        let s = rt.projection_status(&name).await.unwrap();
        (active(&s).state == RunState::Live && active(&s).dead_letters == 5).then_some(s)
    })
    .await;
    assert!(active(&s).failure.is_none());
    assert_eq!(version.get("count").await.unwrap().as_deref(), Some("8"));
    let dead = version.dead_letters(None, 10).await.unwrap();
    let types: Vec<&str> = dead
        .iter()
        .map(|d| d.letter.event.event_type.as_str())
        .collect();
    assert_eq!(types, ["Spin", "Bomb", "Flood", "Refuse", "NotJson"]);
    for d in &dead {
        assert!(!has_controls(&d.letter.error), "{:?}", d.letter.error);
        assert!(d.letter.error.len() < 4_100, "bounded");
    }
    wait_model(&rt, "email-domains still live", &fold.docs()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_trimmed_before_the_projection_started_is_reported() {
    let env = Env::start_with(|c| c.category_max_len(10)).await;
    let rt = runtime(&env);
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 400).await;
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let running = run(&rt);
    let s = wait_status(&rt, "the version to be live", |s| {
        s.serving_status()
            .is_some_and(|v| v.state == RunState::Live)
    })
    .await;
    let trimmed = active(&s).trimmed.clone().expect("the trim is reported");
    assert!(trimmed.contains("user"), "{trimmed}");
    // Events from now on are held: nothing the version has not folded is trimmed.
    seed(&env, &mut fold, 400, 420).await;
    wait_until("the new users", DEADLINE, || async {
        rt.projection_doc(NAME, "user/u419").await.unwrap()
    })
    .await;
    running.stop().await;
}

/// Redis restarted from a snapshot taken before the version was built: the read
/// model, checkpoint and pointers go back together, and the runner (whose lease is
/// gone with them) builds it again, exactly. Single server only ("restart").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_runner_goes_on_exactly() {
    let mut env = env().await;
    if env.backend() == Backend::Cluster {
        return;
    }
    let rt = runtime(&env);
    rt.register_projection(component(), ProjectionOptions::default())
        .await
        .unwrap();
    let mut fold = Fold::default();
    seed(&env, &mut fold, 0, 200).await;
    let mut con = env.raw().await;
    let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    let running = run(&rt);
    wait_model(&rt, "the first build", &fold.docs()).await;

    env.redis_mut().start_again().unwrap();
    eventually(100, Duration::from_millis(100), || {
        env.store.projection_sources(&["user"])
    })
    .await
    .unwrap();
    wait_model(&rt, "the build after the restart", &fold.docs()).await;
    seed(&env, &mut fold, 200, 220).await;
    wait_model(&rt, "live after the restart", &fold.docs()).await;
    let total = fold_events(&env).await;
    let s = wait_status(&rt, "every event counted", |s| active(s).events >= total).await;
    assert_eq!(active(&s).events, total, "no event applied twice");
    running.stop().await;
}
