//! Projections (issue 20): events per second through the `email-domains` projection
//! (Rust, `email-domains-js` in JavaScript and `email-domains-py` in Python) over a
//! `user` category, against a
//! hand-written redis-py read model in the seed's style over the same events in the
//! same run, and the latency from an append to its change in the read model.
//!
//! The events: `N` (20,000 quick, 100,000 full) `user` events of [`USERS`] users,
//! appended once, before any clock, one at a time (32 in flight) in rounds over the
//! users: `UserCreated` with `u{i}@d{k}.example`, then `EmailChanged` moves between
//! [`DOMAINS`] domains (every event changes its user's domain). A projection's
//! runner folds a category in this process, and `run_projections` runs every
//! projection of its store's registry, so each projection has a store (key prefix)
//! and a runtime of its own, [`PREFIX_RUST`], [`PREFIX_JS`] and [`PREFIX_PY`], with the
//! same events appended to each (default configuration: one category partition, batches of
//! `projection_batch` = 200 events).
//!
//! - throughput, per round and variant, alternating (1 warm-up round, then at most
//!   [`MAX_ROUNDS`] measured):
//!   - Rust, JavaScript, Python: `Runtime::rebuild_projection` (untimed, no runner running:
//!     documents and checkpoint dropped), then the clock runs from
//!     `run_projections`' start until the version's status (one script call,
//!     polled every [`POLL`]) counts all `N` events folded; then the runner stops.
//!   - redis-py (`bench/projections_reference.py`, timed inside Python): one process,
//!     `XREAD COUNT 1000 STREAMS <partition keys> <positions>` in a loop, and per
//!     event the same documents with `GET`/`SET`/`DEL` on keys of its own, one
//!     command at a time as the seed writes its code, then `SET pos` per page (its
//!     keys of the last build deleted before, untimed).
//!
//!   Every build's documents are checked against the model computed here from the
//!   events appended (the redis-py one's too): a difference stops the benchmark.
//!   Ratios are per round (our rate / redis-py's). The CPU each variant used per
//!   event (this process or Python, and redis-server) and the Redis commands that
//!   took most of Redis' time are reported too.
//! - latency: the Rust projection live (`run_projections` running, caught up), one
//!   `Runtime::watch_projection` change feed, and the bench appending `EmailChanged`
//!   moves of existing users at 1,000 events/s through `EventStore::append` (a tokio
//!   interval, `MissedTickBehavior::Burst`, as in the `groups` section); each event's
//!   latency is from just before its append to the moment the feed hands out the
//!   change of its `user/<id>` document (committed, hence visible to reads).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use streamfold::{
    ChangeOp, EventStore, ExpectedRevision, NewEvent, ProjectionOptions, ProjectionVersion,
    Runtime, StoreConfig,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::data::TYPE;
use crate::external::PyServe;
use crate::probe::{RedisMark, Side, Sides, ns, process_cpu, quantile};
use crate::report::{Goal, Report, Row, fmt_num, fmt_ratio};
use crate::stats::{Stat, alternate};
use crate::{Ctx, faster, fmt_count, row, times};

/// The Rust projection's store (key prefix).
const PREFIX_RUST: &str = "bench-proj-rs";
/// The JavaScript projection's store.
const PREFIX_JS: &str = "bench-proj-js";
/// The Python projection's store.
const PREFIX_PY: &str = "bench-proj-py";
/// The redis-py read model's keys.
const PREFIX_REF: &str = "bench-proj-ref:";
/// Users the events go to, in turn.
const USERS: u64 = 10_000;
/// E-mail domains the users move between.
const DOMAINS: u64 = 10;
/// Appends in flight while the events are written.
const PREFILL_IN_FLIGHT: usize = 32;
/// How often a build's status is read (one script call of ~100 µs in Redis: often
/// enough for a build of seconds, rarely enough not to weigh on it).
const POLL: Duration = Duration::from_millis(10);
/// A build that takes longer than this is an error.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// Measured rounds of the builds, at most (full mode's 7 would take ~15 minutes:
/// the redis-py loop folds ~1,000-2,000 events a second).
const MAX_ROUNDS: usize = 3;
/// Appends per second of the latency benchmark.
const LAT_RATE: u64 = 1000;
/// How long the latency benchmark waits for the last changes after the last append.
const LAT_DRAIN: Duration = Duration::from_secs(5);

/// One way of building the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Rust,
    Js,
    /// The Python projection, `email-domains-py`.
    Py,
    /// The redis-py reference loop.
    Python,
}

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::Rust => "projections.build.rust",
            Variant::Js => "projections.build.js",
            Variant::Py => "projections.build.py",
            Variant::Python => "projections.build.redis-py",
        }
    }
    fn cpu_key(self) -> String {
        self.key().replace("build", "cpu")
    }
}

/// A projection with a store and a runtime of its own.
struct Built {
    rt: Runtime,
    name: String,
    version: ProjectionVersion,
}

/// The `email-domains` components beside the tests crate's `user.wasm`, if built.
fn component(name: &str) -> Option<std::path::PathBuf> {
    let dir = Path::new(streamfold_tests::plugins::USER).parent()?;
    let p = dir.join(format!("{name}.wasm"));
    p.is_file().then_some(p)
}

/// Event `revision` (1-based) of user `i`: its type, data and domain index.
fn user_event(i: u64, revision: u64) -> (NewEvent, u64) {
    let k = (i + 3 * revision) % DOMAINS;
    let email = format!("u{i}@d{k}.example");
    let ts = format!(
        "2026-12-07T10:{:02}:{:02}.000000",
        (revision / 60) % 60,
        revision % 60
    );
    let (ty, data) = if revision == 1 {
        (
            "UserCreated",
            json!({"id": format!("u{i}"), "name": format!("User {i}"), "email": email, "timestamp": ts}),
        )
    } else {
        ("EmailChanged", json!({"email": email, "timestamp": ts}))
    };
    let event = NewEvent {
        event_id: None,
        event_type: ty.to_owned(),
        data: data.to_string(),
        timestamp: None,
        version: None,
    };
    (event, k)
}

/// The read model after `per_user` events of every user, computed here.
fn expected_model(per_user: u64) -> BTreeMap<String, Value> {
    let mut by_domain: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for i in 0..USERS {
        let (_, k) = user_event(i, per_user);
        out.insert(
            format!("user/u{i}"),
            json!({"domain": format!("d{k}.example")}),
        );
        by_domain.entry(k).or_default().push(format!("u{i}"));
    }
    for (k, mut ids) in by_domain {
        ids.sort();
        let domain = format!("d{k}.example");
        out.insert(
            format!("domain/{domain}"),
            json!({"domain": domain, "users": ids.len(), "user_ids": ids}),
        );
    }
    out
}

/// Appends `per_user` events to each of [`USERS`] users, in rounds over the users.
async fn prefill(store: &EventStore, per_user: u64) -> Result<()> {
    futures::stream::iter(0..per_user * USERS)
        .map(|j| async move {
            let i = j % USERS;
            let revision = j / USERS + 1;
            let (event, _) = user_event(i, revision);
            store
                .append(
                    TYPE,
                    &format!("u{i}"),
                    vec![event],
                    ExpectedRevision::Exact(revision - 1),
                )
                .await
        })
        .buffered(PREFILL_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Every document of a version, parsed.
async fn documents(version: &ProjectionVersion) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = version.page("", after.as_deref(), 1000).await?;
        for (k, v) in page.docs {
            let v: Value = serde_json::from_str(&v).with_context(|| format!("document {k}"))?;
            out.insert(k, v);
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Ok(out),
        }
    }
}

/// The redis-py read model's documents (its position key left out).
async fn reference_documents(store: &EventStore) -> Result<BTreeMap<String, Value>> {
    let mut con = store.connection();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX_REF}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.retain(|k| k != &format!("{PREFIX_REF}pos"));
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(chunk).query_async(&mut con).await?;
        for (k, v) in chunk.iter().zip(values) {
            let Some(v) = v else { continue };
            let v: Value = serde_json::from_str(&v).with_context(|| format!("key {k}"))?;
            out.insert(k[PREFIX_REF.len()..].to_owned(), v);
        }
    }
    Ok(out)
}

/// Fails loudly when a read model is not the expected one.
fn check_model(
    what: &str,
    got: &BTreeMap<String, Value>,
    want: &BTreeMap<String, Value>,
) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    let first = want
        .iter()
        .find(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: want {v}, got {:?}", got.get(k)))
        .unwrap_or_default();
    bail!(
        "{what}: the read model differs from the expected one ({} documents, expected {}; {missing} missing, {extra} extra; first difference {first})",
        got.len(),
        want.len()
    )
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let per_user: u64 = if p.mode == "full" { 10 } else { 2 };
    let total = per_user * USERS;
    let expected = expected_model(per_user);

    let Some(rust_wasm) = component("email-domains") else {
        ctx.note("projections: no built email-domains component beside the tests crate's user.wasm: the section is skipped".to_owned());
        return Ok(Vec::new());
    };
    let js_wasm = component("email-domains-js");
    if js_wasm.is_none() {
        ctx.note("projections: no built email-domains-js component (./dev setup builds the JavaScript toolchain): its rows are missing".to_owned());
    }
    let py_wasm = component("email-domains-py");
    if py_wasm.is_none() {
        ctx.note("projections: no built email-domains-py component (./dev setup builds the Python toolchain): its rows are missing".to_owned());
    }

    let t = Instant::now();
    let rust_store =
        EventStore::connect(&ctx.url, StoreConfig::default().prefix(PREFIX_RUST)).await?;
    prefill(&rust_store, per_user).await?;
    let prefill_secs = t.elapsed().as_secs_f64();
    let rust = setup(ctx, rust_store.clone(), &rust_wasm).await?;
    let js = match &js_wasm {
        Some(path) => Some(prepared(ctx, PREFIX_JS, per_user, path).await?),
        None => None,
    };
    let py = match &py_wasm {
        Some(path) => Some(prepared(ctx, PREFIX_PY, per_user, path).await?),
        None => None,
    };
    let keys: Vec<String> = (0..rust_store.config().partitions_of(TYPE))
        .map(|p| rust_store.category_key(TYPE, p))
        .collect::<std::result::Result<_, _>>()?;
    let prefill_note = format!(
        "{} events appended one at a time ({PREFILL_IN_FLIGHT} in flight) in {:.1} s per store; {} category partition(s)",
        fmt_count(total),
        prefill_secs,
        keys.len()
    );

    let mut python = match &ctx.python {
        Some(py) => match RefPython::start(py, &ctx.url).await {
            Ok(p) => Some(p),
            Err(e) => {
                ctx.note(format!(
                    "projections: the redis-py reference (bench/projections_reference.py) did not start ({e:#}): its rows and the ratios are missing"
                ));
                None
            }
        },
        None => {
            ctx.note("projections: no Python with redis-py (run through `./dev bench`, or pass --python): the redis-py reference's rows and the ratios are missing".to_owned());
            None
        }
    };

    let mut rows = throughput(
        ctx,
        &rust,
        js.as_ref(),
        py.as_ref(),
        python.as_mut(),
        &keys,
        total,
        &expected,
        &prefill_note,
    )
    .await?;
    if let Some(p) = python {
        p.stop().await;
    }
    rows.extend(latency(ctx, &rust, &rust_store, per_user, total).await?);
    Ok(rows)
}

/// A store of its own (`prefix`) with the events appended, and the component at
/// `path` registered there.
async fn prepared(ctx: &Ctx, prefix: &str, per_user: u64, path: &Path) -> Result<Built> {
    let store = EventStore::connect(&ctx.url, StoreConfig::default().prefix(prefix)).await?;
    prefill(&store, per_user).await?;
    setup(ctx, store, path).await
}

/// Registers (and activates) the component in the store's registry, on a runtime of
/// its own.
async fn setup(ctx: &Ctx, store: EventStore, path: &Path) -> Result<Built> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    eprintln!(
        "  registering {} ({} KiB; compiled once, then cached in target/bench/cache)",
        path.display(),
        bytes.len() / 1024
    );
    let rt = Runtime::new(
        store.clone(),
        ctx.runtime_config(Some(ctx.cache_dir.clone())),
    )?;
    let reg = rt
        .register_projection(bytes, ProjectionOptions::default())
        .await?;
    let version = store.projection(&reg.info.name, &reg.info.digest)?;
    Ok(Built {
        rt,
        name: reg.info.name,
        version,
    })
}

/// One timed build of a projection from position 0: seconds, and events per commit.
async fn build(b: &Built, total: u64) -> Result<(f64, f64)> {
    b.rt.rebuild_projection(&b.name).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let t = Instant::now();
    let rt = b.rt.clone();
    let running = tokio::spawn(async move {
        rt.run_projections(async move {
            let _ = stopped.await;
        })
        .await
    });
    let outcome = async {
        loop {
            let s = b.version.status().await?;
            if let Some(f) = s.failure {
                bail!("projection {} failed: {f:?}", b.name);
            }
            if s.events >= total {
                return Ok((
                    t.elapsed().as_secs_f64(),
                    s.events as f64 / s.commits.max(1) as f64,
                ));
            }
            if t.elapsed() > ROUND_TIMEOUT {
                bail!(
                    "projection {} folded {} of {total} events in {ROUND_TIMEOUT:?}",
                    b.name,
                    s.events
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    .await;
    let _ = stop.send(());
    running.await??;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn throughput(
    ctx: &Ctx,
    rust: &Built,
    js: Option<&Built>,
    py: Option<&Built>,
    python: Option<&mut RefPython>,
    keys: &[String],
    total: u64,
    expected: &BTreeMap<String, Value>,
    prefill_note: &str,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let rounds = p.rounds.min(MAX_ROUNDS);
    let mut variants = vec![Variant::Rust];
    if js.is_some() {
        variants.push(Variant::Js);
    }
    if py.is_some() {
        variants.push(Variant::Py);
    }
    if python.is_some() {
        variants.push(Variant::Python);
    }
    let has_python = python.is_some();
    let store = rust.rt.store();
    let sides = Sides::default();
    let python = tokio::sync::Mutex::new(python);
    let (sides_ref, python_ref) = (&sides, &python);
    let s = alternate(&variants, p.warmup, rounds, |v, round| async move {
        if v == Variant::Python {
            // Its keys of the last build go first, outside the figures.
            let mut py = python_ref.lock().await;
            py.as_mut()
                .context("no redis-py reference")?
                .clear()
                .await?;
        }
        let mark = RedisMark::now(store).await?;
        let (rate, mut side) = match v {
            Variant::Rust | Variant::Js | Variant::Py => {
                let b = match v {
                    Variant::Rust => rust,
                    Variant::Js => js.context("no JavaScript projection")?,
                    _ => py.context("no Python projection")?,
                };
                let cpu0 = process_cpu();
                let (secs, per_commit) = build(b, total).await?;
                let cpu = process_cpu() - cpu0;
                let side = Side {
                    per_call: per_commit,
                    bench_cpu_us: cpu * 1e6 / total as f64,
                    ..Side::default()
                };
                (total as f64 / secs, side)
            }
            Variant::Python => {
                let mut py = python_ref.lock().await;
                let py = py.as_mut().context("no redis-py reference")?;
                let r = py.build(keys, total).await?;
                ensure!(
                    r.events == total,
                    "the redis-py reference folded {} of {total} events",
                    r.events
                );
                let side = Side {
                    per_call: r.events as f64 / r.reads.max(1) as f64,
                    python_cpu_us: r.cpu_seconds * 1e6 / total as f64,
                    ..Side::default()
                };
                (total as f64 / r.seconds, side)
            }
        };
        mark.since(store, total, &mut side).await?;
        // Untimed: the read model must be the expected one.
        match v {
            Variant::Rust => check_model(
                "email-domains (Rust)",
                &documents(&rust.version).await?,
                expected,
            )?,
            Variant::Js => {
                let b = js.context("no JavaScript projection")?;
                check_model("email-domains-js", &documents(&b.version).await?, expected)?;
            }
            Variant::Py => {
                let b = py.context("no Python projection")?;
                check_model("email-domains-py", &documents(&b.version).await?, expected)?;
            }
            Variant::Python => check_model(
                "the redis-py reference",
                &reference_documents(store).await?,
                expected,
            )?,
        }
        if round >= p.warmup {
            sides_ref.record(v.key(), side);
        }
        Ok(rate)
    })
    .await?;

    let section = format!(
        "Projections: a fresh build of email-domains from position 0 over {} user events ({} users, {DOMAINS} domains)",
        fmt_count(total),
        fmt_count(USERS)
    );
    let median = |key: &str, f: fn(&Side) -> f64| sides.median(key, f);
    let last_commands = |key: &str| sides.last_commands(key);
    let series = |v: Variant| -> &[f64] {
        let i = variants.iter().position(|x| *x == v).expect("a variant");
        &s[i]
    };
    let mut rows = Vec::new();
    for v in &variants {
        let key = v.key();
        let (name, note) = match *v {
            Variant::Rust | Variant::Js | Variant::Py => (
                format!(
                    "{}: Runtime::run_projections from position 0 until the status counts every event folded",
                    match *v {
                        Variant::Rust => "Rust email-domains",
                        Variant::Js => "JavaScript email-domains-js",
                        _ => "Python email-domains-py",
                    }
                ),
                format!(
                    "{} events per commit; CPU per event: this process (the runner, its sandbox and the status polls) {} µs, redis-server {} µs; Redis per 1,000 events: {}",
                    fmt_num(median(key, |s| s.per_call)),
                    fmt_num(median(key, |s| s.bench_cpu_us)),
                    fmt_num(median(key, |s| s.redis_cpu_us)),
                    last_commands(key),
                ),
            ),
            Variant::Python => (
                "redis-py (seed's style): XREAD COUNT 1000 loop, GET/SET/DEL per document, SET pos per page, one process".to_owned(),
                format!(
                    "{} events per XREAD; CPU per event: Python {} µs, redis-server {} µs; Redis per 1,000 events: {}",
                    fmt_num(median(key, |s| s.per_call)),
                    fmt_num(median(key, |s| s.python_cpu_us)),
                    fmt_num(median(key, |s| s.redis_cpu_us)),
                    last_commands(key),
                ),
            ),
        };
        let mut r = row(key, &section, &name, "events/s", series(*v));
        r.note = Some(note);
        if *v != Variant::Python && has_python {
            r.ratios.push(faster(
                series(*v),
                series(Variant::Python),
                Variant::Python.key(),
                "the redis-py loop's rate",
                false,
            ));
        }
        if *v == Variant::Rust {
            r.note = Some(format!(
                "{}; {prefill_note}; every build's documents checked against the model computed from the events",
                r.note.unwrap_or_default()
            ));
        }
        rows.push(r);
    }

    let cpu_section = format!(
        "Projections: CPU per event of a build ({} events): the builder's process and redis-server",
        fmt_count(total)
    );
    let cpu = |v: Variant| sides.total_cpu(v.key());
    for v in &variants {
        let name = match *v {
            Variant::Rust => "Rust email-domains: this process (runner) + redis-server",
            Variant::Js => "JavaScript email-domains-js: this process (runner) + redis-server",
            Variant::Py => "Python email-domains-py: this process (runner) + redis-server",
            Variant::Python => "redis-py loop: the Python process + redis-server",
        };
        let mut r = row(&v.cpu_key(), &cpu_section, name, "µs/event", &cpu(*v));
        if *v != Variant::Python && has_python {
            r.ratios.push(times(
                &cpu(*v),
                &cpu(Variant::Python),
                &Variant::Python.cpu_key(),
                "the redis-py loop's CPU per event",
            ));
        }
        if *v == Variant::Rust {
            r.note = Some("/proc/self/stat ticks of 10 ms and INFO cpu, per round".to_owned());
        }
        rows.push(r);
    }
    Ok(rows)
}

/// One latency sample: every event's latency (ms), the append rate reached, and
/// the events not seen.
#[derive(Debug, Default)]
struct Latency {
    ms: Vec<f64>,
    rate: f64,
    missing: usize,
}

async fn latency_sample(
    b: &Built,
    store: &EventStore,
    revisions: &mut [u64],
    offset: u64,
    seconds: f64,
) -> Result<Latency> {
    let base = Instant::now();
    let mut feed =
        b.rt.watch_projection(&b.name, None, 1000, Duration::from_millis(500))
            .await?;
    let (tx, mut arrivals) = mpsc::unbounded_channel::<(String, u64)>();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        loop {
            let page = tokio::select! {
                _ = &mut stopped => break,
                page = feed.next() => page?,
            };
            let at = ns(base);
            for c in page.changes {
                if c.change.op == ChangeOp::Put && c.change.key.starts_with("user/") {
                    let _ = tx.send((c.change.key, at));
                }
            }
        }
        anyhow::Ok(())
    });

    let total = (seconds * LAT_RATE as f64) as u64;
    let mut starts: HashMap<String, VecDeque<u64>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LAT_RATE));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    tick.tick().await;
    let t = Instant::now();
    for j in 0..total {
        let i = (offset + j) % USERS;
        let revision = revisions[i as usize] + 1;
        let (event, _) = user_event(i, revision);
        let id = format!("u{i}");
        tick.tick().await;
        let start = ns(base);
        store
            .append(
                TYPE,
                &id,
                vec![event],
                ExpectedRevision::Exact(revision - 1),
            )
            .await?;
        revisions[i as usize] = revision;
        starts
            .entry(format!("user/{id}"))
            .or_default()
            .push_back(start);
    }
    let rate = total as f64 / t.elapsed().as_secs_f64();

    let mut ms = Vec::with_capacity(total as usize);
    let deadline = tokio::time::Instant::now() + LAT_DRAIN;
    while (ms.len() as u64) < total {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((key, at))) => {
                // One change per event (each moves its user, events of a user are
                // USERS / LAT_RATE seconds apart): the oldest append of the key.
                if let Some(start) = starts.get_mut(&key).and_then(VecDeque::pop_front) {
                    ms.push(at.saturating_sub(start) as f64 / 1e6);
                }
            }
            _ => break,
        }
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), watcher).await {
        Ok(r) => r??,
        Err(_) => bail!("the change feed's watcher did not end"),
    }
    Ok(Latency {
        missing: total as usize - ms.len(),
        ms,
        rate,
    })
}

async fn latency(
    ctx: &Ctx,
    rust: &Built,
    store: &EventStore,
    per_user: u64,
    total: u64,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    // Seconds of appends measured in all: 5 quick, 20 full, over the measured rounds.
    let measured = if p.mode == "full" { 20.0 } else { 5.0 };
    let seconds = measured / p.rounds.max(1) as f64;
    // The projection live (built by the throughput rounds): run until caught up
    // and serving.
    let (stop, stopped) = oneshot::channel::<()>();
    let rt = rust.rt.clone();
    let running = tokio::spawn(async move {
        rt.run_projections(async move {
            let _ = stopped.await;
        })
        .await
    });
    let outcome = async {
        let t = Instant::now();
        loop {
            let s = rust.version.status().await?;
            let serving = rust.rt.projection_status(&rust.name).await?.serving;
            if s.events >= total && serving.as_deref() == Some(rust.version.vid()) {
                break;
            }
            ensure!(
                t.elapsed() < ROUND_TIMEOUT,
                "the projection did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut revisions = vec![per_user; USERS as usize];
        let mut offset = 0u64;
        // Per measured round: p50, p99, max, rate.
        let mut per_round: Vec<[f64; 4]> = Vec::new();
        let mut all: Vec<f64> = Vec::new();
        let mut missing = 0usize;
        for round in 0..p.warmup + p.rounds {
            let mut d = latency_sample(rust, store, &mut revisions, offset, seconds).await?;
            offset += (seconds * LAT_RATE as f64) as u64;
            d.ms.sort_by(f64::total_cmp);
            if round >= p.warmup {
                per_round.push([
                    quantile(&d.ms, 0.5),
                    quantile(&d.ms, 0.99),
                    d.ms.last().copied().unwrap_or(f64::NAN),
                    d.rate,
                ]);
                all.extend_from_slice(&d.ms);
                missing += d.missing;
            }
        }
        anyhow::Ok((per_round, all, missing))
    }
    .await;
    let _ = stop.send(());
    running.await??;
    let (per_round, mut all, missing) = outcome?;
    all.sort_by(f64::total_cmp);
    let col = |k: usize| -> Vec<f64> { per_round.iter().map(|r| r[k]).collect() };
    let section = format!(
        "Projections: append -> visible in the read model at {} events/s, Rust email-domains live, {} s per round",
        fmt_count(LAT_RATE),
        fmt_num(seconds)
    );
    let name = "EventStore::append (EmailChanged) -> Runtime::watch_projection hands out the change of user/<id>";
    let mut rows = Vec::new();
    for (k, stat) in ["p50", "p99", "max"].iter().enumerate() {
        rows.push(row(
            &format!("projections.latency.{stat}"),
            &section,
            &format!("{name}: {stat} per round"),
            "ms",
            &col(k),
        ));
    }
    let mut r = row(
        "projections.latency.pooled-p99",
        &section,
        &format!(
            "{name}: p99 of all measured rounds' {} events",
            fmt_count(all.len() as u64)
        ),
        "ms",
        &[quantile(&all, 0.99)],
    );
    r.note = Some(format!(
        "{missing} changes not seen within {LAT_DRAIN:?}; pooled p50 {} ms, p99.9 {} ms, max {} ms; appends at {} events/s (median of rounds) to {} users in turn, each moving its user to another domain",
        fmt_num(quantile(&all, 0.5)),
        fmt_num(quantile(&all, 0.999)),
        fmt_num(all.last().copied().unwrap_or(f64::NAN)),
        fmt_num(Stat::of(&col(3)).median.round()),
        fmt_count(USERS),
    ));
    rows.push(r);
    Ok(rows)
}

/// The goals of issue 20, held against this run's figures.
pub fn goals(r: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    let ratio = |v: Variant| {
        r.row(v.key()).and_then(|row| {
            row.ratios
                .iter()
                .find(|q| q.against == Variant::Python.key())
                .map(|q| q.value)
        })
    };
    let n = r
        .row(Variant::Rust.key())
        .map(|row| row.section.clone())
        .unwrap_or_default();
    let events = n
        .split(" over ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("N")
        .to_owned();
    for (v, what, target) in [
        (Variant::Rust, "Rust email-domains", 10.0),
        (Variant::Js, "JavaScript email-domains-js", 2.0),
        (Variant::Py, "Python email-domains-py", 2.0),
    ] {
        let (measured, met) = match ratio(v) {
            Some(s) => (
                format!(
                    "{} [{}-{}] its rate",
                    fmt_ratio(s.median),
                    fmt_ratio(s.min),
                    fmt_ratio(s.max)
                ),
                Some(s.median >= target),
            ),
            None => ("not measured in this run".to_owned(), None),
        };
        goals.push(Goal {
            goal: format!(
                "Projections: a build over {events} user events, {what} vs the seed-style redis-py loop (XREAD, GET/SET)"
            ),
            target: format!(">= {target}x its events/s"),
            measured,
            met,
        });
    }
    let (measured, met) = match r.row("projections.latency.pooled-p99") {
        Some(row) => {
            let worst = r
                .row("projections.latency.p99")
                .map_or(f64::NAN, |p| p.value.max);
            (
                format!(
                    "p99 {} ms over all measured rounds (worst round {} ms)",
                    fmt_num(row.value.median),
                    fmt_num(worst)
                ),
                Some(row.value.median < 20.0),
            )
        }
        None => ("not measured in this run".to_owned(), None),
    };
    goals.push(Goal {
        goal: "Projections: append -> visible in the read model (Rust email-domains live) at 1,000 events/s".to_owned(),
        target: "p99 < 20 ms".to_owned(),
        measured,
        met,
    });
    goals
}

/// `bench/projections_reference.py serve`, running.
#[derive(Debug)]
struct RefPython(PyServe);

/// What one timed build of the redis-py read model gave.
#[derive(Debug, Deserialize)]
struct PyBuild {
    seconds: f64,
    events: u64,
    reads: u64,
    cpu_seconds: f64,
}

impl RefPython {
    async fn start(python: &Path, url: &str) -> Result<RefPython> {
        Ok(RefPython(
            PyServe::redis_py(python, "projections_reference.py", url, ROUND_TIMEOUT).await?,
        ))
    }

    /// Deletes its read model (every key under [`PREFIX_REF`]).
    async fn clear(&mut self) -> Result<()> {
        self.call(json!({"op": "clear", "prefix": PREFIX_REF}))
            .await
            .map(drop)
    }

    /// A fresh build of its read model from position 0 of `keys`, until `total`
    /// events are folded.
    async fn build(&mut self, keys: &[String], total: u64) -> Result<PyBuild> {
        let request = json!({
            "op": "build",
            "keys": keys,
            "prefix": PREFIX_REF,
            "total": total,
        });
        Ok(serde_json::from_value(self.call(request).await?)?)
    }

    async fn call(&mut self, request: Value) -> Result<Value> {
        self.0.call(request).await
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}
