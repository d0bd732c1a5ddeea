//! The store and the runtime as the global flags configure them.

use anyhow::Result;
use streamfold::{EventStore, Limits, Runtime, RuntimeConfig, StoreConfig};

use crate::commands::Global;

pub(crate) fn store_config(g: &Global) -> StoreConfig {
    StoreConfig::default()
        .prefix(g.prefix.clone())
        .layout(g.layout)
}

/// Connects to `--redis` with `--prefix` and `--layout`.
pub(crate) async fn store(g: &Global) -> Result<EventStore> {
    Ok(EventStore::connect(&g.redis, store_config(g)).await?)
}

/// The runtime's settings: the reducer limits and the cache folder from the flags.
pub(crate) fn runtime_config(g: &Global) -> RuntimeConfig {
    let limits = Limits::default()
        .call_timeout(g.call_timeout)
        .memory_bytes(g.memory_limit);
    let config = RuntimeConfig::default().limits(limits);
    match &g.cache_dir {
        Some(dir) => config.cache_dir(Some(dir.clone())),
        None => config,
    }
}

/// Connects and starts a runtime over the store.
pub(crate) async fn runtime(g: &Global) -> Result<Runtime> {
    let store = store(g).await?;
    Ok(Runtime::new(store, runtime_config(g))?)
}
