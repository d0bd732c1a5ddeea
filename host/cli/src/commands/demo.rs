//! `streamfold demo`: the seed document's story, end to end, on real parts.
//!
//! Registers the bundled `user` reducer, appends the seed's events for user 1,
//! prints the history and the replayed state, then travels back in time to the
//! first event. Uses its own key prefix, which it resets first, so it can run any
//! number of times against a shared Redis without touching other data.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::AsyncCommands;
use streamfold::{
    EventStore, ExpectedRevision, NewEvent, ReadOptions, RegisterOptions, ReplayOptions, Runtime,
    StoreConfig,
};
use streamfold_test_support::LocalRedis;

use super::Global;
use crate::output::{self, outln};
use crate::{bundled, connect};

/// Run the seed document's story end to end (starts a private Redis if none is reachable).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

const PREFIX: &str = "streamfold-demo";

pub(crate) async fn run(g: &Global, _args: Args) -> Result<()> {
    // The demo's data lives under its own prefix, in the default layout, whatever the
    // flags say; the connection flags (TLS, cluster, durability) apply.
    let config = connect::store_config(g)?
        .prefix(PREFIX)
        .layout(streamfold::Layout::Default);
    let explicit = std::env::var_os("STREAMFOLD_REDIS_URL").is_some()
        || std::env::args().any(|a| a == "--redis" || a.starts_with("--redis="));
    // Keep the private server alive until the demo is done; dropping it stops it.
    let mut _private: Option<LocalRedis> = None;
    let store = match EventStore::connect(&g.redis, config.clone()).await {
        Ok(store) => store,
        Err(e) if !explicit && e.is_unavailable() => {
            outln!(
                "No Redis at {}: starting a private redis-server for the demo.",
                g.redis
            )?;
            let server = LocalRedis::start().context("cannot start a private redis-server")?;
            let store =
                EventStore::connect(&server.url(), StoreConfig::default().prefix(PREFIX)).await?;
            _private = Some(server);
            store
        }
        Err(e) => return Err(e.into()),
    };
    outln!(
        "Redis: {}  (key prefix {PREFIX:?}, reset first)\n",
        store.url()
    )?;
    reset(&store).await?;

    let rt = Runtime::new(store.clone(), connect::runtime_config(g))?;
    let reg = rt
        .register(
            bundled::USER_REDUCER.to_vec(),
            RegisterOptions::default().activate(true),
        )
        .await
        .context("registering the bundled user reducer")?;
    outln!(
        "1. Registered the `user` reducer: {} ({} bytes), active for aggregate type {:?}.",
        reg.info.label(),
        reg.info.size,
        reg.info.aggregate_type
    )?;

    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let created = NewEvent::new(
        "UserCreated",
        &serde_json::json!({"id": 1, "name": "Alice", "email": "alice@example.com", "timestamp": now()}),
    );
    let first = store
        .append("user", "1", vec![created], ExpectedRevision::NoStream)
        .await?;
    // A visible gap in time, so that "as of the first event" is a different state.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let changed = NewEvent::new(
        "EmailChanged",
        &serde_json::json!({"email": "alice.smith@example.com", "timestamp": now()}),
    );
    store
        .append("user", "1", vec![changed], ExpectedRevision::Exact(1))
        .await?;
    outln!(
        "2. Appended UserCreated and EmailChanged for user 1 (atomic, with expected revisions).\n"
    )?;

    let history = store.read_all("user", "1", ReadOptions::default()).await?;
    outln!("3. History of user 1 (the audit trail, from the aggregate's stream):")?;
    output::history(&history)?;

    let state = rt.state("user", "1", ReplayOptions::default()).await?;
    outln!(
        "\n4. Current state, replayed through {} ({} events):",
        state.plugin.label(),
        state.events_applied
    )?;
    outln!("{}", pretty(&state.state))?;

    // "As of" is judged by when Redis stored each event (its stream id), which can be
    // a millisecond after the timestamp the client put in the envelope.
    let stored_ms = history[0]
        .stored_at_ms()
        .context("stream id of the first event")?;
    let first_time =
        chrono::DateTime::from_timestamp_millis(stored_ms as i64).context("a valid stream time")?;
    let then = rt
        .state("user", "1", ReplayOptions::default().as_of(first_time))
        .await?;
    outln!(
        "\n5. Time travel: state as of {} (the first event, revision {}, position {}):",
        first_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        then.revision,
        first.positions[0]
    )?;
    outln!("{}", pretty(&then.state))?;

    outln!(
        "\nTry it yourself: `streamfold --prefix {PREFIX} state user 1 --at-revision 1` (with a running Redis)."
    )?;
    Ok(())
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}

/// Deletes every key under the demo's own prefix (SCAN, never KEYS).
async fn reset(store: &EventStore) -> Result<()> {
    let mut conn = store.connection();
    // One key per DEL: on a cluster the keys live in many slots.
    for key in store.keys_with_prefix(&format!("{PREFIX}:")).await? {
        let _: () = conn.del(key).await?;
    }
    Ok(())
}
