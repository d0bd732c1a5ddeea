//! What a host holds, by aggregate type: the types with events, the types with
//! reducers, and how they meet; and the secrets its hosts share.

use std::collections::BTreeMap;

use serde::Serialize;
use streamfold_sandbox::PluginInfo;

use crate::{Result, Runtime};

/// One aggregate type: its events and its reducers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeSummary {
    /// The aggregate type.
    #[serde(rename = "type")]
    pub aggregate_type: String,
    /// Whether it has events.
    pub has_events: bool,
    /// Its category partitions (recorded by its first append; `null` before it).
    pub partitions: Option<u32>,
    /// Its active reducer, if it has one.
    pub active_reducer: Option<PluginInfo>,
    /// How many reducer versions are registered for it.
    pub reducer_versions: usize,
}

impl Runtime {
    /// A random 32-byte secret kept in Redis as `{prefix}:secret:{name}`, the same for
    /// every host of this store: the first host that asks makes it (`SET NX`).
    /// Deleting the key makes a new one next time (for the session key: every
    /// browser session ends).
    pub async fn shared_secret(&self, name: &str) -> Result<[u8; 32]> {
        use redis::AsyncCommands;
        let key = format!("{}:secret:{name}", self.store().key_prefix());
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| crate::Error::corrupt(&key, format!("no randomness to make it: {e}")))?;
        let mut con = self.store().connection();
        let _: bool = con.set_nx(&key, fresh.as_slice()).await?;
        let stored: Vec<u8> = con.get(&key).await?;
        stored.try_into().map_err(|_| {
            crate::Error::corrupt(&key, "not a 32-byte secret: delete it to make a new one")
        })
    }

    /// Every aggregate type that has events or reducers, sorted by type.
    pub async fn aggregate_types(&self) -> Result<Vec<TypeSummary>> {
        let mut types: BTreeMap<String, TypeSummary> = BTreeMap::new();
        let blank = |t: &str| TypeSummary {
            aggregate_type: t.to_owned(),
            has_events: false,
            partitions: None,
            active_reducer: None,
            reducer_versions: 0,
        };
        for (t, partitions) in self.store().aggregate_types().await? {
            let entry = types.entry(t.clone()).or_insert_with(|| blank(&t));
            entry.has_events = true;
            entry.partitions = Some(partitions);
        }
        for p in self.plugins(None).await? {
            let t = p.info.aggregate_type.clone();
            let entry = types.entry(t.clone()).or_insert_with(|| blank(&t));
            entry.reducer_versions += 1;
            if p.active {
                entry.active_reducer = Some(p.info);
            }
        }
        Ok(types.into_values().collect())
    }
}
