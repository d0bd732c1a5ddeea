//! Redis memory per event, both streams together (and the revision counter hash),
//! for a 100-byte payload: one long aggregate, and 10,000 aggregates of 10 events.
//! Measured as the growth of `used_memory`, beside the same events written the
//! seed's way (two plain `XADD`s, seven fields, no counter) in the same run, and
//! broken down per key with `MEMORY USAGE ... SAMPLES 0`.

use anyhow::{Context, Result};
use streamfold::EventStore;
use streamfold::{ExpectedRevision, StoreConfig};
use streamfold_store::Connection;

use crate::data::{self, TYPE};
use crate::report::Row;
use crate::{Ctx, fmt_count, row, times};

/// Events per aggregate in the many-small-aggregates set.
const SMALL_EVENTS: u64 = 10;
const SMALL_PREFIX: &str = "small";

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut con = ctx.store.connection();

    // One long aggregate.
    let n = ctx.plan.memory_long;
    let section = format!(
        "Memory: one aggregate of {} events, 100-byte payload",
        fmt_count(n)
    );
    let store = EventStore::connect(&ctx.url, StoreConfig::default().prefix("memlong")).await?;
    let before = used_memory(&mut con).await?;
    let mut rev = 0;
    while rev < n {
        let batch = (rev..(rev + 1000).min(n))
            .map(|r| data::new_event(1, r + 1))
            .collect();
        rev = store
            .append(TYPE, "long", batch, ExpectedRevision::Exact(rev))
            .await?
            .last_revision;
    }
    let sf = (used_memory(&mut con).await? - before) / n as f64;
    let keys = store.keys(TYPE, "long")?;
    let agg = memory_usage(&mut con, &keys.stream).await? / n as f64;
    let cat = memory_usage(&mut con, &keys.category).await? / n as f64;

    let before = used_memory(&mut con).await?;
    seed_write(&mut con, "memseed", &["long".to_owned()], n).await?;
    let seed = (used_memory(&mut con).await? - before) / n as f64;
    rows.extend(memory_rows("memory.long", &section, sf, seed, agg, cat));

    // Many small aggregates.
    let aggregates = ctx.plan.memory_small;
    let events = aggregates as u64 * SMALL_EVENTS;
    let section = format!(
        "Memory: {} aggregates of {SMALL_EVENTS} events, 100-byte payload",
        fmt_count(aggregates as u64)
    );
    let before = used_memory(&mut con).await?;
    let store = create_small(ctx, aggregates).await?;
    let sf = (used_memory(&mut con).await? - before) / events as f64;
    let keys = store.keys(TYPE, "s-0")?;
    let agg = memory_usage(&mut con, &keys.stream).await? / SMALL_EVENTS as f64;
    let rev_hash = memory_usage(&mut con, &keys.revision).await? / SMALL_EVENTS as f64;
    let cat = memory_usage(&mut con, &keys.category).await? / events as f64;
    let ids: Vec<String> = (0..aggregates).map(|i| format!("s-{i}")).collect();
    let before = used_memory(&mut con).await?;
    seed_write(&mut con, "smallseed", &ids, SMALL_EVENTS).await?;
    let seed = (used_memory(&mut con).await? - before) / events as f64;
    let mut small = memory_rows("memory.small", &section, sf, seed, agg, cat);
    small.push(row(
        "memory.small.revision-hash",
        &section,
        "of which the revision counter hash (per event)",
        "bytes/event",
        &[rev_hash],
    ));
    rows.extend(small);
    Ok(rows)
}

fn memory_rows(key: &str, section: &str, sf: f64, seed: f64, agg: f64, cat: f64) -> Vec<Row> {
    let mut r = row(
        &format!("{key}.streamfold"),
        section,
        "Streamfold: both streams + revision hash (used_memory growth)",
        "bytes/event",
        &[sf],
    );
    r.ratios.push(times(
        &[sf],
        &[seed],
        &format!("{key}.seed"),
        "the seed's bytes",
    ));
    vec![
        r,
        row(
            &format!("{key}.seed"),
            section,
            "seed: the same events as 2 plain XADDs, 7 fields (used_memory growth)",
            "bytes/event",
            &[seed],
        ),
        row(
            &format!("{key}.aggregate-stream"),
            section,
            "of which the aggregate stream (MEMORY USAGE)",
            "bytes/event",
            &[agg],
        ),
        row(
            &format!("{key}.category-stream"),
            section,
            "of which the category stream (MEMORY USAGE)",
            "bytes/event",
            &[cat],
        ),
    ]
}

/// The store holding `n` aggregates of 10 `user` events (`s-0` ...), made now if
/// the memory section has not made them.
pub async fn small_set(ctx: &Ctx, n: usize) -> Result<EventStore> {
    let store = small_store(ctx).await?;
    if store.revision(TYPE, &format!("s-{}", n - 1)).await? == SMALL_EVENTS {
        return Ok(store);
    }
    create_small(ctx, n).await
}

async fn small_store(ctx: &Ctx) -> Result<EventStore> {
    Ok(EventStore::connect(&ctx.url, StoreConfig::default().prefix(SMALL_PREFIX)).await?)
}

async fn create_small(ctx: &Ctx, n: usize) -> Result<EventStore> {
    let store = small_store(ctx).await?;
    const WRITERS: usize = 16;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(WRITERS) {
                let events = (1..=SMALL_EVENTS)
                    .map(|r| data::new_event(i as u64, r))
                    .collect();
                store
                    .append(TYPE, &format!("s-{i}"), events, ExpectedRevision::NoStream)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(store)
}

/// The seed's writes for `ids`, `events` each: `XADD <prefix>:events:user MAXLEN ~
/// 100000` and `XADD <prefix>:events:user:<id>`, pipelined.
async fn seed_write(con: &mut Connection, prefix: &str, ids: &[String], events: u64) -> Result<()> {
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for id in ids {
        for r in 1..=events {
            let (ty, data) = data::user_event(1, r);
            let fields = data::seed_fields(id, ty, &data);
            let cat = pipe
                .cmd("XADD")
                .arg(format!("{prefix}:events:{TYPE}"))
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*");
            for (k, v) in &fields {
                cat.arg(*k).arg(v);
            }
            cat.ignore();
            let agg = pipe
                .cmd("XADD")
                .arg(format!("{prefix}:events:{TYPE}:{id}"))
                .arg("*");
            for (k, v) in &fields {
                agg.arg(*k).arg(v);
            }
            agg.ignore();
            queued += 1;
            if queued == 500 {
                pipe.query_async::<()>(con).await?;
                pipe = redis::pipe();
                queued = 0;
            }
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(con).await?;
    }
    Ok(())
}

/// `used_memory` of `INFO memory`, in bytes.
pub async fn used_memory(con: &mut Connection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(con).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no used_memory in INFO memory")
}

async fn memory_usage(con: &mut Connection, key: &str) -> Result<f64> {
    let n: Option<i64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(con)
        .await?;
    Ok(n.unwrap_or(0) as f64)
}
