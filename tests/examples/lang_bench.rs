//! The `user` reducer in Rust, JavaScript and Python, measured in one run.
//!
//! ```text
//! cargo run --release -p streamfold-tests --example lang_bench
//! ```
//!
//! For each language: the component's size; compiling it (cold, no cache); loading
//! it from the compiled-code cache (a fresh runtime, as a restarted host would);
//! instantiating it (a fresh instance from an `InstancePre` with the pooling
//! allocator, as every replay does); a replay of a 1-event history end to end; and
//! the replay throughput of a 100,000-event history (`UserCreated`, then
//! `EmailChanged` and `NameChanged` in turn, appended in batches), snapshots off.
//! A private redis-server on this machine holds the events.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use streamfold::runtime::{LoadSource, digest};
use streamfold::store::{ExpectedRevision, NewEvent, ReadOptions};
use streamfold::{ReplayOptions, Runtime, RuntimeConfig};
use streamfold_tests::{Env, plugins};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

const HISTORY: u64 = 100_000;
const BATCH: u64 = 1_000;
const REPLAYS: usize = 3;
const INSTANTIATIONS: u32 = 200;

fn event(n: u64) -> NewEvent {
    match n {
        0 => NewEvent::new(
            "UserCreated",
            &json!({"id": 9_007_199_254_740_993_u64, "name": "Alice", "email": "alice@example.com", "timestamp": "2026-11-26T06:00:00"}),
        ),
        n if n % 2 == 1 => NewEvent::new(
            "EmailChanged",
            &json!({"email": format!("alice+{n}@example.com"), "timestamp": format!("2026-11-26T06:00:{:02}", n % 60)}),
        ),
        n => NewEvent::new("NameChanged", &json!({"name": format!("Alice {n}")})),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// An engine configured as the host's (`host/src/runtime/sandbox.rs`), so the
/// host's compiled code loads in it and instances come from the same kind of pool.
fn host_like_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(2 << 20);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(1024)
        .total_memories(512)
        .total_tables(1024)
        .total_stacks(256)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .table_elements(200_000)
        .max_memory_size(256 << 20)
        .max_unused_warm_slots(64);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Median time to instantiate the component from an `InstancePre`.
fn instantiate_time(engine: &Engine, cache_dir: &Path, bytes: &[u8]) -> anyhow::Result<Duration> {
    // The host's compiled code for these bytes, from its cache.
    let file = format!("{}.cwasm", digest(bytes));
    let cwasm = std::fs::read_dir(cache_dir)?
        .flatten()
        .map(|dir| dir.path().join(&file))
        .find(|p| p.exists());
    // SAFETY: the file was written by `Component::serialize` in the host's cache.
    #[allow(unsafe_code)]
    let component = match cwasm.map(|p| unsafe { Component::deserialize_file(engine, p) }) {
        Some(Ok(c)) => c,
        _ => Component::new(engine, bytes)?,
    };
    let mut linker = Linker::<()>::new(engine);
    linker.instance("streamfold:reducer/types@0.1.0")?;
    linker
        .instance("streamfold:reducer/host@0.1.0")?
        .func_new("log", |_, _, _, _| Ok(()))?;
    let pre = linker.instantiate_pre(&component)?;
    let mut times = Vec::new();
    for _ in 0..INSTANTIATIONS {
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let t = Instant::now();
        pre.instantiate(&mut store)?;
        times.push(t.elapsed());
        // Dropping the store at the end of the iteration frees the instance.
    }
    Ok(median(times))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::start().await;
    let cache = tempfile::tempdir()?;
    let config = || {
        RuntimeConfig::default()
            .cache_dir(Some(cache.path().to_path_buf()))
            .snapshot_every(None)
    };

    // The history, appended once, replayed by every reducer.
    let t = Instant::now();
    let mut rev = 0;
    while rev < HISTORY {
        let events = (rev..rev + BATCH).map(event).collect();
        rev = env
            .store
            .append("user", "bench", events, ExpectedRevision::Exact(rev))
            .await?
            .last_revision;
    }
    let appended = t.elapsed();
    env.store
        .append("user", "one", vec![event(0)], ExpectedRevision::NoStream)
        .await?;
    let t = Instant::now();
    let mut history = env.store.history("user", "bench", ReadOptions::default());
    let mut read = 0;
    while let Some(page) = history.next_page().await? {
        read += page.len();
    }
    let read_time = t.elapsed();
    println!(
        "history: {HISTORY} events appended in batches of {BATCH} in {} ; read back ({read} events, no reducer) in {}",
        ms(appended),
        ms(read_time)
    );
    println!();
    println!(
        "| reducer | component | compile (cold) | load from cache | instantiate | replay, 1 event | replay, {HISTORY} events | events/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

    let engine = host_like_engine()?;
    for (label, path) in [
        ("user (Rust)", plugins::USER),
        ("user-js (JavaScript)", plugins::USER_JS),
        ("user-py (Python)", plugins::USER_PY),
    ] {
        let bytes = plugins::read(path);

        let cold = Runtime::new(env.store.clone(), config())?;
        let t = Instant::now();
        let (_, source) = cold.load(&bytes)?;
        let compile = t.elapsed();
        assert_eq!(source, LoadSource::Compiled);

        let mut loads = Vec::new();
        let mut warm = None;
        for _ in 0..5 {
            let rt = Runtime::new(env.store.clone(), config())?;
            let t = Instant::now();
            let (plugin, source) = rt.load(&bytes)?;
            loads.push(t.elapsed());
            assert_eq!(source, LoadSource::DiskCache);
            warm = Some((rt, plugin));
        }
        let (rt, plugin) = warm.expect("loaded");

        let instantiate = instantiate_time(&engine, cache.path(), &bytes)?;

        let options = || {
            ReplayOptions::default()
                .plugin(plugin.clone())
                .use_snapshots(false)
        };
        let mut one = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            rt.state("user", "one", options()).await?;
            one.push(t.elapsed());
        }
        let mut replays = Vec::new();
        let mut state = String::new();
        for _ in 0..REPLAYS {
            let t = Instant::now();
            let r = rt.state("user", "bench", options()).await?;
            replays.push(t.elapsed());
            assert_eq!(r.events_applied, HISTORY);
            state = r.state;
        }
        let replay = median(replays);
        println!(
            "| {label} | {:.2} MB | {} | {} | {:.3} ms | {} | {} | {:.0} |",
            bytes.len() as f64 / 1e6,
            ms(compile),
            ms(median(loads)),
            instantiate.as_secs_f64() * 1e3,
            ms(median(one)),
            ms(replay),
            HISTORY as f64 / replay.as_secs_f64()
        );
        eprintln!("  {label}: final state {state}");
    }
    println!();
    println!(
        "Medians: load of 5 fresh runtimes, instantiate of {INSTANTIATIONS}, 1-event replay of 20, {HISTORY}-event replay of {REPLAYS}."
    );
    Ok(())
}
