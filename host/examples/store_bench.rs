//! Event store throughput against a private redis-server on this machine.
//!
//! ```text
//! cargo run --release -p streamfold --example store_bench
//! ```
//!
//! Measures: sequential single-event appends (each waits for the previous one), appends
//! in batches of 100, and reading a 100,000-event history through `history()` pages of
//! 1,000 (and, for comparison, the same pages fetched as raw `redis::Value`s). Payloads
//! are ~100 bytes of JSON; every append uses an exact expected revision.

use std::time::Instant;

use serde_json::json;
use streamfold::local_redis::LocalRedis;
use streamfold::store::{EventStore, ExpectedRevision, NewEvent, ReadOptions, StoreConfig};

const SINGLES: u64 = 5_000;
const BATCH: u64 = 100;
const HISTORY: u64 = 100_000;
const READS: usize = 3;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "ItemAdded",
        &json!({"sku": format!("SKU-{n:08}"), "qty": n % 7 + 1, "price_cents": 1999, "note": "benchmark payload padding"}),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis = LocalRedis::start()?;
    let store = EventStore::connect(&redis.url(), StoreConfig::default()).await?;
    println!("redis-server on {} (private, no persistence)", redis.url());

    // 1. Sequential single-event appends.
    let t = Instant::now();
    for n in 0..SINGLES {
        store
            .append(
                "bench",
                "single",
                vec![event(n)],
                ExpectedRevision::Exact(n),
            )
            .await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "sequential single-event appends: {SINGLES} in {secs:.2} s = {:.0} events/s ({:.0} us/append)",
        SINGLES as f64 / secs,
        secs * 1e6 / SINGLES as f64
    );

    // 2. Batches of 100, building a 100,000-event aggregate.
    let t = Instant::now();
    let mut rev = 0;
    while rev < HISTORY {
        let events = (rev..rev + BATCH).map(event).collect();
        let r = store
            .append("bench", "big", events, ExpectedRevision::Exact(rev))
            .await?;
        rev = r.last_revision;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "batch appends ({BATCH} events each): {HISTORY} events in {secs:.2} s = {:.0} events/s",
        HISTORY as f64 / secs
    );

    // 3. Full-history reads through history() paging.
    for i in 1..=READS {
        let t = Instant::now();
        let mut history = store.history("bench", "big", ReadOptions::default());
        let (mut events, mut pages, mut bytes) = (0u64, 0u64, 0usize);
        while let Some(page) = history.next_page().await? {
            pages += 1;
            events += page.len() as u64;
            bytes += page.iter().map(|e| e.data.len()).sum::<usize>();
        }
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            events == HISTORY,
            "read {events} events, expected {HISTORY}"
        );
        println!(
            "full-history read #{i}: {events} events in {pages} pages, {:.0} ms = {:.0} events/s ({} KB of data)",
            secs * 1e3,
            events as f64 / secs,
            bytes / 1024
        );
    }

    // 4. For comparison: the same pages fetched as raw `redis::Value`s, not decoded into
    //    events, to show how much of the read is the client's reply parsing.
    let key = store.keys("bench", "big")?.stream;
    let mut con = store.connection();
    let t = Instant::now();
    let (mut start, mut entries) = ("-".to_owned(), 0usize);
    loop {
        let page: redis::Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        let redis::Value::Array(items) = page else {
            break;
        };
        let Some(redis::Value::Array(last)) = items.last() else {
            break;
        };
        let Some(redis::Value::BulkString(id)) = last.first() else {
            break;
        };
        start = format!("({}", String::from_utf8_lossy(id));
        entries += items.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "raw XRANGE pages into redis::Value only: {entries} entries, {:.0} ms = {:.0} entries/s",
        secs * 1e3,
        entries as f64 / secs
    );
    Ok(())
}
