//! Appends: Streamfold's atomic, checked append against the seed's two plain
//! `XADD`s per event (same Redis client: the store's own connection), and against
//! `redis-benchmark`'s `XADD` with the seed's seven fields (the ceiling).

use std::time::Instant;

use anyhow::{Context, Result};
use streamfold::ExpectedRevision;
use streamfold_store::{Connection, EventStore};

use crate::data::{self, TYPE};
use crate::external::redis_benchmark;
use crate::report::Row;
use crate::stats::alternate;
use crate::{Ctx, faster, fmt_count, row, share};

const WRITERS: usize = 16;
const BATCH: u64 = 100;

#[derive(Debug, Clone, Copy)]
enum V {
    Streamfold,
    Seed,
    Ceiling,
    /// The seed's two `XADD`s in one script call, nothing checked or counted.
    Bare,
}

/// The seed's two `XADD`s (category, then aggregate; its fields and order) in one
/// Lua script call per event, nothing else: no expected revision, no counter, no
/// retry memory. It shows what the checks add to a script's two `XADD`s, and what a
/// script's commands cost Redis beyond the same commands sent by a client.
/// KEYS: category stream, aggregate stream; ARGV: the seed's 7 field values.
static BARE_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local f = {'event_id', ARGV[1], 'aggregate_type', ARGV[2], 'aggregate_id', ARGV[3], \
         'event_type', ARGV[4], 'data', ARGV[5], 'timestamp', ARGV[6], 'version', ARGV[7]}\n\
         redis.call('XADD', KEYS[1], 'MAXLEN', '~', '100000', '*', unpack(f))\n\
         return redis.call('XADD', KEYS[2], '*', unpack(f))",
    )
});

/// One append through [`BARE_SCRIPT`] (keys under their own prefix, hash-tagged).
async fn bare_append(con: &mut Connection, id: &str, revision: u64) -> Result<()> {
    let (ty, data) = data::user_event(1, revision);
    let mut inv = BARE_SCRIPT.prepare_invoke();
    inv.key(format!("bare:{{{TYPE}}}:events"))
        .key(format!("bare:{{{TYPE}}}:events:{id}"));
    for (_, v) in data::seed_fields(id, ty, &data) {
        inv.arg(v);
    }
    inv.invoke_async::<()>(con).await?;
    Ok(())
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let p = &ctx.plan;
    let variants = [V::Streamfold, V::Seed, V::Ceiling];

    // 1. Sequential single-event appends: one round trip each (the seed: two).
    let section = "Append: single events, sequential (one writer)";
    let n = p.singles;
    let s = alternate(&variants, p.warmup, p.rounds, |v, round| async move {
        let id = format!("seq-{round}");
        match v {
            V::Streamfold => {
                let t = Instant::now();
                for rev in 0..n {
                    ctx.store
                        .append(
                            TYPE,
                            &id,
                            vec![data::new_event(1, rev + 1)],
                            ExpectedRevision::Exact(rev),
                        )
                        .await?;
                }
                Ok(n as f64 / t.elapsed().as_secs_f64())
            }
            V::Seed => {
                let mut con = ctx.store.connection();
                let t = Instant::now();
                for rev in 0..n {
                    seed_append(&mut con, &id, rev + 1).await?;
                }
                Ok(n as f64 / t.elapsed().as_secs_f64())
            }
            V::Ceiling => ceiling(ctx, 1, 1, n, false).await,
            V::Bare => unreachable!("not a variant of this section"),
        }
    })
    .await?;
    rows.extend(append_rows(
        "append.sequential",
        section,
        &s,
        (
            "ceiling: redis-benchmark -c 1 -P 1, one XADD round trip each (seed's 7 fields)",
            "XADD/s",
            "XADD/s: the most any one-round-trip append can do here",
            "of one XADD round trip's rate",
        ),
        "seed: 2 XADDs per event, sequential round trips",
    ));

    // 2. Batches of 100 events, one writer.
    let section = "Append: batches of 100 events (one writer)";
    let batches = p.batches;
    let s = alternate(&variants, p.warmup, p.rounds, |v, round| async move {
        let id = format!("batch-{round}");
        let events = batches * BATCH;
        match v {
            V::Streamfold => {
                let t = Instant::now();
                for b in 0..batches {
                    let first = b * BATCH;
                    let batch = (first..first + BATCH)
                        .map(|r| data::new_event(1, r + 1))
                        .collect();
                    ctx.store
                        .append(TYPE, &id, batch, ExpectedRevision::Exact(first))
                        .await?;
                }
                Ok(events as f64 / t.elapsed().as_secs_f64())
            }
            V::Seed => {
                let mut con = ctx.store.connection();
                let t = Instant::now();
                for b in 0..batches {
                    let mut pipe = redis::pipe();
                    for r in b * BATCH..(b + 1) * BATCH {
                        for cmd in seed_commands(&id, r + 1) {
                            pipe.add_command(cmd).ignore();
                        }
                    }
                    pipe.query_async::<()>(&mut con).await?;
                }
                Ok(events as f64 / t.elapsed().as_secs_f64())
            }
            V::Ceiling => ceiling(ctx, 1, BATCH as usize, events * 2, true).await,
            V::Bare => unreachable!("not a variant of this section"),
        }
    })
    .await?;
    rows.extend(append_rows(
        "append.batch100",
        section,
        &s,
        (
            "ceiling: redis-benchmark -c 1 -P 100, XADD with the seed's 7 fields",
            "events/s",
            "XADD/s / 2: two XADDs per event",
            "of the redis-benchmark ceiling",
        ),
        "seed: the 200 XADDs of a batch pipelined, not atomic",
    ));

    // 3. 16 concurrent writers, each on its own aggregate; and, for reference, the
    //    seed's two XADDs alone in one script call per event.
    let section = "Append: 16 concurrent writers, different aggregates";
    let k = p.writer_events;
    let with_bare = [V::Streamfold, V::Seed, V::Ceiling, V::Bare];
    let s = alternate(&with_bare, p.warmup, p.rounds, |v, round| async move {
        let total = k * WRITERS as u64;
        if let V::Ceiling = v {
            return ceiling(ctx, WRITERS, 1, total * 2, true).await;
        }
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = ctx.store.clone();
            let id = format!("conc-{round}-{w}");
            tasks.push(tokio::spawn(async move {
                let mut con = store.connection();
                for rev in 0..k {
                    writer_append(v, &store, &mut con, &id, rev).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(total as f64 / t.elapsed().as_secs_f64())
    })
    .await?;
    let mut concurrent = append_rows(
        "append.concurrent16",
        section,
        &s,
        (
            "redis-benchmark -c 16 -P 1, XADD with the seed's 7 fields",
            "events/s",
            "XADD/s / 2; its 16 clients each wait for every reply, while the store's one multiplexed connection pipelines all 16 writers: not a ceiling here",
            "of the redis-benchmark ceiling",
        ),
        "seed: 2 XADDs per event",
    );
    let mut bare = row(
        "append.concurrent16.bare",
        section,
        "reference: the seed's 2 XADDs in one script call per event, nothing checked or counted",
        "events/s",
        &s[3],
    );
    bare.note = Some(
        "what an atomic append through a script costs before any check; no group commit".to_owned(),
    );
    bare.ratios.push(faster(
        &s[3],
        &s[1],
        "append.concurrent16.seed",
        "the seed's rate",
        false,
    ));
    concurrent[0].ratios.push(share(
        &s[0],
        &s[3],
        "append.concurrent16.bare",
        "of the reference's rate",
    ));
    concurrent.push(bare);
    rows.extend(concurrent);

    // 4. 16 concurrent writers on ONE aggregate: Streamfold checks the expected
    //    revision and retries on conflict; the seed checks nothing (and interleaves).
    let section = "Append: 16 concurrent writers, one aggregate (expected-revision retries)";
    let k = p.contended_events;
    let retries = std::sync::Mutex::new(Vec::new());
    let retries = &retries;
    let s = alternate(&variants[..2], p.warmup, p.rounds, |v, round| async move {
        let id = format!("hot-{round}");
        let total = k * WRITERS as u64;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let store = ctx.store.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let mut con = store.connection();
                let mut conflicts = 0u64;
                let mut expected = 0u64;
                let mut done = 0u64;
                while done < k {
                    match v {
                        V::Streamfold => {
                            let ev = data::new_event(1, expected + 1);
                            match store
                                .append(TYPE, &id, vec![ev], ExpectedRevision::Exact(expected))
                                .await
                            {
                                Ok(r) => {
                                    expected = r.last_revision;
                                    done += 1;
                                }
                                Err(e) if e.is_conflict() => {
                                    expected = e.conflict().map_or(expected, |c| c.actual);
                                    conflicts += 1;
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        _ => {
                            seed_append(&mut con, &id, done + 2).await?;
                            done += 1;
                        }
                    }
                }
                anyhow::Ok(conflicts)
            }));
        }
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await??;
        }
        let rate = total as f64 / t.elapsed().as_secs_f64();
        if matches!(v, V::Streamfold) && round >= ctx.plan.warmup {
            retries
                .lock()
                .expect("retries")
                .push(conflicts as f64 / total as f64);
        }
        Ok(rate)
    })
    .await?;
    let retries = crate::stats::Stat::of(&retries.lock().expect("retries"));
    let mut sf = row(
        "append.contended16.streamfold",
        section,
        "Streamfold, exact expected revision, retry on conflict",
        "events/s",
        &s[0],
    );
    sf.note = Some(format!(
        "{:.2} conflicts (retries) per appended event, median",
        retries.median
    ));
    sf.ratios.push(faster(
        &s[0],
        &s[1],
        "append.contended16.seed",
        "the seed's rate (which checks nothing)",
        false,
    ));
    rows.push(sf);
    rows.push(row(
        "append.contended16.seed",
        section,
        "seed: 2 XADDs per event, no check (lost-update prone)",
        "events/s",
        &s[1],
    ));
    rows.extend(server_side(ctx).await?);
    Ok(rows)
}

/// The three rows of a Streamfold / seed / redis-benchmark comparison. `ceiling`:
/// its name, unit, note, and the label of Streamfold's ratio to it.
fn append_rows(
    key: &str,
    section: &str,
    s: &[Vec<f64>],
    ceiling: (&str, &str, &str, &str),
    seed_name: &str,
) -> Vec<Row> {
    let (ceiling_name, ceiling_unit, ceiling_note, ceiling_label) = ceiling;
    let mut sf = row(
        &format!("{key}.streamfold"),
        section,
        "Streamfold: Lua append (check + both streams, atomic)",
        "events/s",
        &s[0],
    );
    sf.ratios.push(faster(
        &s[0],
        &s[1],
        &format!("{key}.seed"),
        "the seed's rate",
        false,
    ));
    sf.ratios.push(share(
        &s[0],
        &s[2],
        &format!("{key}.ceiling"),
        ceiling_label,
    ));
    let mut ceiling = row(
        &format!("{key}.ceiling"),
        section,
        ceiling_name,
        ceiling_unit,
        &s[2],
    );
    ceiling.note = Some(ceiling_note.to_owned());
    vec![
        sf,
        row(
            &format!("{key}.seed"),
            section,
            seed_name,
            "events/s",
            &s[1],
        ),
        ceiling,
    ]
}

/// One concurrent writer's next event (`rev` events already written) on aggregate
/// `id`, the way variant `v` appends: the store (exact revision), the seed's two
/// `XADD`s, or those two in one script call.
async fn writer_append(
    v: V,
    store: &EventStore,
    con: &mut Connection,
    id: &str,
    rev: u64,
) -> Result<()> {
    match v {
        V::Streamfold => {
            store
                .append(
                    TYPE,
                    id,
                    vec![data::new_event(1, rev + 1)],
                    ExpectedRevision::Exact(rev),
                )
                .await?;
        }
        V::Bare => bare_append(con, id, rev + 1).await?,
        _ => seed_append(con, id, rev + 1).await?,
    }
    Ok(())
}

/// `--profile append16` (likewise `append16-seed`, `append16-bare`): 16 writers on
/// their own aggregates, one event per append, for `seconds`, then events/s (for
/// `perf record` of the load generator, or Redis's `INFO commandstats`).
pub async fn profile(ctx: &Ctx, name: &str, seconds: f64) -> Result<()> {
    let v = match name {
        "append16" => V::Streamfold,
        "append16-seed" => V::Seed,
        "append16-bare" => V::Bare,
        _ => anyhow::bail!("not an append profile: {name}"),
    };
    let calls_before = ctx.store.append_calls();
    let t = Instant::now();
    let deadline = t + std::time::Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = ctx.store.clone();
        let id = format!("profile-{}-{w}", uuid::Uuid::new_v4());
        tasks.push(tokio::spawn(async move {
            let mut con = store.connection();
            let mut rev = 0;
            while Instant::now() < deadline {
                writer_append(v, &store, &mut con, &id, rev).await?;
                rev += 1;
            }
            anyhow::Ok(rev)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let calls = ctx.store.append_calls();
    let (n, held) = (
        calls.calls - calls_before.calls,
        calls.appends - calls_before.appends,
    );
    println!(
        "{name}: {} events in {elapsed:.1} s, {:.0} events/s; {} append script calls, {:.1} appends per call",
        fmt_count(total),
        total as f64 / elapsed,
        fmt_count(n),
        if n == 0 { 0.0 } else { held as f64 / n as f64 }
    );
    Ok(())
}

/// The seed's `EventStore.append`: `XADD events:user MAXLEN ~ 100000 * ...`, then
/// `XADD events:user:<id> * ...`, two round trips, nothing checked.
async fn seed_append(con: &mut Connection, id: &str, revision: u64) -> Result<()> {
    for cmd in seed_commands(id, revision) {
        cmd.query_async::<()>(con).await?;
    }
    Ok(())
}

fn seed_commands(id: &str, revision: u64) -> [redis::Cmd; 2] {
    let (ty, data) = data::user_event(1, revision);
    let fields = data::seed_fields(id, ty, &data);
    let mut category = redis::cmd("XADD");
    category
        .arg(format!("seed:events:{TYPE}"))
        .arg("MAXLEN")
        .arg("~")
        .arg(100_000)
        .arg("*");
    let mut aggregate = redis::cmd("XADD");
    aggregate.arg(format!("seed:events:{TYPE}:{id}")).arg("*");
    for (k, v) in &fields {
        category.arg(*k).arg(v);
        aggregate.arg(*k).arg(v);
    }
    [category, aggregate]
}

/// `redis-benchmark` with `XADD <key> * <the seed's 7 fields, this workload's sizes>`:
/// XADD/s, or (`per_event`) events/s at two XADDs per event.
async fn ceiling(
    ctx: &Ctx,
    clients: usize,
    pipeline: usize,
    xadds: u64,
    per_event: bool,
) -> Result<f64> {
    let (ty, data) = data::user_event(1, 2);
    let mut command = vec!["XADD".to_owned(), "rb:xadd".to_owned(), "*".to_owned()];
    for (k, v) in data::seed_fields("42", ty, &data) {
        command.push(k.to_owned());
        command.push(v);
    }
    let rps = redis_benchmark(ctx.port, clients, pipeline, xadds, &command).await?;
    let mut con = ctx.store.connection();
    redis::cmd("DEL")
        .arg("rb:xadd")
        .query_async::<()>(&mut con)
        .await?;
    Ok(if per_event { rps / 2.0 } else { rps })
}

/// Where an append's time goes on the server: one more sample of each kind
/// between `CONFIG RESETSTAT` and `INFO commandstats`.
async fn server_side(ctx: &Ctx) -> Result<Vec<Row>> {
    let section = "Append: time inside Redis (INFO commandstats, one extra sample each)";
    let mut con = ctx.store.connection();
    let n = ctx.plan.singles.min(1000);
    let mut rows = Vec::new();

    reset_stats(&mut con).await?;
    for rev in 0..n {
        ctx.store
            .append(
                TYPE,
                "diag-single",
                vec![data::new_event(1, rev + 1)],
                ExpectedRevision::Exact(rev),
            )
            .await?;
    }
    let (calls, usec) = command_stat(&mut con, "evalsha").await?;
    rows.push(row(
        "append.server.single",
        section,
        "Streamfold single append: the Lua script (EVALSHA), per call",
        "µs",
        &[usec / calls],
    ));

    reset_stats(&mut con).await?;
    let batches = (n / BATCH).max(1);
    for b in 0..batches {
        let first = b * BATCH;
        let batch = (first..first + BATCH)
            .map(|r| data::new_event(1, r + 1))
            .collect();
        ctx.store
            .append(TYPE, "diag-batch", batch, ExpectedRevision::Exact(first))
            .await?;
    }
    let (calls, usec) = command_stat(&mut con, "evalsha").await?;
    rows.push(row(
        "append.server.batch",
        section,
        "Streamfold batch of 100: the Lua script, per event",
        "µs",
        &[usec / (calls * BATCH as f64)],
    ));

    reset_stats(&mut con).await?;
    let mut seed = ctx.store.connection();
    for rev in 0..n {
        seed_append(&mut seed, "diag-seed", rev + 1).await?;
    }
    let (calls, usec) = command_stat(&mut con, "xadd").await?;
    let xadd_us = usec / calls;
    rows.push(row(
        "append.server.seed",
        section,
        "seed: one XADD (it makes two per event)",
        "µs",
        &[xadd_us],
    ));

    reset_stats(&mut con).await?;
    for rev in 0..n {
        bare_append(&mut seed, "diag-bare", rev + 1).await?;
    }
    let (calls, usec) = command_stat(&mut con, "evalsha").await?;
    let mut bare = row(
        "append.server.bare",
        section,
        "reference: the seed's two XADDs in one script call (nothing checked or counted), per call",
        "µs",
        &[usec / calls],
    );
    bare.note = Some(format!(
        "{:.2}x the time of the same two XADDs sent by a client: what a script's commands cost Redis more",
        usec / calls / (2.0 * xadd_us)
    ));
    rows.push(bare);
    Ok(rows)
}

async fn reset_stats(con: &mut Connection) -> Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(con)
        .await?;
    Ok(())
}

/// `calls` and `usec` of `cmdstat_<command>` in `INFO commandstats`.
async fn command_stat(con: &mut Connection, command: &str) -> Result<(f64, f64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await?;
    let prefix = format!("cmdstat_{command}:");
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .with_context(|| format!("no {prefix} in INFO commandstats"))?;
    let field = |name: &str| -> Result<f64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line}"))?
            .parse::<f64>()
            .map_err(Into::into)
    };
    Ok((field("calls")?, field("usec")?))
}
