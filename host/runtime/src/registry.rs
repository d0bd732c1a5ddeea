//! The plugin registry, kept in Redis so every host that shares the Redis sees
//! the same reducers.
//!
//! Keys (under the store's prefix; none of them is per-aggregate, so they are
//! not hash-tagged, and each command touches one key, so the registry works on a
//! Redis Cluster with its keys in any slots: writes that go together are ordered so
//! that a crash between them leaves nothing visible half-written):
//! - `P:plugins:blob:DIGEST`  the component's bytes (reducers and projections)
//! - `P:plugins:meta:DIGEST`  its [`PluginInfo`] as JSON, plus when it was registered
//! - `P:plugins:versions:TYPE` sorted set of digests by registration time
//! - `P:plugins:active`        hash: aggregate type → active digest
//! - `P:plugins:history:TYPE`  list of activations, newest first
//! - `P:plugins:fresh:DIGEST`  present when verify found the reducer keeping state
//!   across aggregates: every host serves it on fresh instances
//!
//! Every registration and activation is also published on the channel
//! `P:plugins:activations` (as `registered TYPE DIGEST` or `activated TYPE DIGEST`),
//! so running hosts compile new plugins ahead of time and switch without polling.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use streamfold_sandbox::PluginInfo;

/// A registered reducer version, as listed by the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredPlugin {
    /// What the reducer says it is, and its digest.
    #[serde(flatten)]
    pub info: PluginInfo,
    /// When it was registered (RFC 3339, UTC).
    pub registered_at: String,
    /// Whether it is the active reducer of its aggregate type.
    #[serde(default)]
    pub active: bool,
}

/// One entry of a type's activation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activation {
    /// The digest that became active.
    pub digest: String,
    /// Its name and version at the time.
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// When it was activated (RFC 3339, UTC).
    pub activated_at: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Registry {
    store: streamfold_store::EventStore,
    conn: streamfold_store::Connection,
    prefix: String,
}

impl Registry {
    pub(crate) fn new(store: &streamfold_store::EventStore) -> Self {
        Registry {
            store: store.clone(),
            conn: store.connection(),
            prefix: store.key_prefix().to_string(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:plugins:{rest}", self.prefix)
    }

    /// Stores a validated plugin. Registering the same bytes again is a no-op that
    /// keeps the first registration time.
    pub(crate) async fn put(&self, info: &PluginInfo, bytes: &[u8]) -> Result<RegisteredPlugin> {
        if let Some(existing) = self.get(&info.digest).await? {
            return Ok(existing);
        }
        let now = chrono::Utc::now();
        let reg = RegisteredPlugin {
            info: info.clone(),
            registered_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            active: false,
        };
        let meta = serde_json::to_string(&reg).expect("plugin metadata serializes");
        let mut conn = self.conn.clone();
        // Bytes first, then the type's index, then the metadata that makes the plugin
        // visible (`get`, and `list` skips indexed digests without it): a crash in
        // between leaves an orphan blob or index entry, never metadata without bytes,
        // and registering again completes it.
        let _: () = conn
            .set(self.key(&format!("blob:{}", info.digest)), bytes)
            .await?;
        let _: () = conn
            .zadd(
                self.key(&format!("versions:{}", info.aggregate_type)),
                &info.digest,
                now.timestamp_millis(),
            )
            .await?;
        let _: () = conn
            .set(self.key(&format!("meta:{}", info.digest)), meta)
            .await?;
        let _: () = conn
            .publish(
                self.channel(),
                format!("registered {} {}", info.aggregate_type, info.digest),
            )
            .await?;
        Ok(reg)
    }

    pub(crate) async fn get(&self, digest: &str) -> Result<Option<RegisteredPlugin>> {
        let mut conn = self.conn.clone();
        let meta: Option<String> = conn.get(self.key(&format!("meta:{digest}"))).await?;
        meta.map(|m| self.parse_meta(digest, &m)).transpose()
    }

    fn parse_meta(&self, digest: &str, meta: &str) -> Result<RegisteredPlugin> {
        serde_json::from_str(meta)
            .map_err(|e| Error::corrupt(self.key(&format!("meta:{digest}")), e))
    }

    pub(crate) async fn bytes(&self, digest: &str) -> Result<Vec<u8>> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn.get(self.key(&format!("blob:{digest}"))).await?;
        bytes.ok_or_else(|| Error::not_found(format!("plugin {digest}")))
    }

    /// Stores a component's bytes under its digest (for projections, whose
    /// metadata lives in the store's projection registry).
    pub(crate) async fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(self.key(&format!("blob:{digest}")), bytes).await?;
        Ok(())
    }

    /// Deletes a component's bytes.
    pub(crate) async fn remove_blob(&self, digest: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(&format!("blob:{digest}"))).await?;
        Ok(())
    }

    pub(crate) async fn active_digest(&self, aggregate_type: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(self.key("active"), aggregate_type).await?)
    }

    /// The pub/sub channel activations are announced on.
    pub(crate) fn channel(&self) -> String {
        self.key("activations")
    }

    /// Every type's active digest.
    pub(crate) async fn active_digests(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.key("active")).await?)
    }

    /// What was active when, newest first.
    pub(crate) async fn history(&self, aggregate_type: &str) -> Result<Vec<Activation>> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("history:{aggregate_type}"));
        let entries: Vec<String> = conn.lrange(&key, 0, -1).await?;
        entries
            .iter()
            .map(|e| serde_json::from_str(e).map_err(|err| Error::corrupt(key.clone(), err)))
            .collect()
    }

    /// Records that the reducer `digest` keeps state across aggregates, so that every
    /// host (and this one after a restart) serves it on fresh instances.
    pub(crate) async fn mark_fresh(&self, digest: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(self.key(&format!("fresh:{digest}")), "1").await?;
        Ok(())
    }

    /// Whether [`mark_fresh`](Self::mark_fresh) was recorded for `digest`.
    pub(crate) async fn is_fresh(&self, digest: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.key(&format!("fresh:{digest}"))).await?)
    }

    /// Deletes a registered version that is not active.
    pub(crate) async fn remove(&self, plugin: &RegisteredPlugin) -> Result<()> {
        let info = &plugin.info;
        if self.active_digest(&info.aggregate_type).await?.as_deref() == Some(info.digest.as_str())
        {
            return Err(Error::invalid(format!(
                "{} is the active reducer for {:?}: activate another version first, then remove this one",
                info.label(),
                info.aggregate_type
            )));
        }
        // The reverse order of `put`: out of the index, then invisible, then gone.
        let mut conn = self.conn.clone();
        let _: () = conn
            .zrem(
                self.key(&format!("versions:{}", info.aggregate_type)),
                &info.digest,
            )
            .await?;
        let _: () = conn.del(self.key(&format!("meta:{}", info.digest))).await?;
        let _: () = conn.del(self.key(&format!("blob:{}", info.digest))).await?;
        let _: () = conn
            .del(self.key(&format!("fresh:{}", info.digest)))
            .await?;
        Ok(())
    }

    /// Makes `digest` the active reducer of its aggregate type, and tells every
    /// running host.
    pub(crate) async fn activate(&self, plugin: &RegisteredPlugin) -> Result<()> {
        let entry = Activation {
            digest: plugin.info.digest.clone(),
            name: plugin.info.name.clone(),
            version: plugin.info.version.clone(),
            activated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        };
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(
                self.key("active"),
                &plugin.info.aggregate_type,
                &plugin.info.digest,
            )
            .await?;
        let _: () = conn
            .lpush(
                self.key(&format!("history:{}", plugin.info.aggregate_type)),
                serde_json::to_string(&entry).expect("activation serializes"),
            )
            .await?;
        let _: () = conn
            .publish(
                self.channel(),
                format!(
                    "activated {} {}",
                    plugin.info.aggregate_type, plugin.info.digest
                ),
            )
            .await?;
        Ok(())
    }

    /// Every registered version of every type (or of one type), oldest first.
    pub(crate) async fn list(&self, aggregate_type: Option<&str>) -> Result<Vec<RegisteredPlugin>> {
        let mut conn = self.conn.clone();
        let active: std::collections::HashMap<String, String> =
            conn.hgetall(self.key("active")).await?;
        let types: Vec<String> = match aggregate_type {
            Some(t) => vec![t.to_string()],
            None => {
                let strip = self.key("versions:");
                let mut types: Vec<String> = self
                    .store
                    .keys_with_prefix(&strip)
                    .await?
                    .iter()
                    .filter_map(|key| key.strip_prefix(&strip).map(str::to_string))
                    .collect();
                types.sort();
                types
            }
        };
        let mut out = Vec::new();
        for t in types {
            let digests: Vec<String> = conn
                .zrange(self.key(&format!("versions:{t}")), 0, -1)
                .await?;
            for d in digests {
                if let Some(mut p) = self.get(&d).await? {
                    p.active = active.get(&t) == Some(&d);
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Resolves `DIGEST_OR_VERSION` for a type: a full digest, a unique digest
    /// prefix (at least 6 hex digits, `sha256:` optional) or a semantic version.
    pub(crate) async fn resolve(
        &self,
        aggregate_type: &str,
        wanted: &str,
    ) -> Result<RegisteredPlugin> {
        let wanted = wanted.trim_start_matches("sha256:");
        let versions = self.list(Some(aggregate_type)).await?;
        let by_version: Vec<_> = versions
            .iter()
            .filter(|p| p.info.version == wanted)
            .collect();
        let by_digest: Vec<_> = versions
            .iter()
            .filter(|p| wanted.len() >= 6 && p.info.digest.starts_with(wanted))
            .collect();
        let matches = if by_digest.is_empty() {
            by_version
        } else {
            by_digest
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::not_found(format!(
                "a registered {aggregate_type} reducer matching {wanted:?}"
            ))),
            many => Err(Error::invalid(format!(
                "{wanted:?} matches {} registered {aggregate_type} reducers; give more of the digest",
                many.len()
            ))),
        }
    }
}
