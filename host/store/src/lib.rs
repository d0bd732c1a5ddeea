//! `streamfold-store`: the event store, every event in Redis Streams.
//!
//! This crate knows nothing of WebAssembly: it appends, reads, pages and snapshots
//! events and their states as text. The reducer host (`streamfold-sandbox`) and the
//! library that joins the two (`streamfold`) sit above it.
//!
//! Each event is an envelope with the seed document's fields — `event_id`,
//! `aggregate_type`, `aggregate_id`, `event_type`, `data` (JSON text), `timestamp`,
//! `version` — plus `revision`, its 1-based position in its aggregate's history. It is
//! written to two streams: the aggregate's (its full history, never trimmed, the source
//! of truth) and its type's category stream (a feed for subscribers, trimmed
//! approximately at [`StoreConfig::category_max_len`]).
//!
//! # Appending
//!
//! [`EventStore::append`] runs one Lua script (called by SHA, reloaded transparently
//! after `SCRIPT FLUSH` or a restart) that checks the [`ExpectedRevision`] against a
//! revision counter kept in a small hash beside the aggregate — not `XLEN` of a stream
//! that may be trimmed or edited — and then adds the whole batch to both streams. A
//! mismatch writes nothing and is [`ErrorKind::Conflict`] with the
//! actual revision. A stream written by the seed (no counter yet) is adopted: the
//! counter starts at the aggregate stream's length, which is never trimmed.
//!
//! # Retry safety
//!
//! A retried append that already succeeded (same event ids, same expected revision)
//! writes nothing and returns the original [`AppendResult`] with `already_appended`:
//!
//! - `Exact(n)` / `NoStream`: on a mismatch where the aggregate is at least `n + batch
//!   length`, revisions `n+1 ..` are compared with the batch's event ids — first through
//!   the "last batch" remembered in the counter hash, else by reading back at most
//!   [`RETRY_SCAN_LIMIT`] newest entries. Safe whatever was appended in between.
//! - `Any` / `Exists`: the batch is compared with the last batch remembered in the
//!   counter hash, so a retry is recognised if no other batch was appended to that
//!   aggregate in between. Use exact revisions where that is not enough.
//!
//! The ids must be the same: give events ids with [`NewEvent::with_id`] or retry with
//! the same [`NewEvent`] values that already carry them. The store itself retries a
//! call once, with the same ids, when the connection breaks (e.g. Redis restarted).
//!
//! # Reading
//!
//! Always in bounded pages (`XRANGE ... COUNT page_size`), see [`History`], over lean
//! connections of the store's own that walk each reply in place instead of building it
//! into `redis::Value`s first (four times faster on long histories). Time travel:
//! [`ReadOptions::to_revision`] and [`ReadOptions::as_of`] (stream ids start with the
//! millisecond Redis stored the entry).
//!
//! # Following
//!
//! [`EventStore::subscribe`] and [`EventStore::subscribe_category`] follow a stream
//! live: what is stored after a position (catch-up, in pages), a caught-up signal,
//! then each event as it is appended (`XREAD BLOCK` on a connection of the
//! subscription's own), resuming exactly after the last position delivered across
//! reconnects. See [`Subscription`].
//!
//! # Keys
//!
//! ## The default layout ([`Layout::Default`])
//!
//! Every key of one aggregate, and the category stream partition it writes to, share one
//! Redis Cluster hash tag `{type:partition}`, so the append script touches a single slot:
//!
//! | key                              | what                                                   |
//! |----------------------------------|--------------------------------------------------------|
//! | `sf:{user:0}:agg:1`              | aggregate stream of `user/1`: its full history, never trimmed |
//! | `sf:{user:0}:rev:1`              | hash: revision counter and the last batch (retry safety) |
//! | `sf:{user:0}:snap:1`             | hash: one snapshot per reducer digest                  |
//! | `sf:{user:0}:cat`                | category stream, partition 0 of type `user` (trimmed)  |
//!
//! `sf` is the configurable prefix, `0` the partition: a stable FNV-1a hash of the
//! aggregate id modulo the type's partition count.
//!
//! Why no two keys can collide: the prefix and the type may not contain `{` or `}`, so
//! the first `{` of a key ends the prefix and the first `}` ends the tag; the partition
//! (digits only) is the tag's last `:`-separated part, so `type` is everything before
//! it. After the tag comes exactly one of `:agg:`, `:rev:`, `:snap:` followed by the
//! id (which may contain anything), or the bare `:cat`. Other modules that keep data
//! under the same prefix (the plugin registry) use keys without `{` right after the
//! prefix, so they cannot collide with these either.
//!
//! ## The seed layout ([`Layout::Seed`])
//!
//! The keys of the seed document's `EventStore`, so that streams it wrote can be
//! adopted: `events:{type}` (category), `events:{type}:{id}` (aggregate),
//! `snapshot:{type}:{id}` (snapshots: our fields beside the seed's `state` and
//! `version_id`), and our revision counter in `streamfold:rev:{type}:{id}`. The type
//! may not contain `:` (else `events:a:b` could be type `a`, id `b` or the category of
//! type `a:b`). These keys carry no hash tag: the seed layout is for a single Redis,
//! not a Redis Cluster, and has no partitions. Once Streamfold has appended to an
//! adopted stream, all writers must go through Streamfold: a plain `XADD` by the seed's
//! code would not move the revision counter.

#![warn(missing_docs)]

mod append;
mod config;
mod error;
mod keys;
mod live;
mod model;
mod page;
mod read;
mod snapshot;
mod tls;
mod wire;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisResult};

use crate::error::redact_url;
pub use crate::error::{Conflict, Error, ErrorKind, Result};

pub use append::{MAX_BATCH, RETRY_SCAN_LIMIT};
pub use config::{Layout, StoreConfig, TlsConfig};
pub use keys::AggregateKeys;
pub use live::{
    DEFAULT_BLOCK, DEFAULT_GIVE_UP_AFTER, Live, SubscribeFrom, SubscribeOptions, Subscription,
};
pub use model::{AppendResult, ExpectedRevision, NewEvent, RecordedEvent, Snapshot};
pub use page::{EventView, Iter as PageIter, Page};
pub use read::{CategoryReadOptions, History, MAX_CATEGORY_COUNT, ReadOptions};

/// A connection to the event store. Cheap to clone: clones share one multiplexed,
/// self-reconnecting connection for writes and small commands, and a pool of lean
/// connections for reading histories (see [`History`]).
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
    con: ConnectionManager,
}

struct Inner {
    config: StoreConfig,
    /// For connections of other kinds (pub/sub). Never printed: it holds the password.
    client: redis::Client,
    /// The URL with any password removed: the only form we keep.
    url: String,
    /// Lean connections for stream reads (`XRANGE`), see [`wire`].
    reader: wire::Reader,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("url", &self.inner.url)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The connection is gone (refused, reset, closed), as opposed to a slow or failed
/// command: worth one more try, which waits for the manager's reconnect.
fn is_connection_loss(e: &redis::RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error())
}

impl EventStore {
    /// Connects to Redis at `url` (e.g. `redis://127.0.0.1:6379/0`,
    /// `rediss://alice:secret@redis.example:6380/0` for TLS and an ACL user).
    ///
    /// Every connection — writes, reads, subscriptions, pub/sub — uses the URL's user
    /// and password and, for `rediss://`, TLS with [`StoreConfig::tls`].
    ///
    /// Fails fast — one connection attempt bounded by `connect_timeout` — with
    /// [`ErrorKind::Unavailable`] (password removed from the URL) when Redis is not there
    /// or the TLS handshake fails (the message starts with `TLS` and says why), and with
    /// [`ErrorKind::InvalidInput`] for a bad URL or configuration (TLS settings with a
    /// `redis://` URL among them). A wrong password is [`ErrorKind::Redis`] (`WRONGPASS`).
    /// After that, the connection is re-established by itself whenever Redis comes back.
    pub async fn connect(url: &str, config: StoreConfig) -> Result<Self> {
        config.validate()?;
        let redacted = redact_url(url);
        let bad_url = |e: redis::RedisError| {
            Error::invalid(format!("{redacted} is not a usable Redis URL: {e}"))
        };
        let info = url.into_connection_info().map_err(bad_url)?;
        let (client, wire_tls) = match info.addr().clone() {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: url_insecure,
                ..
            } => {
                tls::install_provider();
                let tls = &config.tls;
                let insecure = tls.insecure || url_insecure;
                if insecure {
                    tls::warn_insecure(&redacted);
                }
                let info = info.set_addr(ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params: None,
                });
                let certs = redis::TlsCertificates {
                    client_tls: match (&tls.client_cert_pem, tls.client_key()) {
                        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.to_vec(),
                        }),
                        _ => None,
                    },
                    root_cert: if insecure { None } else { tls.ca_pem.clone() },
                };
                let wire_tls = tls::client_config(tls, insecure)?;
                let client = redis::Client::build_with_tls(info, certs).map_err(|e| {
                    Error::invalid(format!("{redacted}: unusable TLS settings: {e}"))
                })?;
                (client, Some(wire_tls))
            }
            _ if config.tls.is_set() => {
                return Err(Error::invalid(format!(
                    "TLS settings (a CA, a client certificate or insecure) were given, but \
                     {redacted} is not a rediss:// URL"
                )));
            }
            _ => (redis::Client::open(info).map_err(bad_url)?, None),
        };
        let reader = wire::Reader::new(
            client.get_connection_info(),
            &redacted,
            wire_tls,
            config.connect_timeout,
            config.response_timeout,
            config.reconnect_retries,
        )?;
        // The lean reader's attempt first: its TLS errors are typed, and it tells a
        // plain URL pointed at a TLS port from a server that is not there.
        reader.probe().await?;
        let unreachable = |e: redis::RedisError| {
            if e.is_io_error()
                || e.is_timeout()
                || e.is_connection_refusal()
                || e.is_connection_dropped()
            {
                Error::unreachable(redacted.clone(), e)
            } else {
                Error::from(e)
            }
        };

        // One plain attempt first: the manager would retry with back-off, and a caller
        // pointing at the wrong address should hear about it at once.
        let probe_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_config)
            .await
            .map_err(unreachable)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut probe)
            .await
            .map_err(unreachable)?;
        drop(probe);

        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_retries)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let con = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(unreachable)?;
        Ok(EventStore {
            inner: Arc::new(Inner {
                config,
                client,
                url: redacted,
                reader,
            }),
            con,
        })
    }

    /// A pub/sub connection to the same Redis (for plugin activation notices).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        Ok(self.inner.client.get_async_pubsub().await?)
    }

    /// The settings the store was made with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// A clone of the store's connection, for other modules that keep their data in the
    /// same Redis (the plugin registry). Keys they write should start with
    /// [`key_prefix`](Self::key_prefix) followed by `:` and a name without `{`.
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// The Redis URL, password removed.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The configured key prefix (`"sf"` by default), for other modules' keys.
    pub fn key_prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// The Redis keys of an aggregate (checks the type and id).
    pub fn keys(&self, aggregate_type: &str, aggregate_id: &str) -> Result<AggregateKeys> {
        keys::aggregate_keys(self.config(), aggregate_type, aggregate_id)
    }

    /// The key of one partition of a type's category stream.
    pub fn category_key(&self, aggregate_type: &str, partition: u32) -> Result<String> {
        keys::category_key(self.config(), aggregate_type, partition)
    }

    /// Asks Redis whether it is there (`PING`), for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self
            .with_reconnect("PING", |mut con| async move {
                redis::cmd("PING").query_async(&mut con).await
            })
            .await?;
        Ok(())
    }

    /// The aggregate's current revision: the number of events in its history, 0 if it
    /// has none.
    pub async fn revision(&self, aggregate_type: &str, aggregate_id: &str) -> Result<u64> {
        let keys = self.keys(aggregate_type, aggregate_id)?;
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(&keys.revision)
            .arg("rev")
            .cmd("XLEN")
            .arg(&keys.stream);
        let pipe = &pipe;
        let (counter, len): (Option<String>, u64) = self
            .with_reconnect(&keys.stream, move |mut con| async move {
                pipe.query_async(&mut con).await
            })
            .await?;
        match counter {
            // A stream adopted from the seed has no counter until our first append.
            None => Ok(len),
            Some(c) => c
                .parse()
                .map_err(|_| Error::corrupt(keys.revision, format!("rev {c:?} is not a number"))),
        }
    }

    /// Ids of aggregates of a type that have events, at most `limit` of them, in no
    /// particular order.
    ///
    /// Walks the keyspace with `SCAN ... MATCH ... TYPE stream` (never `KEYS`, which
    /// blocks Redis), so it costs time proportional to the whole keyspace when `limit`
    /// is `None` or larger than the number of aggregates.
    pub async fn aggregate_ids(
        &self,
        aggregate_type: &str,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut seen = std::collections::HashSet::new();
        let mut ids = Vec::new();
        if limit == 0 {
            return Ok(ids);
        }
        for prefix in keys::aggregate_stream_prefixes(self.config(), aggregate_type)? {
            let pattern = format!("{}*", keys::glob_escape(&prefix));
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .arg("TYPE")
                    .arg("stream");
                let cmd = &cmd;
                let (next, found): (u64, Vec<Vec<u8>>) = self
                    .with_reconnect(&pattern, move |mut con| async move {
                        cmd.query_async(&mut con).await
                    })
                    .await?;
                for key in found {
                    let Some(id) = key.strip_prefix(prefix.as_bytes()) else {
                        continue;
                    };
                    let Ok(id) = String::from_utf8(id.to_vec()) else {
                        continue; // not a key we could have written
                    };
                    if !id.is_empty() && seen.insert(id.clone()) {
                        ids.push(id);
                        if ids.len() >= limit {
                            return Ok(ids);
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(ids)
    }

    /// Runs a command, once more if the connection was lost (the manager reconnects in
    /// the meantime), and maps the error. Safe for appends too: a repeated append
    /// carries the same event ids and is recognised if the first one got through.
    pub(crate) async fn with_reconnect<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match op(self.con.clone()).await {
            Ok(v) => Ok(v),
            Err(e) if is_connection_loss(&e) => {
                op(self.con.clone()).await.map_err(|e| self.map_err(e, key))
            }
            Err(e) => Err(self.map_err(e, key)),
        }
    }

    /// Turns a client error into the crate's: a lost connection is
    /// [`ErrorKind::Unavailable`], a slow reply [`ErrorKind::Unavailable`], a key of the wrong type
    /// [`ErrorKind::Corrupt`].
    fn map_err(&self, e: redis::RedisError, key: &str) -> Error {
        if e.is_timeout() {
            return Error::timeout(self.inner.config.response_timeout);
        }
        if is_connection_loss(&e) {
            return Error::unreachable(self.inner.url.clone(), e);
        }
        if e.code() == Some("WRONGTYPE") {
            return Error::corrupt(
                key,
                "holds another kind of value than Streamfold writes there",
            );
        }
        Error::from(e)
    }
}
