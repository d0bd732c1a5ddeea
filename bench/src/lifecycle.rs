//! Plugin life cycle: compiling a component cold, loading it from the compiled-code
//! cache, a fresh instance per replay, the time from `activate` to the first replay
//! on the new version in another running host, and replay-diff `verify` throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use streamfold::{EventStore, ReplayOptions, Runtime};
use streamfold::{ExpectedRevision, StoreConfig};
use streamfold::{LoadSource, VerifyOptions};

use crate::data::{self, TYPE};
use crate::report::Row;
use crate::stats::{Stat, alternate};
use crate::{Ctx, Lang, faster, fmt_count, row};

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(compile(ctx).await?);
    rows.extend(instantiate(ctx).await?);
    if let Some(v2) = &ctx.user_v2 {
        rows.extend(activation(ctx, v2).await?);
        rows.extend(verify(ctx, v2).await?);
    }
    Ok(rows)
}

/// Cold compile (a runtime with an empty cache folder) and load from the on-disk
/// cache (a new runtime, so not from memory), alternating.
async fn compile(ctx: &Ctx) -> Result<Vec<Row>> {
    let section = "Plugin life cycle: compile and load";
    let mut rows = Vec::new();
    for lang in ctx.reducers.langs() {
        let rounds = match lang {
            Lang::Rust => ctx.plan.rounds,
            _ => ctx.plan.big_compile_rounds,
        };
        if rounds == 0 {
            ctx.note(format!(
                "{} component: cold compile not measured in {} mode (~10 s each); `--full` does",
                lang.title(),
                ctx.plan.mode
            ));
            continue;
        }
        let bytes: Arc<[u8]> = ctx.reducers.bytes(lang).into();
        let warmup = if lang == Lang::Rust {
            ctx.plan.warmup
        } else {
            0
        };
        let dir = tempfile::Builder::new()
            .prefix("compile-")
            .tempdir_in(&ctx.tmp_dir)?;
        let dir = dir.path();
        // Each round compiles into a fresh folder, then loads from it (in that
        // order: the second needs the first).
        let mut s = [Vec::new(), Vec::new()];
        for round in 0..warmup + rounds {
            let folder = dir.join(format!("r{round}"));
            for (i, want) in [LoadSource::Compiled, LoadSource::DiskCache]
                .into_iter()
                .enumerate()
            {
                let rt = Runtime::new(ctx.store.clone(), ctx.runtime_config(Some(folder.clone())))?;
                let t = Instant::now();
                let (_, source) = rt.load_async(bytes.clone()).await?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                ensure!(source == want, "a load meant to be {want:?} was {source:?}");
                if round >= warmup {
                    s[i].push(ms);
                }
            }
        }
        let size = bytes.len() as f64 / 1024.0;
        let mut cold = row(
            &format!("lifecycle.compile.{}", lang.name()),
            section,
            &format!(
                "{}: validate + compile ({size:.0} KiB component)",
                lang.title()
            ),
            "ms",
            &s[0],
        );
        cold.note = Some("new runtime, empty cache folder".to_owned());
        let mut cached = row(
            &format!("lifecycle.load-cached.{}", lang.name()),
            section,
            &format!("{}: load from the compiled-code cache", lang.title()),
            "ms",
            &s[1],
        );
        cached.note = Some("new runtime, so not from memory".to_owned());
        cached.ratios.push(faster(
            &s[1],
            &s[0],
            &format!("lifecycle.compile.{}", lang.name()),
            "faster than the cold compile",
            true,
        ));
        rows.push(cold);
        rows.push(cached);
    }
    Ok(rows)
}

#[derive(Debug, Clone, Copy)]
enum I {
    Fetch,
    Replay(Lang),
}

/// A replay of a 1-event aggregate (a fresh instance, constructor, one `apply`,
/// `state`), next to fetching that event alone: the difference is what an instance
/// costs per replay.
async fn instantiate(ctx: &Ctx) -> Result<Vec<Row>> {
    let section = "Plugin life cycle: fresh instance per replay (1-event aggregate)";
    let id = "one-event";
    let store = &ctx.store;
    if store.revision(TYPE, id).await? == 0 {
        store
            .append(
                TYPE,
                id,
                vec![data::new_event(1, 1)],
                ExpectedRevision::NoStream,
            )
            .await?;
    }
    let key = &store.keys(TYPE, id)?.stream;
    let iters = ctx.plan.instantiate_iters;
    let mut variants = vec![I::Fetch];
    variants.extend(ctx.reducers.langs().map(I::Replay));
    let s = alternate(
        &variants,
        ctx.plan.warmup,
        ctx.plan.rounds,
        |v, _| async move {
            let iters = match v {
                I::Replay(Lang::Python | Lang::JavaScript) => iters / 4,
                _ => iters,
            }
            .max(1);
            let t = Instant::now();
            for _ in 0..iters {
                match v {
                    I::Fetch => {
                        crate::replay::floor(store, key, "-", 1000).await?;
                    }
                    I::Replay(lang) => {
                        let opts = ReplayOptions::default()
                            .use_snapshots(false)
                            .plugin(ctx.reducers.get(lang).clone());
                        ctx.rt.state(TYPE, id, opts).await?;
                    }
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / iters as f64)
        },
    )
    .await?;
    let fetch = Stat::of(&s[0]).median;
    let mut rows = vec![row(
        "lifecycle.instance.fetch",
        section,
        "fetch the one event (XRANGE on the store's read connection, not decoded)",
        "µs",
        &s[0],
    )];
    for (i, v) in variants.iter().enumerate().skip(1) {
        let I::Replay(lang) = v else { continue };
        let mut r = row(
            &format!("lifecycle.instance.{}", lang.name()),
            section,
            &format!(
                "{}: replay = fetch + fresh instance + constructor + apply + state",
                lang.title()
            ),
            "µs",
            &s[i],
        );
        r.note = Some(format!(
            "instance + calls ~ {:.0} µs (replay minus fetch, medians)",
            Stat::of(&s[i]).median - fetch
        ));
        rows.push(r);
    }
    Ok(rows)
}

/// Host A follows activations; host B registers and activates; A replays in a
/// loop until a replay comes from the new version. Measured from just before B's
/// `activate` call. Alternates v2 and v1 (a rollback is an activation too).
async fn activation(ctx: &Ctx, user_v2: &[u8]) -> Result<Vec<Row>> {
    let section = "Plugin life cycle: activate -> first replay on the new version (another host)";
    let config = StoreConfig::default().prefix("live");
    let b_store = EventStore::connect(&ctx.url, config.clone()).await?;
    let b = Runtime::new(
        b_store.clone(),
        ctx.runtime_config(Some(ctx.cache_dir.clone())),
    )?;
    let v1 = b
        .register(
            ctx.reducers.bytes(Lang::Rust),
            streamfold::RegisterOptions::default(),
        )
        .await?;
    let id = "live-1";
    if b_store.revision(TYPE, id).await? == 0 {
        let events = (1..=3).map(|r| data::new_event(1, r)).collect();
        b_store
            .append(TYPE, id, events, ExpectedRevision::NoStream)
            .await?;
    }
    let a = Runtime::new(
        EventStore::connect(&ctx.url, config).await?,
        ctx.runtime_config(Some(ctx.cache_dir.clone())),
    )?;
    a.follow_activations().await?;
    let first = a.state(TYPE, id, ReplayOptions::default()).await?;
    ensure!(first.plugin.digest == v1.info.digest);
    let v2 = b
        .register(
            user_v2.to_vec(),
            streamfold::RegisterOptions::default().activate(false),
        )
        .await?;
    // Registration makes following hosts compile ahead; give A time to.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let samples = ctx.plan.warmup + ctx.plan.rounds.max(5);
    let mut latencies = Vec::new();
    let mut calls = Vec::new();
    let mut replays = Vec::new();
    for i in 0..samples {
        let target = if i % 2 == 0 { &v2 } else { &v1 };
        let t = Instant::now();
        b.activate(TYPE, &target.info.digest).await?;
        let call = t.elapsed();
        let mut polls = 0u32;
        loop {
            let r = a.state(TYPE, id, ReplayOptions::default()).await?;
            polls += 1;
            if r.plugin.digest == target.info.digest {
                break;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(10),
                "host A never switched"
            );
            tokio::task::yield_now().await;
        }
        let latency = t.elapsed();
        if i >= ctx.plan.warmup {
            latencies.push(latency.as_secs_f64() * 1e3);
            calls.push(call.as_secs_f64() * 1e3);
            replays.push(f64::from(polls));
        }
        // Let A settle before the next switch.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut r = row(
        "lifecycle.activate-to-use",
        section,
        "from B's activate call to A's first replay on the new version",
        "ms",
        &latencies,
    );
    r.note = Some(format!(
        "pub/sub notice; A polls replays back to back ({} replays per switch, median); alternating v2 / v1",
        Stat::of(&replays).median
    ));
    let mut c = row(
        "lifecycle.activate-call",
        section,
        "of which B's activate call itself",
        "ms",
        &calls,
    );
    c.note = Some("registry writes + publish".to_owned());
    Ok(vec![r, c])
}

/// `verify` of USER_V2 against the active USER over the small-aggregates set
/// (every aggregate replayed through both).
async fn verify(ctx: &Ctx, user_v2: &[u8]) -> Result<Vec<Row>> {
    let n = ctx.plan.verify_aggregates;
    let section = "Plugin life cycle: verify (replay-diff)";
    let store = crate::memory::small_set(ctx, n).await?;
    let rt = Runtime::new(store, ctx.runtime_config(Some(ctx.cache_dir.clone())))?;
    rt.register(
        ctx.reducers.bytes(Lang::Rust),
        streamfold::RegisterOptions::default(),
    )
    .await?;
    let (candidate, _) = rt.load_async(user_v2.to_vec().into()).await?;
    let mut rates = Vec::new();
    let mut checked = 0;
    for round in 0..ctx.plan.verify_warmup + ctx.plan.verify_rounds {
        let t = Instant::now();
        let report = rt
            .verify(candidate.clone(), VerifyOptions::default().all(), |_, _| {})
            .await?;
        let secs = t.elapsed().as_secs_f64();
        checked = report.checked;
        ensure!(
            report.checked == n && report.failed.is_empty(),
            "verify checked {} of {n}, {} failed",
            report.checked,
            report.failed.len()
        );
        if round >= ctx.plan.verify_warmup {
            rates.push(report.checked as f64 / secs);
        }
    }
    let mut r = row(
        "lifecycle.verify",
        section,
        &format!(
            "verify --all: USER_V2 vs active USER, {} aggregates of 10 events",
            fmt_count(checked as u64)
        ),
        "aggregates/s",
        &rates,
    );
    r.note = Some(
        "each aggregate replayed through both versions; VerifyOptions default concurrency 8; every aggregate differs (v2 upper-cases names)"
            .to_owned(),
    );
    Ok(vec![r])
}
