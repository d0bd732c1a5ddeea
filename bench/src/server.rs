//! Through the server (issue 12): the same operations through `streamfold-server`
//! over loopback HTTP and through the library in this process, alternating in the
//! same rounds, on the same runtime, store and data.
//!
//! The server is `Server::bind(ctx.rt.clone(), ServerConfig::default())` on
//! `127.0.0.1:0`, run in this process (so it shares the machine's two cores with the
//! load generator, exactly as the library variant shares them with its caller). The
//! load generator ([`crate::http`]) keeps one keep-alive HTTP/1.1 connection per
//! virtual client. Request bodies and URIs are made before the clock starts, as are
//! the library's `NewEvent`s.
//!
//! - appends: single events and batches of 100 (1 client), single events from 32
//!   clients on 32 aggregates: `EventStore::append` (what the handler calls) vs `POST
//!   .../events`;
//! - states: a 10-event aggregate (1 and 32 clients, 1,024 distinct aggregates in
//!   turn) and a 100,000-event one (1 client, every event replayed): `Runtime::state`
//!   with the options the handler uses vs `GET .../state`;
//! - append -> delivery at 1,000 events/s: `EventStore::subscribe` + `append` vs an
//!   SSE subscriber on `GET .../subscribe` + `POST .../events`;
//! - a soak: 32 clients, appends and 10-event state reads in turn, for 60 s (full)
//!   or 10 s (quick), every error counted.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hyper::Uri;
use hyper::body::Bytes;
use serde_json::Value as Json;
use streamfold::{
    ExpectedRevision, Live, NewEvent, RegisterOptions, ReplayOptions, SubscribeOptions,
};
use streamfold_server::{Server, ServerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::data::{self, TYPE};
use crate::http::{Client, Errors, SseReader};
use crate::report::{Row, fmt_num};
use crate::stats::{Stat, alternate};
use crate::{Ctx, Lang, fmt_count, row, share, times};

/// Concurrent clients of the many-client variants and the soak.
const CLIENTS: usize = 32;
const BATCH: u64 = 100;
/// Distinct 10-event aggregates the state reads go round.
const SMALL: usize = 1024;
const SMALL_EVENTS: u64 = 10;
const BIG: u64 = 100_000;
/// Appends per second of the delivery benchmark.
const SSE_RATE: u64 = 1000;
/// How long the delivery benchmark waits for the last events after the last append.
const SSE_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Library,
    Server,
}

const VIAS: [Via; 2] = [Via::Library, Via::Server];

/// The errors the server variants met, by what was measured.
#[derive(Debug, Default)]
struct Tally(Mutex<Vec<(String, Errors)>>);

impl Tally {
    fn add(&self, what: &str, e: &Errors) {
        let mut v = self.0.lock().expect("tally");
        match v.iter_mut().find(|(w, _)| w == what) {
            Some((_, mine)) => mine.merge(e),
            None => v.push((what.to_owned(), e.clone())),
        }
    }
    fn of(&self, what: &str) -> Errors {
        let v = self.0.lock().expect("tally");
        v.iter()
            .find(|(w, _)| w == what)
            .map(|(_, e)| e.clone())
            .unwrap_or_default()
    }
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    // The server replays through the active reducer: make it the Rust `user`.
    ctx.rt
        .register(ctx.reducers.bytes(Lang::Rust), RegisterOptions::default())
        .await?;
    let config = ServerConfig::default().listen("127.0.0.1:0".parse()?);
    let replay_bound = config.max_concurrent_replays;
    let server = Server::bind(ctx.rt.clone(), config).await?;
    let addr = server.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let rows = measure(ctx, addr, replay_bound).await;
    let _ = stop.send(());
    serving.await??;
    rows
}

async fn measure(ctx: &Ctx, addr: SocketAddr, replay_bound: usize) -> Result<Vec<Row>> {
    let tally = Tally::default();
    let one = tokio::sync::Mutex::new(Client::connect(addr).await?);
    let many = tokio::sync::Mutex::new(Client::pool(addr, CLIENTS).await?);
    let mut rows = Vec::new();
    rows.extend(round_trips(ctx, &one, &tally).await?);
    rows.extend(appends(ctx, &one, &many, &tally).await?);
    rows.extend(states(ctx, &one, &many, &tally, replay_bound).await?);
    rows.extend(delivery(ctx, addr, &tally).await?);
    rows.extend(soak(ctx, &many, replay_bound).await?);
    let mut clients = many.into_inner();
    clients.push(one.into_inner());
    let reconnects: u64 = clients.iter().map(|c| c.reconnects).sum();
    if reconnects > 0 {
        ctx.note(format!(
            "server: the load generator had to reconnect {reconnects} times (after I/O errors, counted as errors)"
        ));
    }
    Ok(rows)
}

fn uri(path: String) -> Result<Uri> {
    Ok(path.parse()?)
}

fn events_uri(id: &str) -> Result<Uri> {
    uri(format!("/v1/aggregates/{TYPE}/{id}/events"))
}

pub fn state_uri(id: &str, query: &str) -> Result<Uri> {
    uri(format!("/v1/aggregates/{TYPE}/{id}/state{query}"))
}

/// The POST body of an append of `user` `n`'s events `revisions` (the same 100-byte
/// payloads as the library's [`data::new_event`]).
fn append_body(n: u64, revisions: impl Iterator<Item = u64>) -> Bytes {
    let mut s = String::from(r#"{"expected_revision":"any","events":["#);
    for (i, r) in revisions.enumerate() {
        let (ty, data) = data::user_event(n, r);
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#"{{"event_type":"{ty}","data":{data}}}"#));
    }
    s.push_str("]}");
    Bytes::from(s)
}

/// The library's side of the same batches.
fn new_events(n: u64, revisions: impl Iterator<Item = u64>) -> Vec<NewEvent> {
    revisions.map(|r| data::new_event(n, r)).collect()
}

/// Appends `batches` batches of `size` events to `id`, through the library or one
/// server client; checks the aggregate then holds them all. Returns the seconds.
async fn append_run(
    ctx: &Ctx,
    via: Via,
    client: &mut Client,
    id: &str,
    batches: u64,
    size: u64,
) -> Result<f64> {
    let ranges = (0..batches).map(|b| b * size + 1..(b + 1) * size + 1);
    let t = match via {
        Via::Library => {
            let work: Vec<Vec<NewEvent>> = ranges.map(|r| new_events(1, r)).collect();
            let t = Instant::now();
            for events in work {
                ctx.store
                    .append(TYPE, id, events, ExpectedRevision::Any)
                    .await?;
            }
            t.elapsed()
        }
        Via::Server => {
            let uri = events_uri(id)?;
            let work: Vec<Bytes> = ranges.map(|r| append_body(1, r)).collect();
            let t = Instant::now();
            for body in work {
                client.post_json(uri.clone(), body).await;
            }
            t.elapsed()
        }
    };
    let have = ctx.store.revision(TYPE, id).await?;
    if via == Via::Library {
        ensure!(have == batches * size, "{id} has {have} events");
    }
    Ok(t.as_secs_f64())
}

/// What one call costs at the least: a Redis `PING` on the store's connection
/// (every library call makes at least one round trip) against `GET /healthz` (one
/// HTTP request through the server's outer layers, no Redis).
async fn round_trips(
    ctx: &Ctx,
    one: &tokio::sync::Mutex<Client>,
    tally: &Tally,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let n = p.singles;
    let healthz: Uri = "/healthz".parse()?;
    let healthz = &healthz;
    let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let t = Instant::now();
        match via {
            Via::Library => {
                for _ in 0..n {
                    ctx.store.ping().await?;
                }
            }
            Via::Server => {
                let mut c = one.lock().await;
                let errors = c.errors.clone();
                for _ in 0..n {
                    c.get(healthz.clone()).await;
                }
                if round >= p.warmup {
                    tally.add("healthz", &errors_since(&errors, &c.errors));
                }
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    })
    .await?;
    Ok(pair(
        "server.roundtrip",
        "Through the server: one round trip, 1 client",
        (
            "library: EventStore::ping, one Redis round trip (the least any library call makes)",
            "server: GET /healthz, one HTTP request through the server's outer layers, no Redis",
        ),
        "µs/call",
        &s,
        Compare::Time,
        Some(tally.of("healthz").summary()),
    ))
}

async fn appends(
    ctx: &Ctx,
    one: &tokio::sync::Mutex<Client>,
    many: &tokio::sync::Mutex<Vec<Client>>,
    tally: &Tally,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let mut rows = Vec::new();

    // Single events and batches of 100, one client.
    for (what, batches, size) in [("single", p.singles, 1), ("batch100", p.batches, BATCH)] {
        let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
            let id = format!("srv-{what}-{round}-{via:?}");
            let mut c = one.lock().await;
            let before = c.errors.clone();
            let secs = append_run(ctx, via, &mut c, &id, batches, size).await?;
            if via == Via::Server && round >= p.warmup {
                tally.add(what, &errors_since(&before, &c.errors));
            }
            // µs per append call (single) or per event (batch).
            Ok(secs * 1e6 / (batches * size) as f64)
        })
        .await?;
        let (section, unit, per) = if size == 1 {
            (
                "Through the server: single-event appends, 1 client",
                "µs/append",
                "per append",
            )
        } else {
            (
                "Through the server: batches of 100 events, 1 client",
                "µs/event",
                "per event (a batch is one call)",
            )
        };
        rows.extend(pair(
            &format!("server.append.{what}"),
            section,
            (
                "library: EventStore::append (what the handler calls), expected any",
                "server: POST /v1/aggregates/user/{id}/events, 1 keep-alive connection",
            ),
            unit,
            &s,
            Compare::Time,
            Some(format!("{}; {per}", tally.of(what).summary())),
        ));
    }

    // 32 clients appending single events, each to its own aggregate.
    let k = p.writer_events;
    let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let total = k * CLIENTS as u64;
        let ids: Vec<String> = (0..CLIENTS)
            .map(|w| format!("srv-conc-{round}-{via:?}-{w}"))
            .collect();
        let secs = match via {
            Via::Library => {
                let work: Vec<Vec<Vec<NewEvent>>> = (0..CLIENTS)
                    .map(|_| (1..=k).map(|r| new_events(1, r..r + 1)).collect())
                    .collect();
                let t = Instant::now();
                let mut tasks = Vec::new();
                for (id, work) in ids.iter().cloned().zip(work) {
                    let store = ctx.store.clone();
                    tasks.push(tokio::spawn(async move {
                        for events in work {
                            store
                                .append(TYPE, &id, events, ExpectedRevision::Any)
                                .await?;
                        }
                        anyhow::Ok(())
                    }));
                }
                for task in tasks {
                    task.await??;
                }
                t.elapsed().as_secs_f64()
            }
            Via::Server => {
                let mut clients = std::mem::take(&mut *many.lock().await);
                let before: Vec<Errors> = clients.iter().map(|c| c.errors.clone()).collect();
                let mut work = Vec::new();
                for id in &ids {
                    let uri = events_uri(id)?;
                    let bodies: Vec<Bytes> = (1..=k).map(|r| append_body(1, r..r + 1)).collect();
                    work.push((uri, bodies));
                }
                let t = Instant::now();
                let mut tasks = Vec::new();
                for (mut c, (uri, bodies)) in clients.drain(..).zip(work) {
                    tasks.push(tokio::spawn(async move {
                        for body in bodies {
                            c.post_json(uri.clone(), body).await;
                        }
                        c
                    }));
                }
                for task in tasks {
                    clients.push(task.await?);
                }
                let secs = t.elapsed().as_secs_f64();
                if round >= p.warmup {
                    for (b, c) in before.iter().zip(&clients) {
                        tally.add("conc", &errors_since(b, &c.errors));
                    }
                }
                *many.lock().await = clients;
                secs
            }
        };
        if via == Via::Library {
            for id in &ids {
                let have = ctx.store.revision(TYPE, id).await?;
                ensure!(have == k, "{id} has {have} events, not {k}");
            }
        }
        Ok(total as f64 / secs)
    })
    .await?;
    rows.extend(pair(
        "server.append.concurrent32",
        "Through the server: single-event appends, 32 concurrent clients, 32 aggregates",
        (
            "library: 32 tokio tasks calling EventStore::append",
            "server: 32 keep-alive connections, POST .../events",
        ),
        "events/s",
        &s,
        Compare::Rate,
        Some(tally.of("conc").summary()),
    ));
    Ok(rows)
}

/// The errors added to `now` since `before` was copied from it.
fn errors_since(before: &Errors, now: &Errors) -> Errors {
    let mut e = Errors {
        count: now.count - before.count,
        ..Errors::default()
    };
    for (k, n) in &now.kinds {
        let d = n - before.kinds.get(k).copied().unwrap_or(0);
        if d > 0 {
            e.kinds.insert(k.clone(), d);
        }
    }
    if e.count > 0 {
        e.first = now.first.iter().skip(before.first.len()).cloned().collect();
        if e.first.is_empty() {
            e.first = now.first.clone();
        }
    }
    e
}

#[derive(Debug, Clone, Copy)]
enum Compare {
    /// The server's time in units of the library's.
    Time,
    /// The server's rate as a share of the library's.
    Rate,
}

/// The library row and the server row (with its ratio to the library, same rounds).
fn pair(
    key: &str,
    section: &str,
    names: (&str, &str),
    unit: &str,
    s: &[Vec<f64>],
    compare: Compare,
    note: Option<String>,
) -> Vec<Row> {
    let lib_key = format!("{key}.library");
    let lib = row(&lib_key, section, names.0, unit, &s[0]);
    let mut srv = row(&format!("{key}.server"), section, names.1, unit, &s[1]);
    srv.ratios.push(match compare {
        Compare::Time => times(&s[1], &s[0], &lib_key, "the library's time"),
        Compare::Rate => share(&s[1], &s[0], &lib_key, "of the library's rate"),
    });
    srv.note = note;
    vec![lib, srv]
}

/// Reducer instances the active `user` reducer has made so far (the figure behind
/// the server's `streamfold_reducer_instances_made_total`).
async fn instances_made(ctx: &Ctx) -> Result<u64> {
    Ok(ctx.rt.active_plugin(TYPE).await?.instances_made())
}

/// New reducer instances per read, per variant, over the measured rounds.
#[derive(Debug, Default)]
struct Made(Mutex<[Vec<f64>; 2]>);

impl Made {
    fn add(&self, via: Via, made: u64, reads: usize) {
        self.0.lock().expect("made")[via as usize].push(made as f64 / reads as f64);
    }
    fn note(&self) -> String {
        let v = self.0.lock().expect("made");
        format!(
            "new reducer instances per read: library {}, server {} (medians; the runtime keeps at most 4 idle instances per reducer by default)",
            fmt_num(Stat::of(&v[0]).median),
            fmt_num(Stat::of(&v[1]).median)
        )
    }
}

async fn states(
    ctx: &Ctx,
    one: &tokio::sync::Mutex<Client>,
    many: &tokio::sync::Mutex<Vec<Client>>,
    tally: &Tally,
    replay_bound: usize,
) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let mut rows = Vec::new();
    let ids = data::ensure_aggregates(&ctx.store, "srv10", SMALL, SMALL_EVENTS).await?;
    let uris: Vec<Uri> = ids
        .iter()
        .map(|id| state_uri(id, ""))
        .collect::<Result<_>>()?;
    let (ids, uris) = (&ids, &uris);

    // Both ways give the same state.
    for i in [0, SMALL - 1] {
        let lib = ctx
            .rt
            .state(TYPE, &ids[i], ReplayOptions::default())
            .await?;
        let resp = one
            .lock()
            .await
            .get(uris[i].clone())
            .await
            .with_context(|| format!("GET {}", uris[i]))?;
        let a: Json = serde_json::from_str(&lib.state)?;
        let b: Json = serde_json::from_slice(resp.body())?;
        ensure!(
            a == b,
            "the server's state of {} differs: {b} vs {a}",
            ids[i]
        );
    }

    // One client, the aggregates in turn.
    let reads = p.server_state_reads;
    let made = &Made::default();
    let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let start = round * 97;
        let before = instances_made(ctx).await?;
        let t = Instant::now();
        match via {
            Via::Library => {
                for i in 0..reads {
                    let id = &ids[(start + i) % SMALL];
                    ctx.rt.state(TYPE, id, ReplayOptions::default()).await?;
                }
            }
            Via::Server => {
                let mut c = one.lock().await;
                let errors = c.errors.clone();
                for i in 0..reads {
                    c.get(uris[(start + i) % SMALL].clone()).await;
                }
                if round >= p.warmup {
                    tally.add("state10", &errors_since(&errors, &c.errors));
                }
            }
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / reads as f64;
        if round >= p.warmup {
            made.add(via, instances_made(ctx).await? - before, reads);
        }
        Ok(us)
    })
    .await?;
    rows.extend(pair(
        "server.state10",
        "Through the server: state of a 10-event aggregate, 1 client",
        (
            "library: Runtime::state, the handler's options (active reducer, snapshots on: none exist)",
            "server: GET /v1/aggregates/user/{id}/state",
        ),
        "µs/read",
        &s,
        Compare::Time,
        Some(format!(
            "{}; {} distinct aggregates read in turn; neither side caches states (each read is a replay); {}",
            tally.of("state10").summary(),
            fmt_count(SMALL as u64),
            made.note()
        )),
    ));

    // 32 clients.
    let each = p.server_state_reads_each;
    let made = &Made::default();
    let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let total = each * CLIENTS;
        let instances = instances_made(ctx).await?;
        let t;
        match via {
            Via::Library => {
                t = Instant::now();
                let mut tasks = Vec::new();
                for w in 0..CLIENTS {
                    let rt = ctx.rt.clone();
                    let mine: Vec<String> = (0..each)
                        .map(|i| ids[(round * 31 + w * each + i) % SMALL].clone())
                        .collect();
                    tasks.push(tokio::spawn(async move {
                        for id in mine {
                            rt.state(TYPE, &id, ReplayOptions::default()).await?;
                        }
                        anyhow::Ok(())
                    }));
                }
                for task in tasks {
                    task.await??;
                }
            }
            Via::Server => {
                let mut clients = std::mem::take(&mut *many.lock().await);
                let before: Vec<Errors> = clients.iter().map(|c| c.errors.clone()).collect();
                let work: Vec<Vec<Uri>> = (0..CLIENTS)
                    .map(|w| {
                        (0..each)
                            .map(|i| uris[(round * 31 + w * each + i) % SMALL].clone())
                            .collect()
                    })
                    .collect();
                t = Instant::now();
                let mut tasks = Vec::new();
                for (mut c, mine) in clients.drain(..).zip(work) {
                    tasks.push(tokio::spawn(async move {
                        for uri in mine {
                            c.get(uri).await;
                        }
                        c
                    }));
                }
                for task in tasks {
                    clients.push(task.await?);
                }
                if round >= p.warmup {
                    for (b, c) in before.iter().zip(&clients) {
                        tally.add("state10x32", &errors_since(b, &c.errors));
                    }
                }
                *many.lock().await = clients;
            }
        }
        let rate = total as f64 / t.elapsed().as_secs_f64();
        if round >= p.warmup {
            made.add(via, instances_made(ctx).await? - instances, total);
        }
        Ok(rate)
    })
    .await?;
    rows.extend(pair(
        "server.state10.concurrent32",
        "Through the server: state of a 10-event aggregate, 32 concurrent clients",
        (
            "library: 32 tokio tasks calling Runtime::state (no bound on concurrent replays)",
            "server: 32 keep-alive connections, GET .../state",
        ),
        "reads/s",
        &s,
        Compare::Rate,
        Some(format!(
            "{}; the server runs at most {replay_bound} replays at once (ServerConfig::max_concurrent_replays, default), the others wait for a slot; {}",
            tally.of("state10x32").summary(),
            made.note()
        )),
    ));

    // A 100,000-event aggregate (the replay section's), every event replayed.
    let id = crate::replay::ensure_aggregate(ctx, BIG).await?;
    let big_uri = state_uri(&id, "?snapshot=false")?;
    let reference = ctx
        .rt
        .state(TYPE, &id, ReplayOptions::default().use_snapshots(false))
        .await?;
    let expected: Json = serde_json::from_str(&reference.state)?;
    let (id, big_uri, expected) = (&id, &big_uri, &expected);
    let n = p.server_big_reads;
    let s = alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let mut ms = 0.0;
        for _ in 0..n {
            let t = Instant::now();
            match via {
                Via::Library => {
                    let r = ctx
                        .rt
                        .state(TYPE, id, ReplayOptions::default().use_snapshots(false))
                        .await?;
                    ms += t.elapsed().as_secs_f64() * 1e3;
                    ensure!(r.events_read == BIG, "read {}", r.events_read);
                }
                Via::Server => {
                    let mut c = one.lock().await;
                    let before = c.errors.clone();
                    let resp = c.get(big_uri.clone()).await;
                    ms += t.elapsed().as_secs_f64() * 1e3;
                    if round >= p.warmup {
                        tally.add("big", &errors_since(&before, &c.errors));
                    }
                    if let Some(resp) = resp {
                        let got: Json = serde_json::from_slice(resp.body())?;
                        ensure!(&got == expected, "the server's state of {id} differs");
                    }
                }
            }
        }
        Ok(ms / n as f64)
    })
    .await?;
    rows.extend(pair(
        "server.state100k",
        &format!(
            "Through the server: state of a {}-event aggregate, 1 client",
            fmt_count(BIG)
        ),
        (
            "library: Runtime::state, active reducer, no snapshot (every event replayed)",
            "server: GET .../state?snapshot=false",
        ),
        "ms/read",
        &s,
        Compare::Time,
        Some(tally.of("big").summary()),
    ));
    Ok(rows)
}

/// One delivery sample: latencies (ms) of every event, the append rate reached,
/// and the errors.
#[derive(Debug, Default)]
struct Delivery {
    ms: Vec<f64>,
    rate: f64,
    errors: Errors,
}

fn ns(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A subscriber on a new aggregate, an appender at [`SSE_RATE`] for `seconds`;
/// each event's latency is from just before its append call to the moment the
/// subscriber has it (parsed, for SSE).
async fn delivery_sample(
    ctx: &Ctx,
    addr: SocketAddr,
    via: Via,
    id: &str,
    seconds: f64,
) -> Result<Delivery> {
    let base = Instant::now();
    let (tx, mut arrivals) = mpsc::unbounded_channel::<(u64, u64)>();
    let (ready, caught_up) = oneshot::channel::<()>();
    let subscriber = match via {
        Via::Library => {
            let mut sub = ctx
                .store
                .subscribe(TYPE, id, SubscribeOptions::new())
                .await?;
            tokio::spawn(async move {
                let mut ready = Some(ready);
                while let Some(item) = sub.next().await {
                    match item? {
                        Live::CaughtUp { .. } => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(());
                            }
                        }
                        Live::Event(e) => {
                            let sent = tx.send((e.revision, ns(base)));
                            if sent.is_err() {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                anyhow::Ok(())
            })
        }
        Via::Server => {
            let mut c = Client::connect(addr).await?;
            let resp = c
                .stream(uri(format!("/v1/aggregates/{TYPE}/{id}/subscribe"))?)
                .await?;
            let mut sse = SseReader::new(resp);
            #[derive(serde::Deserialize)]
            struct Rev {
                revision: u64,
            }
            tokio::spawn(async move {
                let _c = c;
                let mut ready = Some(ready);
                while let Some(m) = sse.next().await? {
                    match m.event.as_str() {
                        "caught-up" => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(());
                            }
                        }
                        "event" => {
                            let rev: Rev = serde_json::from_str(&m.data)?;
                            if tx.send((rev.revision, ns(base))).is_err() {
                                break;
                            }
                        }
                        other => anyhow::bail!("unexpected SSE event {other}: {}", m.data),
                    }
                }
                anyhow::Ok(())
            })
        }
    };
    tokio::time::timeout(Duration::from_secs(10), caught_up)
        .await
        .context("no caught-up within 10 s")?
        .context("the subscriber ended before caught-up")?;

    // The appender: one append per tick of a 1 ms interval; a late tick fires at
    // once (MissedTickBehavior::Burst), so the offered rate stays 1,000/s.
    let total = (seconds * SSE_RATE as f64) as u64;
    let mut client = match via {
        Via::Server => Some(Client::connect(addr).await?),
        Via::Library => None,
    };
    let events_uri = events_uri(id)?;
    let mut starts: Vec<(u64, u64)> = Vec::with_capacity(total as usize);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / SSE_RATE));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    tick.tick().await;
    let t = Instant::now();
    for r in 1..=total {
        let (lib, body) = (new_events(1, r..r + 1), append_body(1, r..r + 1));
        tick.tick().await;
        let start = ns(base);
        let revision = match &mut client {
            None => Some(
                ctx.store
                    .append(TYPE, id, lib, ExpectedRevision::Any)
                    .await?
                    .last_revision,
            ),
            Some(c) => match c.post_json(events_uri.clone(), body).await {
                Some(resp) => {
                    let v: Json = serde_json::from_slice(resp.body())?;
                    v["last_revision"].as_u64()
                }
                None => None,
            },
        };
        if let Some(rev) = revision {
            starts.push((rev, start));
        }
    }
    let rate = total as f64 / t.elapsed().as_secs_f64();
    let mut errors = client.map(|c| c.errors).unwrap_or_default();

    // Every appended event must arrive.
    let mut arrived = std::collections::HashMap::with_capacity(starts.len());
    let deadline = tokio::time::Instant::now() + SSE_DRAIN;
    while arrived.len() < starts.len() {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((rev, at))) => {
                arrived.insert(rev, at);
            }
            _ => break,
        }
    }
    subscriber.abort();
    if let Ok(Err(e)) = subscriber.await.map_err(|_| ()) {
        errors.record("subscriber", format!("{e:#}"));
    }
    let mut ms = Vec::with_capacity(starts.len());
    let mut missing = 0;
    for (rev, start) in &starts {
        match arrived.get(rev) {
            Some(at) => ms.push(at.saturating_sub(*start) as f64 / 1e6),
            None => missing += 1,
        }
    }
    if missing > 0 {
        errors.record(
            "not delivered",
            format!(
                "{missing} of {} appended events not delivered within {SSE_DRAIN:?}",
                starts.len()
            ),
        );
    }
    Ok(Delivery { ms, rate, errors })
}

/// The `q` quantile (0..=1) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn delivery(ctx: &Ctx, addr: SocketAddr, tally: &Tally) -> Result<Vec<Row>> {
    let p = &ctx.plan;
    let seconds = p.sse_seconds;
    // Per variant: per measured round (p50, p99, max, rate), and every latency.
    let per_round: Mutex<[Vec<[f64; 4]>; 2]> = Mutex::new([Vec::new(), Vec::new()]);
    let pooled: Mutex<[Vec<f64>; 2]> = Mutex::new([Vec::new(), Vec::new()]);
    let (per_round_ref, pooled_ref) = (&per_round, &pooled);
    alternate(&VIAS, p.warmup, p.rounds, |via, round| async move {
        let id = format!("srv-sse-{round}-{via:?}");
        let mut d = delivery_sample(ctx, addr, via, &id, seconds).await?;
        d.ms.sort_by(f64::total_cmp);
        if round >= p.warmup {
            let i = via as usize;
            per_round_ref.lock().expect("rounds")[i].push([
                quantile(&d.ms, 0.5),
                quantile(&d.ms, 0.99),
                d.ms.last().copied().unwrap_or(f64::NAN),
                d.rate,
            ]);
            pooled_ref.lock().expect("pooled")[i].extend_from_slice(&d.ms);
            if via == Via::Server {
                tally.add("sse", &d.errors);
            } else if d.errors.count > 0 {
                ctx.note(format!("library delivery: {}", d.errors.summary()));
            }
        }
        Ok(0.0)
    })
    .await?;
    let per_round = per_round.into_inner().expect("rounds");
    let mut pooled = pooled.into_inner().expect("pooled");
    let section = format!(
        "Through the server: append -> live delivery at {} events/s, one subscriber, {seconds} s per round",
        fmt_count(SSE_RATE)
    );
    let mut rows = Vec::new();
    let col = |i: usize, k: usize| -> Vec<f64> { per_round[i].iter().map(|r| r[k]).collect() };
    let names = [
        "library: EventStore::subscribe, EventStore::append",
        "server: SSE GET .../subscribe, POST .../events",
    ];
    for (k, stat) in ["p50", "p99", "max"].iter().enumerate() {
        for (i, via) in ["library", "server"].iter().enumerate() {
            let mut r = row(
                &format!("server.sse.{via}.{stat}"),
                &section,
                &format!("{}: {stat} per round", names[i]),
                "ms",
                &col(i, k),
            );
            if i == 1 {
                r.ratios.push(times(
                    &col(1, k),
                    &col(0, k),
                    &format!("server.sse.library.{stat}"),
                    "the library's",
                ));
            }
            rows.push(r);
        }
    }
    for (i, via) in ["library", "server"].iter().enumerate() {
        pooled[i].sort_by(f64::total_cmp);
        let all = &pooled[i];
        let p99 = quantile(all, 0.99);
        let mut r = row(
            &format!("server.sse.{via}.pooled-p99"),
            &section,
            &format!(
                "{}: p99 of all measured rounds' {} events",
                names[i],
                fmt_count(all.len() as u64)
            ),
            "ms",
            &[p99],
        );
        let rate = Stat::of(&col(i, 3)).median;
        let mut note = format!(
            "pooled p50 {} ms, p99.9 {} ms, max {} ms; appends at {} events/s (median of rounds); pacing: tokio interval of 1 ms, MissedTickBehavior::Burst",
            fmt_num(quantile(all, 0.5)),
            fmt_num(quantile(all, 0.999)),
            fmt_num(all.last().copied().unwrap_or(f64::NAN)),
            fmt_num(rate.round())
        );
        if i == 1 {
            note = format!("{}; {note}", tally.of("sse").summary());
        }
        r.note = Some(note);
        rows.push(r);
    }
    Ok(rows)
}

/// 32 clients for the plan's soak time, each alternating a single-event append to
/// an aggregate of its own and a state read of a 10-event aggregate.
async fn soak(
    ctx: &Ctx,
    many: &tokio::sync::Mutex<Vec<Client>>,
    replay_bound: usize,
) -> Result<Vec<Row>> {
    let seconds = ctx.plan.soak_seconds;
    let mut clients = std::mem::take(&mut *many.lock().await);
    let before: Vec<Errors> = clients.iter().map(|c| c.errors.clone()).collect();
    let ids: Vec<String> = (0..SMALL).map(|i| format!("srv10-{i}")).collect();
    let instances = instances_made(ctx).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut c) in clients.drain(..).enumerate() {
        let append_uri = events_uri(&format!("srv-soak-{w}"))?;
        let reads: Vec<Uri> = (0..SMALL)
            .map(|i| state_uri(&ids[(w * 37 + i) % SMALL], ""))
            .collect::<Result<_>>()?;
        let body = append_body(1, 2..3);
        tasks.push(tokio::spawn(async move {
            let (mut appends, mut states) = (Vec::new(), Vec::new());
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                if i.is_multiple_of(2) {
                    if c.post_json(append_uri.clone(), body.clone())
                        .await
                        .is_some()
                    {
                        appends.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                } else if c.get(reads[(i / 2) % SMALL].clone()).await.is_some() {
                    states.push(t.elapsed().as_secs_f64() * 1e3);
                }
                i += 1;
            }
            (c, appends, states, i as u64)
        }));
    }
    let (mut appends, mut states, mut requests) = (Vec::new(), Vec::new(), 0u64);
    for task in tasks {
        let (c, a, s, n) = task.await?;
        appends.extend(a);
        states.extend(s);
        requests += n;
        clients.push(c);
    }
    let secs = t.elapsed().as_secs_f64();
    let instances = instances_made(ctx).await? - instances;
    let mut errors = Errors::default();
    for (b, c) in before.iter().zip(&clients) {
        errors.merge(&errors_since(b, &c.errors));
    }
    *many.lock().await = clients;
    appends.sort_by(f64::total_cmp);
    states.sort_by(f64::total_cmp);

    let section = format!(
        "Through the server: soak, {CLIENTS} clients for {seconds} s, appends and 10-event state reads in turn"
    );
    let mut rows = Vec::new();
    let mut r = row(
        "server.soak.requests",
        &section,
        "requests answered (2xx or not), all clients",
        "requests/s",
        &[requests as f64 / secs],
    );
    r.note = Some(format!(
        "{} appends/s and {} state reads/s answered 2xx; {} new reducer instances per state read",
        fmt_num(appends.len() as f64 / secs),
        fmt_num(states.len() as f64 / secs),
        fmt_num(instances as f64 / states.len().max(1) as f64)
    ));
    rows.push(r);
    let mut r = row(
        "server.soak.errors",
        &section,
        "errors: non-2xx answers and I/O errors",
        "errors",
        &[errors.count as f64],
    );
    r.note = Some(format!(
        "{} of {} requests; max_concurrent_replays {replay_bound} (default), replay_queue_timeout default",
        errors.summary(),
        fmt_count(requests)
    ));
    rows.push(r);
    for (what, v) in [("append", &appends), ("state", &states)] {
        let mut r = row(
            &format!("server.soak.{what}.p99"),
            &section,
            &format!("{what} latency p99 (2xx answers)"),
            "ms",
            &[quantile(v, 0.99)],
        );
        r.note = Some(format!(
            "p50 {} ms, max {} ms",
            fmt_num(quantile(v, 0.5)),
            fmt_num(v.last().copied().unwrap_or(f64::NAN))
        ));
        rows.push(r);
    }
    Ok(rows)
}
