//! Durable subscriptions (issue 21): workers fetching and acknowledging a type's
//! events through `streamfold-server`, against hand-written redis-py workers on a
//! Redis consumer group of the same category in the same run, and the latency from
//! an append to its delivery.
//!
//! The server is `Server::bind` on `127.0.0.1:0` in this process (as in the `server`
//! section), over a store of its own: prefix `bench-groups`, type `user` with
//! [`PARTITIONS`] category partitions (a group hands a partition's next batch out
//! only once the last one is acknowledged, so its parallelism is the partition
//! count). Its HTTP workers are [`crate::http`] keep-alive clients; the events are
//! appended through the library by a second `EventStore` (another connection, as an
//! application's would be).
//!
//! - throughput: `N` events (50,000 quick, 100,000 full) appended once, one at a
//!   time, to [`AGGREGATES`] aggregates in turn (so that a partition's next 100
//!   entries hold no aggregate twice and batches are not cut short). Then each round,
//!   for each variant: a fresh group from the beginning, and the time until its
//!   workers have fetched and acknowledged all `N`:
//!   - server, 1 and 8 workers: a loop of `POST .../fetch` (`max` 100, `wait_ms`
//!     1,000), the answer parsed, then `POST .../ack` with its tokens;
//!   - redis-py, 1 and 8 worker processes (`bench/groups_reference.py`, timed inside
//!     Python): `XREADGROUP ... COUNT 100 BLOCK 200 STREAMS <every partition> > ...`
//!     then one `XACK` per partition, on a Redis consumer group created with `XGROUP
//!     CREATE key g 0` on every partition. That keeps no order per aggregate and
//!     parks nothing: what a team writes by hand;
//!   - diagnostic: 8 tokio tasks calling `EventStore::fetch_wait` and `ack` in this
//!     process, no HTTP (where the server's time goes; no goal).
//!
//!   The clock stops when the acknowledgement that completes `N` returns. Ratios are
//!   per round (server / redis-py, same worker count). The CPU each variant used per
//!   event (this process or the Python workers, and redis-server) is reported too,
//!   with the Redis commands that took most of Redis' time.
//! - latency: a group from the end, one HTTP worker long-polling (`wait_ms` 5,000)
//!   and acknowledging each batch, while the bench appends at 1,000 events/s (a
//!   tokio interval, `MissedTickBehavior::Burst`, as in the `server` section) to
//!   1,000 aggregates in turn; each event's latency is from just before its
//!   `EventStore::append` to the moment the worker has the fetch's answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use hyper::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::json;
use streamfold::{EventStore, ExpectedRevision, GroupSettings, Runtime, StoreConfig};
use streamfold_server::{Server, ServerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::data::{self, TYPE};
use crate::external::PyServe;
use crate::http::{Client, Errors};
use crate::probe::{RedisMark, Side, Sides, ns, process_cpu, quantile};
use crate::report::{Goal, Report, Row, fmt_num, fmt_ratio};
use crate::stats::{Stat, alternate};
use crate::{Ctx, fmt_count, row, share, times};

/// The store's key prefix (a store of its own: the type's partition count differs).
const PREFIX: &str = "bench-groups";
/// Category partitions of the type.
pub const PARTITIONS: u32 = 8;
/// Aggregates the events go to, in turn.
const AGGREGATES: u64 = 1000;
/// Events per fetch (server) and per stream per `XREADGROUP` (redis-py).
const MAX: usize = 100;
/// The throughput workers' long poll.
const WAIT_MS: u64 = 1000;
/// The redis-py workers' `BLOCK`.
const BLOCK_MS: u64 = 200;
/// Appends in flight while the throughput events are written (in order of
/// issue, so the category keeps the aggregates' turns).
const PREFILL_IN_FLIGHT: usize = 32;
/// A throughput round that takes longer than this is an error.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// A worker that meets more errors than this in a round stops the benchmark.
const MAX_ERRORS: u64 = 20;
/// Appends per second of the latency benchmark.
const LAT_RATE: u64 = 1000;
/// The latency worker's long poll.
const LAT_WAIT_MS: u64 = 5000;
/// How long the latency benchmark waits for the last events after the last append.
const LAT_DRAIN: Duration = Duration::from_secs(5);

/// One way of consuming the group: through the server or by hand, with `n` workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Server(usize),
    /// The store's group API in this process, no HTTP: where the server's time goes.
    Library(usize),
    Python(usize),
}

impl Variant {
    fn key(self) -> String {
        match self {
            Variant::Server(n) => format!("groups.throughput.server{n}"),
            Variant::Library(n) => format!("groups.throughput.library{n}"),
            Variant::Python(n) => format!("groups.throughput.redis-py{n}"),
        }
    }
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let config = StoreConfig::default()
        .prefix(PREFIX)
        .partitions_for(TYPE, PARTITIONS);
    let store = EventStore::connect(&ctx.url, config.clone()).await?;
    // The application's side: appends on a connection of their own.
    let writer = EventStore::connect(&ctx.url, config).await?;
    // No reducer runs here: no pooling allocator to reserve.
    let rt = Runtime::new(store.clone(), ctx.runtime_config(None).pooling(false))?;
    let server = Server::bind(rt, ServerConfig::default().listen("127.0.0.1:0".parse()?)).await?;
    let addr = server.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let rows = measure(ctx, &store, &writer, addr).await;
    let _ = stop.send(());
    serving.await??;
    rows
}

async fn measure(
    ctx: &Ctx,
    store: &EventStore,
    writer: &EventStore,
    addr: SocketAddr,
) -> Result<Vec<Row>> {
    let mut python = match &ctx.python {
        Some(py) => match GroupsPython::start(py, &ctx.url).await {
            Ok(p) => Some(p),
            Err(e) => {
                ctx.note(format!(
                    "durable subscriptions: the redis-py reference (bench/groups_reference.py) did not start ({e:#}): its rows and ratios are missing"
                ));
                None
            }
        },
        None => {
            ctx.note("durable subscriptions: no Python with redis-py (run through `./dev bench`, or pass --python): the hand-written redis-py workers' rows and the ratios are missing".to_owned());
            None
        }
    };
    let mut rows = throughput(ctx, store, writer, addr, python.as_mut()).await?;
    rows.extend(latency(ctx, store, writer, addr).await?);
    if let Some(p) = python {
        p.stop().await;
    }
    Ok(rows)
}

/// Appends `total` events, one at a time, to [`AGGREGATES`] aggregates in turn.
async fn prefill(writer: &EventStore, total: u64) -> Result<()> {
    let ids: Vec<String> = (0..AGGREGATES).map(|a| format!("job-{a}")).collect();
    let ids = &ids;
    futures::stream::iter(0..total)
        .map(|i| async move {
            let a = i % AGGREGATES;
            let revision = i / AGGREGATES + 1;
            writer
                .append(
                    TYPE,
                    &ids[a as usize],
                    vec![data::new_event(a, revision)],
                    ExpectedRevision::Exact(revision - 1),
                )
                .await
        })
        .buffered(PREFILL_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

async fn throughput(
    ctx: &Ctx,
    store: &EventStore,
    writer: &EventStore,
    addr: SocketAddr,
    python: Option<&mut GroupsPython>,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    // Quick mode's 50,000 keep the redis-py runs above a few tenths of a second.
    let total: u64 = if p.mode == "full" { 100_000 } else { 50_000 };
    let t = Instant::now();
    prefill(writer, total).await?;
    let keys: Vec<String> = (0..PARTITIONS)
        .map(|p| store.category_key(TYPE, p))
        .collect::<std::result::Result<_, _>>()?;
    let mut lens = Vec::new();
    {
        let mut con = store.connection();
        for k in &keys {
            let n: u64 = redis::cmd("XLEN").arg(k).query_async(&mut con).await?;
            lens.push(n);
        }
    }
    ensure!(
        lens.iter().sum::<u64>() == total,
        "the category holds {} entries, not {total}",
        lens.iter().sum::<u64>()
    );
    let prefill_note = format!(
        "{} events appended one at a time in {:.1} s; entries per partition {}-{}",
        fmt_count(total),
        t.elapsed().as_secs_f64(),
        fmt_count(lens.iter().copied().min().unwrap_or(0)),
        fmt_count(lens.iter().copied().max().unwrap_or(0))
    );

    let mut variants = vec![Variant::Server(1), Variant::Server(8), Variant::Library(8)];
    if python.is_some() {
        variants = vec![
            Variant::Server(1),
            Variant::Python(1),
            Variant::Server(8),
            Variant::Python(8),
            Variant::Library(8),
        ];
    }
    let sides = Sides::default();
    let admin = tokio::sync::Mutex::new(Client::connect(addr).await?);
    let python = tokio::sync::Mutex::new(python);
    let (sides_ref, admin, python, keys) = (&sides, &admin, &python, &keys);
    let s = alternate(&variants, p.warmup, p.rounds, |v, round| async move {
        let mark = RedisMark::now(store).await?;
        let (rate, mut side) = match v {
            Variant::Server(n) => {
                let group = format!("tp-{round}-{n}");
                create_group(&mut *admin.lock().await, &group, "beginning").await?;
                let cpu0 = process_cpu();
                let r = server_round(addr, &group, n, total).await;
                let cpu = process_cpu() - cpu0;
                store.delete_group(TYPE, &group).await?;
                let (secs, fetches) = r?;
                let side = Side {
                    per_call: total as f64 / fetches.max(1) as f64,
                    bench_cpu_us: cpu * 1e6 / total as f64,
                    ..Side::default()
                };
                (total as f64 / secs, side)
            }
            Variant::Library(n) => {
                let group = format!("lib-{round}-{n}");
                store
                    .create_group(TYPE, &group, GroupSettings::new())
                    .await?;
                let cpu0 = process_cpu();
                let r = library_round(store, &group, n, total).await;
                let cpu = process_cpu() - cpu0;
                store.delete_group(TYPE, &group).await?;
                let (secs, fetches) = r?;
                let side = Side {
                    per_call: total as f64 / fetches.max(1) as f64,
                    bench_cpu_us: cpu * 1e6 / total as f64,
                    ..Side::default()
                };
                (total as f64 / secs, side)
            }
            Variant::Python(n) => {
                let mut py = python.lock().await;
                let py = py.as_mut().context("no redis-py reference")?;
                let group = format!("py-{round}-{n}");
                let r = py.consume(keys, &group, n, total).await?;
                ensure!(
                    r.acked == total,
                    "the redis-py workers acknowledged {} of {total}",
                    r.acked
                );
                let side = Side {
                    per_call: r.read as f64 / r.reads.max(1) as f64,
                    python_cpu_us: r.cpu_seconds * 1e6 / total as f64,
                    ..Side::default()
                };
                (total as f64 / r.seconds, side)
            }
        };
        mark.since(store, total, &mut side).await?;
        if round >= p.warmup {
            sides_ref.record(&v.key(), side);
        }
        Ok(rate)
    })
    .await?;

    let section = format!(
        "Durable subscriptions: fetch + ack of {} events, {PARTITIONS} partitions, {} aggregates, a fresh group per round",
        fmt_count(total),
        fmt_count(AGGREGATES)
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
            Variant::Server(n) => (
                format!(
                    "server: {n} HTTP worker{}, POST .../fetch (max {MAX}, wait_ms {WAIT_MS}) then POST .../ack, keep-alive",
                    if n == 1 { "" } else { "s" }
                ),
                format!(
                    "{} events per fetch; CPU per event: this process (server and HTTP workers) {} µs, redis-server {} µs; Redis per 1,000 events: {}",
                    fmt_num(median(&key, |s| s.per_call)),
                    fmt_num(median(&key, |s| s.bench_cpu_us)),
                    fmt_num(median(&key, |s| s.redis_cpu_us)),
                    last_commands(&key),
                ),
            ),
            Variant::Library(n) => (
                format!(
                    "diagnostic, no HTTP: {n} tokio tasks calling EventStore::fetch_wait (max {MAX}) then EventStore::ack in this process"
                ),
                format!(
                    "{} events per fetch; CPU per event: this process {} µs, redis-server {} µs; Redis per 1,000 events: {}",
                    fmt_num(median(&key, |s| s.per_call)),
                    fmt_num(median(&key, |s| s.bench_cpu_us)),
                    fmt_num(median(&key, |s| s.redis_cpu_us)),
                    last_commands(&key),
                ),
            ),
            Variant::Python(n) => (
                format!(
                    "redis-py: {n} worker process{}, XREADGROUP COUNT {MAX} over the {PARTITIONS} partition streams, then XACK per partition (no order per aggregate, no parking)",
                    if n == 1 { "" } else { "es" }
                ),
                format!(
                    "{} events per XREADGROUP; CPU per event: Python workers {} µs, redis-server {} µs; Redis per 1,000 events: {}",
                    fmt_num(median(&key, |s| s.per_call)),
                    fmt_num(median(&key, |s| s.python_cpu_us)),
                    fmt_num(median(&key, |s| s.redis_cpu_us)),
                    last_commands(&key),
                ),
            ),
        };
        let mut r = row(&key, &section, &name, "events/s", series(*v));
        r.note = Some(note);
        if let Variant::Server(n) | Variant::Library(n) = *v
            && python.lock().await.is_some()
        {
            r.ratios.push(share(
                series(*v),
                series(Variant::Python(n)),
                &Variant::Python(n).key(),
                &format!(
                    "of redis-py's rate ({n} worker{})",
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
        if *v == Variant::Server(1) {
            r.note = Some(format!("{}; {prefill_note}", r.note.unwrap_or_default()));
        }
        rows.push(r);
    }

    // CPU per event, all processes of a variant: a figure the machine's other load
    // moves less than the rates (when both sides are CPU-bound, the rates' ratio
    // tends to the inverse of this one).
    let cpu_section = format!(
        "Durable subscriptions: CPU per event fetched and acknowledged ({} events): the workers' and server's processes and redis-server",
        fmt_count(total)
    );
    let cpu = |v: Variant| sides.total_cpu(&v.key());
    let has_python = python.lock().await.is_some();
    for v in &variants {
        let key = v.key().replace("throughput", "cpu");
        let name = match *v {
            Variant::Server(n) => format!(
                "server, {n} HTTP worker{}: this process (server and its HTTP workers) + redis-server",
                if n == 1 { "" } else { "s" }
            ),
            Variant::Library(n) => format!(
                "diagnostic, no HTTP: {n} tokio tasks on the store's group API + redis-server"
            ),
            Variant::Python(n) => format!(
                "redis-py, {n} worker process{}: the Python workers + redis-server",
                if n == 1 { "" } else { "es" }
            ),
        };
        let mut r = row(&key, &cpu_section, &name, "µs/event", &cpu(*v));
        if let Variant::Server(n) | Variant::Library(n) = *v
            && has_python
        {
            r.ratios.push(times(
                &cpu(*v),
                &cpu(Variant::Python(n)),
                &Variant::Python(n).key().replace("throughput", "cpu"),
                "redis-py's CPU per event",
            ));
        }
        if *v == Variant::Server(1) {
            r.note = Some("/proc/self/stat ticks of 10 ms and INFO cpu, per round".to_owned());
        }
        rows.push(r);
    }
    Ok(rows)
}

/// `PUT /v1/groups/user/{group}` with `start`; the group must be new.
async fn create_group(admin: &mut Client, group: &str, start: &str) -> Result<()> {
    let uri: Uri = format!("/v1/groups/{TYPE}/{group}").parse()?;
    let body = Bytes::from(json!({ "start": start }).to_string());
    let resp = admin.call(Method::PUT, uri, Some(body)).await;
    match resp {
        Some(r) if r.status() == StatusCode::CREATED => Ok(()),
        Some(r) => bail!("creating group {group}: {}", r.status()),
        None => bail!("creating group {group}: {}", admin.errors.summary()),
    }
}

#[derive(Debug, Deserialize)]
struct Fetched {
    deliveries: Vec<FetchedDelivery>,
}

#[derive(Debug, Deserialize)]
struct FetchedDelivery {
    delivery: String,
    event: FetchedEvent,
}

/// What a worker reads of an event (the rest is parsed over, as serde skips it).
#[derive(Debug, Deserialize)]
struct FetchedEvent {
    #[allow(dead_code)] // read as a worker would; not needed here
    event_id: String,
    aggregate_id: String,
    revision: u64,
}

#[derive(Debug, Deserialize)]
struct AckAnswer {
    done: u64,
}

fn fetch_uri(group: &str) -> Result<Uri> {
    Ok(format!("/v1/groups/{TYPE}/{group}/fetch").parse()?)
}

fn ack_uri(group: &str) -> Result<Uri> {
    Ok(format!("/v1/groups/{TYPE}/{group}/ack").parse()?)
}

/// `n` HTTP workers on `group` until `total` events are acknowledged: the seconds
/// until the acknowledgement that completed them, and the fetches that gave events.
async fn server_round(addr: SocketAddr, group: &str, n: usize, total: u64) -> Result<(f64, u64)> {
    let clients = Client::pool(addr, n).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let end: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (fetch_uri, ack_uri) = (fetch_uri(group)?, ack_uri(group)?);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let (acked, end) = (acked.clone(), end.clone());
        let (fetch_uri, ack_uri) = (fetch_uri.clone(), ack_uri.clone());
        tasks.push(tokio::spawn(async move {
            let mut fetches = 0u64;
            while acked.load(Ordering::SeqCst) < total {
                ensure!(
                    c.errors.count <= MAX_ERRORS,
                    "worker {i}: {}",
                    c.errors.summary()
                );
                let body = format!(r#"{{"consumer":"w{i}","max":{MAX},"wait_ms":{WAIT_MS}}}"#);
                let Some(resp) = c.post_json(fetch_uri.clone(), Bytes::from(body)).await else {
                    continue;
                };
                let got: Fetched = serde_json::from_slice(resp.body())?;
                if got.deliveries.is_empty() {
                    continue;
                }
                fetches += 1;
                let tokens: Vec<&str> =
                    got.deliveries.iter().map(|d| d.delivery.as_str()).collect();
                let body = serde_json::to_vec(&json!({ "deliveries": tokens }))?;
                let Some(resp) = c.post_json(ack_uri.clone(), Bytes::from(body)).await else {
                    continue;
                };
                let done = serde_json::from_slice::<AckAnswer>(resp.body())?.done;
                let before = acked.fetch_add(done, Ordering::SeqCst);
                if before < total && before + done >= total {
                    *end.lock().expect("end") = Some(Instant::now());
                }
            }
            anyhow::Ok(fetches)
        }));
    }
    let mut fetches = 0;
    let joined = tokio::time::timeout(ROUND_TIMEOUT, futures::future::join_all(tasks)).await;
    let Ok(joined) = joined else {
        bail!(
            "{n} HTTP workers acknowledged {} of {total} events in {ROUND_TIMEOUT:?}",
            acked.load(Ordering::SeqCst)
        );
    };
    for j in joined {
        fetches += j??;
    }
    let acked = acked.load(Ordering::SeqCst);
    ensure!(
        acked == total,
        "{n} HTTP workers acknowledged {acked} events, not {total}"
    );
    let end = end.lock().expect("end").context("no end time")?;
    Ok(((end - t).as_secs_f64(), fetches))
}

/// The same as [`server_round`] through the store's group API in this process:
/// `n` tasks of `fetch_wait` then `ack`.
async fn library_round(
    store: &EventStore,
    group: &str,
    n: usize,
    total: u64,
) -> Result<(f64, u64)> {
    let acked = Arc::new(AtomicU64::new(0));
    let end: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (acked, end) = (acked.clone(), end.clone());
        let (store, group) = (store.clone(), group.to_owned());
        tasks.push(tokio::spawn(async move {
            let consumer = format!("w{i}");
            let mut fetches = 0u64;
            while acked.load(Ordering::SeqCst) < total {
                let got = store
                    .fetch_wait(TYPE, &group, &consumer, MAX, Duration::from_millis(WAIT_MS))
                    .await?;
                if got.is_empty() {
                    continue;
                }
                fetches += 1;
                let tokens: Vec<&str> = got.iter().map(|d| d.delivery.as_str()).collect();
                let done = store.ack(TYPE, &group, &tokens).await?.done as u64;
                let before = acked.fetch_add(done, Ordering::SeqCst);
                if before < total && before + done >= total {
                    *end.lock().expect("end") = Some(Instant::now());
                }
            }
            anyhow::Ok(fetches)
        }));
    }
    let joined = tokio::time::timeout(ROUND_TIMEOUT, futures::future::join_all(tasks)).await;
    let Ok(joined) = joined else {
        bail!(
            "{n} library workers acknowledged {} of {total} events in {ROUND_TIMEOUT:?}",
            acked.load(Ordering::SeqCst)
        );
    };
    let mut fetches = 0;
    for j in joined {
        fetches += j??;
    }
    let acked = acked.load(Ordering::SeqCst);
    ensure!(
        acked == total,
        "{n} library workers acknowledged {acked} events, not {total}"
    );
    let end = end.lock().expect("end").context("no end time")?;
    Ok(((end - t).as_secs_f64(), fetches))
}

/// One latency sample: every event's latency (ms), the append rate reached, the
/// errors, and the events per fetch.
#[derive(Debug, Default)]
struct Latency {
    ms: Vec<f64>,
    rate: f64,
    errors: Errors,
    per_fetch: f64,
}

async fn latency_sample(
    store: &EventStore,
    writer: &EventStore,
    addr: SocketAddr,
    round: usize,
    seconds: f64,
) -> Result<Latency> {
    let group = format!("lat-{round}");
    let mut admin = Client::connect(addr).await?;
    create_group(&mut admin, &group, "end").await?;
    let base = Instant::now();
    let (tx, mut arrivals) = mpsc::unbounded_channel::<(String, u64)>();
    let mut c = Client::connect(addr).await?;
    let fetch_uri = fetch_uri(&group)?;
    let ack_uri = ack_uri(&group)?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        let mut fetches = 0u64;
        let mut delivered = 0u64;
        loop {
            if c.errors.count > MAX_ERRORS {
                break;
            }
            let body = format!(r#"{{"consumer":"lat","max":{MAX},"wait_ms":{LAT_WAIT_MS}}}"#);
            // The last long poll, with nothing left to hand out, is cut short.
            let resp = tokio::select! {
                _ = &mut stopped => break,
                resp = c.post_json(fetch_uri.clone(), Bytes::from(body)) => resp,
            };
            let Some(resp) = resp else {
                continue;
            };
            let at = ns(base);
            let got: Fetched = serde_json::from_slice(resp.body())?;
            if got.deliveries.is_empty() {
                continue;
            }
            fetches += 1;
            delivered += got.deliveries.len() as u64;
            for d in &got.deliveries {
                let key = format!("{}/{}", d.event.aggregate_id, d.event.revision);
                let _ = tx.send((key, at));
            }
            let tokens: Vec<&str> = got.deliveries.iter().map(|d| d.delivery.as_str()).collect();
            let body = serde_json::to_vec(&json!({ "deliveries": tokens }))?;
            c.post_json(ack_uri.clone(), Bytes::from(body)).await;
        }
        anyhow::Ok((c.errors, fetches, delivered))
    });
    // Let the worker's first fetch begin its wait.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let ids: Vec<String> = (0..AGGREGATES).map(|a| format!("lat{round}-{a}")).collect();
    let total = (seconds * LAT_RATE as f64) as u64;
    let mut starts: Vec<(String, u64)> = Vec::with_capacity(total as usize);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LAT_RATE));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    tick.tick().await;
    let t = Instant::now();
    for i in 0..total {
        let a = i % AGGREGATES;
        let id = &ids[a as usize];
        let event = vec![data::new_event(a, i / AGGREGATES + 1)];
        tick.tick().await;
        let start = ns(base);
        let done = writer
            .append(TYPE, id, event, ExpectedRevision::Any)
            .await?;
        starts.push((format!("{id}/{}", done.last_revision), start));
    }
    let rate = total as f64 / t.elapsed().as_secs_f64();

    let mut arrived = HashMap::with_capacity(starts.len());
    let deadline = tokio::time::Instant::now() + LAT_DRAIN;
    while arrived.len() < starts.len() {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((key, at))) => {
                arrived.insert(key, at);
            }
            _ => break,
        }
    }
    let _ = stop.send(());
    let mut errors = Errors::default();
    let mut per_fetch = f64::NAN;
    match tokio::time::timeout(Duration::from_secs(10), worker).await {
        Ok(Ok(Ok((e, fetches, delivered)))) => {
            errors = e;
            per_fetch = delivered as f64 / fetches.max(1) as f64;
        }
        Ok(Ok(Err(e))) => errors.record("worker", format!("{e:#}")),
        Ok(Err(e)) => errors.record("worker", format!("{e}")),
        Err(_) => errors.record("worker", "did not end".to_owned()),
    }
    store.delete_group(TYPE, &group).await?;
    let mut ms = Vec::with_capacity(starts.len());
    let mut missing = 0;
    for (key, start) in &starts {
        match arrived.get(key) {
            Some(at) => ms.push(at.saturating_sub(*start) as f64 / 1e6),
            None => missing += 1,
        }
    }
    if missing > 0 {
        errors.record(
            "not delivered",
            format!(
                "{missing} of {} appended events not delivered within {LAT_DRAIN:?}",
                starts.len()
            ),
        );
    }
    Ok(Latency {
        ms,
        rate,
        errors,
        per_fetch,
    })
}

async fn latency(
    ctx: &Ctx,
    store: &EventStore,
    writer: &EventStore,
    addr: SocketAddr,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    // Seconds of appends measured in all: 5 quick, 20 full, over the measured rounds.
    let measured = if p.mode == "full" { 20.0 } else { 5.0 };
    let seconds = measured / p.rounds.max(1) as f64;
    // Per measured round: p50, p99, max, rate, events per fetch.
    let per_round: Mutex<Vec<[f64; 5]>> = Mutex::new(Vec::new());
    let pooled: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    let errors: Mutex<Errors> = Mutex::new(Errors::default());
    let (per_round_ref, pooled_ref, errors_ref) = (&per_round, &pooled, &errors);
    alternate(&[()], p.warmup, p.rounds, |(), round| async move {
        let mut d = latency_sample(store, writer, addr, round, seconds).await?;
        d.ms.sort_by(f64::total_cmp);
        if round >= p.warmup {
            per_round_ref.lock().expect("rounds").push([
                quantile(&d.ms, 0.5),
                quantile(&d.ms, 0.99),
                d.ms.last().copied().unwrap_or(f64::NAN),
                d.rate,
                d.per_fetch,
            ]);
            pooled_ref.lock().expect("pooled").extend_from_slice(&d.ms);
            errors_ref.lock().expect("errors").merge(&d.errors);
        }
        Ok(0.0)
    })
    .await?;
    let per_round = per_round.into_inner().expect("rounds");
    let mut all = pooled.into_inner().expect("pooled");
    all.sort_by(f64::total_cmp);
    let errors = errors.into_inner().expect("errors");
    let col = |k: usize| -> Vec<f64> { per_round.iter().map(|r| r[k]).collect() };
    let section = format!(
        "Durable subscriptions: append -> delivery at {} events/s, one HTTP worker long-polling (wait_ms {LAT_WAIT_MS}) and acking, {} s per round",
        fmt_count(LAT_RATE),
        fmt_num(seconds)
    );
    let name =
        "server: EventStore::append (another connection) -> the worker has POST .../fetch's answer";
    let mut rows = Vec::new();
    for (k, stat) in ["p50", "p99", "max"].iter().enumerate() {
        rows.push(row(
            &format!("groups.latency.{stat}"),
            &section,
            &format!("{name}: {stat} per round"),
            "ms",
            &col(k),
        ));
    }
    let mut r = row(
        "groups.latency.pooled-p99",
        &section,
        &format!(
            "{name}: p99 of all measured rounds' {} events",
            fmt_count(all.len() as u64)
        ),
        "ms",
        &[quantile(&all, 0.99)],
    );
    r.note = Some(format!(
        "{}; pooled p50 {} ms, p99.9 {} ms, max {} ms; appends at {} events/s (median of rounds) to {} aggregates in turn, {PARTITIONS} partitions; {} events per fetch (median of rounds)",
        errors.summary(),
        fmt_num(quantile(&all, 0.5)),
        fmt_num(quantile(&all, 0.999)),
        fmt_num(all.last().copied().unwrap_or(f64::NAN)),
        fmt_num(Stat::of(&col(3)).median.round()),
        fmt_count(AGGREGATES),
        fmt_num(Stat::of(&col(4)).median),
    ));
    rows.push(r);
    Ok(rows)
}

/// The goals of issue 21, held against this run's figures.
pub fn goals(r: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    let ratio = r
        .row(&Variant::Server(8).key())
        .and_then(|row| {
            row.ratios
                .iter()
                .find(|q| q.against == Variant::Python(8).key())
        })
        .map(|q| q.value);
    let (measured, met) = match ratio {
        Some(s) => (
            format!(
                "{} [{}-{}] the redis-py workers' rate",
                fmt_ratio(s.median),
                fmt_ratio(s.min),
                fmt_ratio(s.max)
            ),
            Some(s.median >= 0.5),
        ),
        None => ("not measured in this run".to_owned(), None),
    };
    goals.push(Goal {
        goal: "Durable subscriptions: 8 HTTP workers through the server vs 8 hand-written redis-py XREADGROUP/XACK workers (no order per aggregate, no parking)".to_owned(),
        target: ">= 0.5x their rate".to_owned(),
        measured,
        met,
    });
    let (measured, met) = match r.row("groups.latency.pooled-p99") {
        Some(row) => {
            let worst = r
                .row("groups.latency.p99")
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
        goal: "Durable subscriptions: append -> delivery to a long-polling HTTP worker at 1,000 events/s".to_owned(),
        target: "p99 < 20 ms".to_owned(),
        measured,
        met,
    });
    goals
}

/// `bench/groups_reference.py serve`, running.
#[derive(Debug)]
struct GroupsPython(PyServe);

/// What one timed run of the redis-py workers gave.
#[derive(Debug, Deserialize)]
struct PyRun {
    seconds: f64,
    acked: u64,
    read: u64,
    reads: u64,
    cpu_seconds: f64,
}

impl GroupsPython {
    async fn start(python: &Path, url: &str) -> Result<GroupsPython> {
        Ok(GroupsPython(
            PyServe::redis_py(python, "groups_reference.py", url, ROUND_TIMEOUT).await?,
        ))
    }

    /// `workers` processes consume a new consumer group `group` on `keys` until
    /// `total` entries are acknowledged.
    async fn consume(
        &mut self,
        keys: &[String],
        group: &str,
        workers: usize,
        total: u64,
    ) -> Result<PyRun> {
        let request = json!({
            "op": "consume",
            "keys": keys,
            "group": group,
            "workers": workers,
            "count": MAX,
            "block_ms": BLOCK_MS,
            "total": total,
        });
        Ok(serde_json::from_value(self.0.call(request).await?)?)
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}
