//! Replay of one aggregate (1,000 / 10,000 / 100,000 events), every way it can be
//! done, alternating in the same rounds:
//!
//! - the floor: the same `XRANGE` pages fetched on the store's read connection, not
//!   decoded; and the same pages parsed into `redis::Value`s by the `redis` crate (how
//!   the store read before it had its own reply reader);
//! - `history()`: pages decoded into envelopes, no reducer;
//! - native: the `user` logic compiled into this process (the guest SDK's
//!   `Aggregate`, the very code the component runs), fed the same `history()` pages
//!   with the same fetch/fold overlap as the runtime: the WASM overhead ratio;
//! - the Rust, JavaScript and Python `user` components through `Runtime::state`;
//! - the seed's Python (`bench/seed_reference.py`), with redis-py's default parser
//!   (hiredis) and its pure-Python one;
//! - and all of it again from a snapshot 100 events before the end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use redis::Value;
use serde_json::Value as Json;
use streamfold::Plugin;
use streamfold::{EventStore, ReplayOptions};
use streamfold::{ExpectedRevision, Page, ReadOptions, Snapshot};
use streamfold_guest::{Aggregate, Event, Reducer};
use streamfold_store::Connection;
use tokio::sync::mpsc;
use user::User;

use crate::data::{self, TYPE};
use crate::external::Parser;
use crate::report::Row;
use crate::stats::alternate;
use crate::{Ctx, Lang, faster, fmt_count, row, times};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    Floor,
    FloorValue,
    Decode,
    Native,
    Wasm(Lang),
    Seed(Parser),
}

impl V {
    fn label(self) -> &'static str {
        match self {
            V::Floor => "floor",
            V::FloorValue => "floor-value",
            V::Decode => "history",
            V::Native => "native",
            V::Wasm(Lang::Rust) => "wasm-rust",
            V::Wasm(Lang::JavaScript) => "wasm-js",
            V::Wasm(Lang::Python) => "wasm-py",
            V::Seed(Parser::Default) => "seed",
            V::Seed(Parser::Python) => "seed-pure",
        }
    }

    /// The variants `--profile` can loop on.
    pub fn profilable() -> [V; 7] {
        [
            V::Floor,
            V::FloorValue,
            V::Decode,
            V::Native,
            V::Wasm(Lang::Rust),
            V::Wasm(Lang::JavaScript),
            V::Wasm(Lang::Python),
        ]
    }
}

/// The aggregate a replay variant reads.
#[derive(Debug)]
pub struct Target {
    pub n: u64,
    pub id: String,
    pub key: String,
    pub page: usize,
}

/// One run of a variant: milliseconds, and the state when it makes one.
async fn run_variant(ctx: &Ctx, v: V, target: &Target) -> Result<(f64, Option<String>)> {
    let Target { n, id, key, page } = target;
    let (n, page) = (*n, *page);
    let store = &ctx.store;
    let t = Instant::now();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    match v {
        V::Floor => {
            let got = floor(store, key, "-", page).await?;
            ensure!(got == n as usize, "floor read {got} entries");
        }
        V::FloorValue => {
            let got = floor_value(&mut store.connection(), key, "-", page).await?;
            ensure!(got == n as usize, "redis::Value floor read {got} entries");
        }
        V::Decode => {
            let mut h = store.history(TYPE, id, ReadOptions::default());
            let mut got = 0;
            while let Some(page) = h.next_page().await? {
                got += page.len();
            }
            ensure!(got == n as usize, "history() read {got} events");
        }
        V::Native => {
            let state = native_replay(store, id).await?;
            return Ok((ms(t), Some(state)));
        }
        V::Wasm(lang) => {
            let r = ctx
                .rt
                .state(TYPE, id, full(ctx.reducers.get(lang).clone()))
                .await?;
            let ms = ms(t);
            ensure!(r.events_read == n, "{lang:?} read {}", r.events_read);
            return Ok((ms, Some(r.state)));
        }
        V::Seed(parser) => {
            let mut seed = ctx.seed.lock().await;
            let run = seed
                .as_mut()
                .context("seed reference")?
                .replay(key, parser)
                .await?;
            return Ok((run.seconds * 1e3, Some(run.state)));
        }
    }
    Ok((ms(t), None))
}

/// `--profile VARIANT`: makes the aggregate, then runs one variant back to back
/// for `seconds`, printing each run, for `perf record` or `valgrind --tool=callgrind`.
pub async fn profile(ctx: &Ctx, name: &str, n: u64, seconds: f64) -> Result<()> {
    let v = V::profilable()
        .into_iter()
        .find(|v| v.label() == name)
        .with_context(|| {
            let names: Vec<_> = V::profilable().iter().map(|v| v.label()).collect();
            format!("--profile takes one of {}", names.join(", "))
        })?;
    if let V::Wasm(lang) = v {
        ensure!(
            ctx.reducers.langs().any(|l| l == lang),
            "the {} component is not built",
            lang.title()
        );
    }
    let id = ensure_aggregate(ctx, n).await?;
    let target = Target {
        n,
        key: ctx.store.keys(TYPE, &id)?.stream,
        id,
        page: ctx.store.config().page_size,
    };
    let t = Instant::now();
    let mut runs = Vec::new();
    while t.elapsed().as_secs_f64() < seconds || runs.is_empty() {
        let (ms, _) = run_variant(ctx, v, &target).await?;
        eprintln!("{name}: {ms:.2} ms");
        runs.push(ms);
    }
    let s = crate::stats::Stat::of(&runs);
    println!(
        "{name}, {} events: {} runs, median {:.2} ms, min {:.2}, max {:.2}",
        fmt_count(n),
        s.runs,
        s.median,
        s.min,
        s.max
    );
    Ok(())
}

/// The `replay-N` aggregate of N `user` events, appended now if it is not there.
pub async fn ensure_aggregate(ctx: &Ctx, n: u64) -> Result<String> {
    let store = &ctx.store;
    let id = format!("replay-{n}");
    let have = store.revision(TYPE, &id).await?;
    if have != n {
        ensure!(have == 0, "{id} exists with another length");
        let mut rev = 0;
        while rev < n {
            let batch = (rev..(rev + 1000).min(n))
                .map(|r| data::new_event(n, r + 1))
                .collect();
            rev = store
                .append(TYPE, &id, batch, ExpectedRevision::Exact(rev))
                .await?
                .last_revision;
        }
    }
    Ok(id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Floor,
    Wasm(Lang),
    Seed,
}

/// Replays per measured sample from a snapshot (each is ~1 ms: one is too noisy).
const SNAPSHOT_REPEAT: usize = 20;
/// Events before the end where the snapshot is.
const SNAPSHOT_BACK: u64 = 100;

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &n in &ctx.plan.replay_sizes {
        eprintln!("  replay: {} events", fmt_count(n));
        rows.extend(size(ctx, n).await?);
    }
    Ok(rows)
}

async fn size(ctx: &Ctx, n: u64) -> Result<Vec<Row>> {
    let id = ensure_aggregate(ctx, n).await?;
    let store = &ctx.store;
    let key = store.keys(TYPE, &id)?.stream;
    let page = store.config().page_size;

    // The state every way must agree on.
    let reference = ctx
        .rt
        .state(TYPE, &id, full(ctx.reducers.rust.clone()))
        .await?;
    let expected: Json = serde_json::from_str(&reference.state)?;
    let check = |what: &str, state: &str| -> Result<()> {
        let got: Json = serde_json::from_str(state).with_context(|| what.to_owned())?;
        ensure!(
            got == expected,
            "{what} replayed {id} to another state:\n{got}\nnot\n{expected}"
        );
        Ok(())
    };

    let mut variants = vec![V::Floor, V::FloorValue, V::Decode, V::Native];
    for lang in ctx.reducers.langs() {
        variants.push(V::Wasm(lang));
    }
    let seed = ctx.seed.lock().await.is_some();
    if seed {
        variants.push(V::Seed(Parser::Default));
        if n <= ctx.plan.seed_pure_max {
            variants.push(V::Seed(Parser::Python));
        }
    }
    let target = &Target {
        n,
        id: id.clone(),
        key: key.clone(),
        page,
    };
    let s = alternate(
        &variants,
        ctx.plan.warmup,
        ctx.plan.rounds,
        |v, _| async move {
            let (ms, state) = run_variant(ctx, v, target).await?;
            if let Some(state) = state {
                check(v.label(), &state)?;
            }
            Ok(ms)
        },
    )
    .await?;

    let section = format!("Replay of one aggregate, {} events", fmt_count(n));
    let k = |name: &str| format!("replay.{n}.{name}");
    let at = |v: V| variants.iter().position(|x| *x == v);
    let series = |v: V| at(v).map(|i| s[i].as_slice());
    let floor = series(V::Floor).context("floor")?;
    let seed_default = series(V::Seed(Parser::Default));
    let seed_pure = series(V::Seed(Parser::Python));
    let native = series(V::Native).context("native")?;
    let rate = |samples: &[f64]| {
        format!(
            "{} events/s",
            crate::report::fmt_num(n as f64 / (crate::stats::Stat::of(samples).median / 1e3))
        )
    };
    let mut out = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let samples = &s[i];
        let mut r = match v {
            V::Floor => row(
                &k("floor"),
                &section,
                "floor: the same XRANGE pages of 1,000 on the store's read connection, not decoded, no reducer",
                "ms",
                samples,
            ),
            V::FloorValue => {
                let mut r = row(
                    &k("floor-value"),
                    &section,
                    "the same pages parsed into redis::Value by the redis crate (how history() read before the lean reader)",
                    "ms",
                    samples,
                );
                r.ratios
                    .push(times(samples, floor, &k("floor"), "the floor's time"));
                r
            }
            V::Decode => {
                let mut r = row(
                    &k("history"),
                    &section,
                    "history(): pages decoded into envelopes, no reducer",
                    "ms",
                    samples,
                );
                r.ratios
                    .push(times(samples, floor, &k("floor"), "the floor's time"));
                r
            }
            V::Native => {
                let mut r = row(
                    &k("native"),
                    &section,
                    "native Rust: the same user logic in the host, same pages",
                    "ms",
                    samples,
                );
                r.ratios
                    .push(times(samples, floor, &k("floor"), "the floor's time"));
                r
            }
            V::Wasm(lang) => {
                let mut r = row(
                    &k(&format!("wasm-{}", lang.name())),
                    &section,
                    &format!("Streamfold, {} component (Runtime::state)", lang.title()),
                    "ms",
                    samples,
                );
                if *lang == Lang::Rust {
                    r.ratios
                        .push(times(samples, native, &k("native"), "native's time"));
                    r.ratios
                        .push(times(samples, floor, &k("floor"), "the floor's time"));
                }
                if let Some(seed) = seed_default {
                    r.ratios.push(faster(
                        samples,
                        seed,
                        &k("seed"),
                        "the seed's speed (hiredis)",
                        true,
                    ));
                }
                if *lang == Lang::Rust
                    && let Some(seed) = seed_pure
                {
                    r.ratios.push(faster(
                        samples,
                        seed,
                        &k("seed-pure"),
                        "the seed's speed (pure-Python parser)",
                        true,
                    ));
                }
                r
            }
            V::Seed(Parser::Default) => row(
                &k("seed"),
                &section,
                "seed's Python: redis-py + hiredis, XRANGE - +, json.loads, handlers",
                "ms",
                samples,
            ),
            V::Seed(Parser::Python) => row(
                &k("seed-pure"),
                &section,
                "seed's Python with redis-py's pure-Python parser",
                "ms",
                samples,
            ),
        };
        r.note = Some(rate(samples));
        out.push(r);
    }

    out.extend(snapshots(ctx, n, &id, &key, seed).await?);
    Ok(out)
}

/// A full replay through `plugin`: no snapshot, nothing saved.
fn full(plugin: Arc<Plugin>) -> ReplayOptions {
    ReplayOptions::default().use_snapshots(false).plugin(plugin)
}

/// Replays from a snapshot [`SNAPSHOT_BACK`] events before the end.
async fn snapshots(ctx: &Ctx, n: u64, id: &str, key: &str, seed: bool) -> Result<Vec<Row>> {
    if n <= SNAPSHOT_BACK {
        return Ok(Vec::new());
    }
    let store = &ctx.store;
    let at = n - SNAPSHOT_BACK;
    let mut position = String::new();
    let mut seed_state = String::new();
    for lang in ctx.reducers.langs() {
        let plugin = ctx.reducers.get(lang).clone();
        let r = ctx
            .rt
            .state(TYPE, id, full(plugin.clone()).at_revision(at))
            .await?;
        store
            .save_snapshot(
                TYPE,
                id,
                &Snapshot::new(&r.state, r.revision, &r.position, &plugin.info().digest),
            )
            .await?;
        position = r.position;
        seed_state = r.state;
    }
    let seed_key = format!("seed:snapshot:{TYPE}:{id}");
    let mut con = store.connection();
    redis::cmd("HSET")
        .arg(&seed_key)
        .arg("state")
        .arg(&seed_state)
        .arg("version_id")
        .arg(&position)
        .query_async::<()>(&mut con)
        .await?;

    let mut variants = vec![S::Floor];
    variants.extend(ctx.reducers.langs().map(S::Wasm));
    if seed {
        variants.push(S::Seed);
    }
    let snapshot_key = store.keys(TYPE, id)?.snapshot;
    let digest = ctx.reducers.rust.info().digest.clone();
    let (position, snapshot_key, seed_key, digest) = (&position, &snapshot_key, &seed_key, &digest);
    let s = alternate(
        &variants,
        ctx.plan.warmup,
        ctx.plan.rounds,
        |v, _| async move {
            let mut total = 0.0;
            for _ in 0..SNAPSHOT_REPEAT {
                let t = Instant::now();
                match v {
                    S::Floor => {
                        // What a snapshot replay must fetch: the snapshot, then the tail.
                        let mut con = store.connection();
                        let snap: Value = redis::cmd("HGET")
                            .arg(snapshot_key)
                            .arg(digest)
                            .query_async(&mut con)
                            .await?;
                        ensure!(!matches!(snap, Value::Nil), "no snapshot");
                        let got = floor(
                            store,
                            key,
                            &format!("({position}"),
                            store.config().page_size,
                        )
                        .await?;
                        ensure!(got == SNAPSHOT_BACK as usize, "tail of {got}");
                    }
                    S::Wasm(lang) => {
                        let opts = ReplayOptions::default().plugin(ctx.reducers.get(lang).clone());
                        let r = ctx.rt.state(TYPE, id, opts).await?;
                        ensure!(
                            r.snapshot_revision == Some(at) && r.events_read == SNAPSHOT_BACK,
                            "{lang:?} did not start from the snapshot"
                        );
                    }
                    S::Seed => {
                        let mut seed = ctx.seed.lock().await;
                        let run = seed
                            .as_mut()
                            .context("seed reference")?
                            .replay_snapshot(key, seed_key, Parser::Default)
                            .await?;
                        total += run.seconds * 1e3;
                        continue;
                    }
                }
                total += t.elapsed().as_secs_f64() * 1e3;
            }
            Ok(total / SNAPSHOT_REPEAT as f64)
        },
    )
    .await?;

    let section = format!(
        "Replay of one aggregate, {} events, from a snapshot {SNAPSHOT_BACK} events before the end",
        fmt_count(n)
    );
    let k = |name: &str| format!("snapshot.{n}.{name}");
    let mut out = Vec::new();
    let seed_series = variants
        .iter()
        .position(|v| *v == S::Seed)
        .map(|i| s[i].clone());
    let floor = s[0].clone();
    for (i, v) in variants.iter().enumerate() {
        let samples = &s[i];
        out.push(match v {
            S::Floor => row(
                &k("floor"),
                &section,
                "floor: HGET snapshot + XRANGE of the last 100 on the read connection, not decoded",
                "ms",
                samples,
            ),
            S::Wasm(lang) => {
                let mut r = row(
                    &k(&format!("wasm-{}", lang.name())),
                    &section,
                    &format!(
                        "Streamfold, {} component: snapshot + 100 events",
                        lang.title()
                    ),
                    "ms",
                    samples,
                );
                r.ratios
                    .push(times(samples, &floor, &k("floor"), "the floor's time"));
                if let Some(seed) = &seed_series {
                    r.ratios.push(faster(
                        samples,
                        seed,
                        &k("seed"),
                        "the speed of the seed's load_with_snapshot",
                        true,
                    ));
                }
                r
            }
            S::Seed => {
                let mut r = row(
                    &k("seed"),
                    &section,
                    "seed's Python load_with_snapshot (hiredis)",
                    "ms",
                    samples,
                );
                r.note = Some(
                    "the seed reads XRANGE from the snapshot's id inclusive: 101 events".to_owned(),
                );
                r
            }
        });
    }
    Ok(out)
}

/// Pages of `XRANGE` into `redis::Value`, stopping like `history()` does (a short
/// page ends it). Returns the number of entries.
pub async fn floor_value(
    con: &mut Connection,
    key: &str,
    start: &str,
    page: usize,
) -> Result<usize> {
    let mut start = start.to_owned();
    let mut total = 0;
    loop {
        let v: Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(page)
            .query_async(con)
            .await?;
        let Value::Array(items) = v else { break };
        total += items.len();
        if items.len() < page {
            break;
        }
        let Some(Value::Array(last)) = items.last() else {
            break;
        };
        let Some(Value::BulkString(id)) = last.first() else {
            break;
        };
        start = format!("({}", String::from_utf8_lossy(id));
    }
    Ok(total)
}

/// The floor: every page fetched on the store's read connection, not decoded.
pub async fn floor(store: &EventStore, key: &str, start: &str, page: usize) -> Result<usize> {
    let mut start = start.to_owned();
    let mut total = 0;
    loop {
        let (n, last) = store.fetch_page_undecoded(key, &start, page).await?;
        total += n;
        match last {
            Some(id) if n == page => start = format!("({id}"),
            _ => break,
        }
    }
    Ok(total)
}

/// The runtime's replay with the component swapped for [`User`]: the same
/// `history()` pages, fetched by a task while a blocking thread folds (a channel of
/// two pages between them), the same event conversion, state serialized at the end.
async fn native_replay(store: &EventStore, id: &str) -> Result<String> {
    let mut history = store.history(TYPE, id, ReadOptions::default());
    let (tx, mut rx) = mpsc::channel::<streamfold_store::Result<Page>>(2);
    let fetch = tokio::spawn(async move {
        loop {
            let page = history.next_page().await;
            let last = !matches!(page, Ok(Some(_)));
            match page.transpose() {
                Some(page) => {
                    if tx.send(page).await.is_err() || last {
                        break;
                    }
                }
                None => break,
            }
        }
    });
    let id = id.to_owned();
    let folded = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut agg = Aggregate::<User>::new(&id);
        let mut batch = Vec::new();
        while let Some(page) = rx.blocking_recv() {
            batch.clear();
            // The guest lifts each string into its own `String`: so does this.
            for e in &page? {
                if User::HANDLES.contains(&e.event_type) {
                    batch.push(
                        Event::new(e.revision, e.event_type.to_owned(), e.data.to_owned())
                            .with_timestamp(e.timestamp)
                            .with_schema_version(e.version.parse().unwrap_or(1)),
                    );
                }
            }
            agg.apply(&batch)
                .map_err(|e| anyhow::anyhow!("native user: {e:?}"))?;
        }
        agg.state_json()
            .map_err(|e| anyhow::anyhow!("native user: {e:?}"))
    })
    .await;
    fetch.abort();
    folded?
}
