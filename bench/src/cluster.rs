//! Redis Cluster against one Redis (issue 14): the same appends and replays on the
//! bench's single redis-server and on a local 3-master cluster (the test support's
//! `LocalCluster`, every node on this machine), alternating in the same rounds.
//!
//! On one machine a cluster cannot be faster: its three servers share the same
//! cores, and a client talks to three of them. What the ratios show is the price of
//! the cluster path itself: the cluster client's routing, the lean reader's slot
//! lookup, a connection per node.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use streamfold::{EventStore, ExpectedRevision, Plugin, Runtime, StoreConfig};
use streamfold_test_support::LocalCluster;

use crate::data::{self, TYPE};
use crate::report::Row;
use crate::small::EVENTS;
use crate::stats::alternate;
use crate::{Ctx, Lang, fmt_count, row, times};

/// Writers in the concurrent append rows.
const WRITERS: usize = 16;
/// Partitions of the bench type here, so that a category spreads over the masters.
const PARTITIONS: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Single,
    Cluster,
}

struct Side {
    store: EventStore,
    rt: Runtime,
    rust: Arc<Plugin>,
    /// Aggregates of [`EVENTS`] events for the replay rows.
    ids: Vec<String>,
}

async fn side(ctx: &Ctx, url: &str, cluster: bool, aggregates: usize) -> Result<Side> {
    let config = StoreConfig::default()
        .prefix("bench-cluster")
        .partitions_for(TYPE, PARTITIONS)
        .cluster(cluster);
    let store = EventStore::connect(url, config)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let rt = Runtime::new(
        store.clone(),
        ctx.runtime_config(Some(ctx.cache_dir.clone())),
    )?;
    let (rust, _) = rt.load_async(ctx.reducers.bytes(Lang::Rust).into()).await?;
    let ids = data::ensure_aggregates(&store, "c", aggregates, EVENTS).await?;
    Ok(Side {
        store,
        rt,
        rust,
        ids,
    })
}

/// `n` single-event appends, one after another, to new aggregates: µs per append.
async fn sequential_appends(s: &Side, round: usize, n: u64) -> Result<f64> {
    let t = Instant::now();
    for i in 0..n {
        s.store
            .append(
                TYPE,
                &format!("seq-{round}-{i}"),
                vec![data::new_event(i, 1)],
                ExpectedRevision::NoStream,
            )
            .await?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// [`WRITERS`] writers appending `each` events one at a time to their own aggregate:
/// events per second.
async fn concurrent_appends(s: &Side, round: usize, each: u64) -> Result<f64> {
    let t = Instant::now();
    let writers = (0..WRITERS).map(|w| {
        let store = s.store.clone();
        tokio::spawn(async move {
            let id = format!("w-{round}-{w}");
            for r in 0..each {
                store
                    .append(
                        TYPE,
                        &id,
                        vec![data::new_event(r, r + 1)],
                        ExpectedRevision::Exact(r),
                    )
                    .await?;
            }
            anyhow::Ok(())
        })
    });
    for w in futures::future::join_all(writers).await {
        w??;
    }
    Ok((WRITERS as u64 * each) as f64 / t.elapsed().as_secs_f64())
}

/// Every replay aggregate's state through the Rust reducer, `concurrency` at a time:
/// µs per aggregate.
async fn replays(s: &Side, concurrency: usize) -> Result<f64> {
    let t = Instant::now();
    crate::small::replay_all(&s.rt, &s.rust, &s.ids, concurrency).await?;
    Ok(t.elapsed().as_secs_f64() * 1e6 / s.ids.len() as f64)
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let aggregates = ctx.plan.small_aggregates.min(2_000);
    eprintln!("  cluster: starting a local 3-master Redis Cluster");
    let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(3, 0))
        .await?
        .context("starting a local Redis Cluster")?;
    let single = side(ctx, &ctx.url, false, aggregates).await?;
    let clustered = side(ctx, &cluster.url_list(), true, aggregates).await?;
    let pick = |w: Where| match w {
        Where::Single => &single,
        Where::Cluster => &clustered,
    };
    let both = [Where::Single, Where::Cluster];
    let singles = (ctx.plan.singles / 4).max(200);
    let each = (ctx.plan.writer_events / 4).max(100);
    let section = format!(
        "Redis Cluster (3 masters on this machine) against one Redis, same rounds ({} aggregates of {EVENTS} events for replays, {PARTITIONS} partitions)",
        fmt_count(aggregates as u64)
    );
    let mut rows = Vec::new();

    let seq = alternate(&both, ctx.plan.warmup, ctx.plan.rounds, |w, round| {
        sequential_appends(pick(w), round, singles)
    })
    .await?;
    let conc = alternate(&both, ctx.plan.warmup, ctx.plan.rounds, |w, round| {
        concurrent_appends(pick(w), round, each)
    })
    .await?;
    let rep1 = alternate(&both, ctx.plan.warmup, ctx.plan.rounds, |w, _| {
        replays(pick(w), 1)
    })
    .await?;
    let rep8 = alternate(&both, ctx.plan.warmup, ctx.plan.rounds, |w, _| {
        replays(pick(w), 8)
    })
    .await?;

    let mut add = |key: &str, name: &str, unit: &str, s: &[Vec<f64>], rate: bool| {
        rows.push(row(
            &format!("cluster.{key}.single"),
            &section,
            &format!("{name}, one Redis"),
            unit,
            &s[0],
        ));
        let mut r = row(
            &format!("cluster.{key}.cluster"),
            &section,
            &format!("{name}, 3-master cluster"),
            unit,
            &s[1],
        );
        let against = format!("cluster.{key}.single");
        r.ratios.push(if rate {
            times(&s[1], &s[0], &against, "one Redis's rate")
        } else {
            times(&s[1], &s[0], &against, "one Redis's time")
        });
        rows.push(r);
    };
    add(
        "append1",
        &format!("single-event append, one after another ({singles} per sample)"),
        "µs",
        &seq,
        false,
    );
    add(
        "append16",
        &format!("{WRITERS} writers on their own aggregates ({each} events each)"),
        "events/s",
        &conc,
        true,
    );
    add(
        "replay1",
        "10-event state, Rust reducer, sequential",
        "µs",
        &rep1,
        false,
    );
    add(
        "replay8",
        "10-event state, Rust reducer, 8 at a time",
        "µs",
        &rep8,
        false,
    );
    drop(cluster);
    Ok(rows)
}
