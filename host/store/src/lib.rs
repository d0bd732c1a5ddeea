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
//! # Durable subscriptions
//!
//! [`EventStore::create_group`] makes a named group on a type's category: a Redis
//! consumer group of that name on every partition stream, from the beginning, the
//! end or a position. Workers [`fetch`](EventStore::fetch) deliveries, each with a
//! `delivery` token (`partition/stream id`) and its delivery count, and
//! [`ack`](EventStore::ack) or [`nack`](EventStore::nack) them (retry now or after
//! a delay, park, skip). Every step that changes a partition's state is one Lua
//! script (`groups.lua`) over keys that share the partition's hash tag: atomic, one
//! slot on a cluster. Handing out new entries is two calls around the store's own
//! read: `fetch` says the partition is free (and where the group stands), the store
//! reads the entries after that position with its lean reader and chooses the batch,
//! and `deliver` hands it out only if the partition is still as `fetch` left it (so
//! entries never travel through Lua).
//!
//! - **Order per aggregate, without leases.** A partition hands out its next entries
//!   only while the group has nothing pending on it, as a batch that stops before an
//!   aggregate's second entry. So no two events of one aggregate are ever in flight,
//!   and a partition is held by one consumer at a time: the type's partition count
//!   bounds a group's parallelism. Any polling consumer takes any free partition (a
//!   fetch starts at a rotating one), which is the rebalance: a consumer that stops
//!   polling stops taking partitions.
//! - **At least once.** An entry pending longer than the ack timeout is handed out
//!   again by the next fetch that looks at its partition, its delivery count raised.
//!   Delivered `max_deliveries` times, it is parked instead: copied with the reason,
//!   the count and the worker's last error to the group's parked stream, and
//!   acknowledged. A nack `retry` keeps the entry pending (the partition waits) and
//!   sets its idle time so that it is reclaimed after the delay.
//! - **Replay** ([`EventStore::replay_parked`]) puts parked entries on a per-partition
//!   list the fetch serves before new entries (`XCLAIM … FORCE`, a fresh delivery
//!   count). They are not appended to the category again: that would hand them to
//!   every other group and break each aggregate's order there.
//! - **Status** ([`EventStore::group_status`]): lag (`XINFO GROUPS`; the group is
//!   created with `ENTRIESREAD` so Redis knows it at once), pending, oldest pending
//!   age, parked, and the consumers with their last poll. A fetch returns at once; a
//!   long poll belongs to the caller ([`EventStore::fetch_wait`] polls).
//! - **Trim holds.** Each group records, per partition, the lowest entry it still
//!   needs (`holds.lua`); the category trim never goes past the lowest hold (the
//!   stream may grow beyond its length), and the status reports the entries held
//!   back. An entry that is gone all the same (trimmed by another tool) is parked as
//!   `trimmed` when its redelivery finds it gone.
//!
//! # Projections
//!
//! What a projection runner (the WASM host that folds category feeds into a read
//! model of JSON documents) needs from Redis; the runner itself is elsewhere. Each
//! projection *version* ([`EventStore::projection`] → [`ProjectionVersion`]) keeps
//! all its keys under one hash tag `{name:vid}`, so every step is one Lua script
//! (`projections.lua`) on one slot, on a cluster too:
//!
//! - **Effectively once.** [`ProjectionVersion::commit`] writes a batch's documents
//!   (and their key index, change entries, dead letters, failure and counters) and
//!   moves the checkpoint (one position per source partition stream), atomically,
//!   if the checkpoint is the one the batch started from. A crash before the commit
//!   leaves the read model exactly at the checkpoint; a commit retried after a lost
//!   reply is recognised by its id.
//! - **One runner.** A lease per version ([`ProjectionVersion::acquire_lease`],
//!   `SET … PX` in the script) carries a fencing token that only grows; the commit
//!   checks it, so a paused or partitioned former holder is
//!   [`Fenced`](ErrorKind::Fenced) and never commits again.
//! - **Rebuilds, blue/green.** A new version builds under its own keys from position
//!   0; the registry's serving pointer
//!   ([`EventStore::set_projection_pointer`], compare-and-set) switches reads to it
//!   and back (rollback). [`ProjectionVersion::reset`] rebuilds a version in place;
//!   [`EventStore::remove_projection_version`] drops one.
//! - **Failures.** A commit records where the projection stopped (event, aggregate,
//!   error) or dead-letters skipped events, with the batch.
//! - **Reads.** [`ProjectionVersion::get`], pages in key order
//!   ([`ProjectionVersion::page`]), the change head as an ETag, and the capped change
//!   stream ([`ProjectionVersion::changes`], live with [`ChangeFeed`]).
//! - **Sources.** [`EventStore::projection_sources`],
//!   [`EventStore::read_projection_sources`] (merged pages after a checkpoint),
//!   [`EventStore::trimmed_projection_sources`] (the category trim got ahead of the
//!   checkpoint) and [`EventStore::projection_lag`].
//!
//! Keys: `sf:pj:{name:vid}:docs|keys|ckpt|stat|lease|fence|dead|changes` (see
//! [`ProjectionVersion`]) and the registry's `sf:pj:versions:NAME`, `sf:pj:names`,
//! `sf:pj:serving`, `sf:pj:active` (no hash tag; one key per command).
//!
//! # Redis Cluster
//!
//! With [`StoreConfig::cluster`], [`EventStore::connect`] takes one or more node URLs,
//! comma-separated, and discovers the rest. Writes and small commands go through the
//! `redis` crate's cluster client; the lean reader keeps a slot map of its own
//! (`CLUSTER SLOTS`), a pool per master, follows `MOVED` and `ASK`, and reads the map
//! again when a node fails, so that reads go to a promoted replica. Every key of an
//! aggregate and its category partition share one hash tag, so an append touches one
//! slot. A whole partitioned category reads as one feed with
//! [`EventStore::read_category_merged`] and [`EventStore::subscribe_category_merged`].
//! [`Durability::Replicas`] makes an append wait for replicas (`WAIT`) before it is
//! acknowledged. The seed layout has no hash tags and is refused on a cluster.
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
//! | `sf:{user:0}:grp:mailer`         | hash: group `mailer`'s settings, consumers' last polls and workers' last errors on partition 0 |
//! | `sf:{user:0}:parked:mailer`      | stream: group `mailer`'s parked entries of partition 0 |
//! | `sf:{user:0}:replay:mailer`      | list: parked entries replayed, served before new ones  |
//! | `sf:groups`                      | hash: every group (`type group` → settings), for listing |
//!
//! `sf` is the configurable prefix, `0` the partition: a stable FNV-1a hash of the
//! aggregate id modulo the type's partition count. That count is recorded in the hash
//! `sf:partitions` (type → count) by a type's first append, and a store configured with
//! another count for the type is refused on its reads and appends
//! ([`ErrorKind::InvalidInput`]): it would look for the aggregates under other keys.
//!
//! Why no two keys can collide: the prefix and the type may not contain `{` or `}`, so
//! the first `{` of a key ends the prefix and the first `}` ends the tag; the partition
//! (digits only) is the tag's last `:`-separated part, so `type` is everything before
//! it. After the tag comes exactly one of `:agg:`, `:rev:`, `:snap:` followed by the
//! id (which may contain anything), one of `:grp:`, `:parked:`, `:replay:` followed by
//! a group name, or the bare `:cat`. Other modules that keep data
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
mod cluster;
mod config;
mod connection;
mod error;
mod feed;
mod groups;
mod holds;
mod keys;
mod listing;
mod live;
mod model;
mod page;
mod projections;
mod read;
mod reply;
mod snapshot;
mod tls;
mod wake;
mod wire;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult};
use tokio_rustls::rustls::ClientConfig;

use crate::cluster::{ClusterReader, Reads};
use crate::connection::Con;

use crate::error::redact_url;
pub use crate::error::{Conflict, Error, ErrorKind, Result};

pub use append::{AppendCalls, MAX_BATCH, RETRY_SCAN_LIMIT};
pub use config::{Durability, Layout, StoreConfig, TlsConfig};
pub use connection::Connection;
pub use feed::CategoryFeed;
pub use groups::{
    ConsumerStatus, DEFAULT_ACK_TIMEOUT_MS, DEFAULT_MAX_DELIVERIES, Delivery, GroupCreated,
    GroupInfo, GroupSettings, GroupStart, GroupStatus, MAX_ACK_TIMEOUT_MS, MAX_FETCH,
    MAX_GROUP_NAME_CHARS, MAX_MAX_DELIVERIES, MAX_PARKED_PAGE, MAX_REASON_CHARS, MAX_SETTLE,
    NackAction, ParkReason, ParkedEvent, ParkedPage, PartitionStatus, REPOLL, Replayed, Settled,
    validate_group_name,
};
pub use holds::MAX_TRIM_HOLDER_CHARS;
pub use keys::AggregateKeys;
pub use listing::{IdsPage, IdsPageOptions, MAX_IDS_PAGE};
pub use wake::CategoryWatch;

/// The names and positions the store accepts, as limits and regular expressions
/// (for API schemas that must say exactly what is accepted).
pub mod names {
    pub use crate::keys::{
        MAX_ID_CHARS, MAX_TYPE_CHARS, aggregate_type_pattern, group_name_pattern, validate_id,
        validate_type,
    };
    pub use crate::listing::IDS_CURSOR_PATTERN;
    pub use crate::model::{MAX_REVISION, POSITION_PATTERN, POSITIONS_PATTERN};
}
pub use live::{
    DEFAULT_BLOCK, DEFAULT_GIVE_UP_AFTER, Live, SubscribeFrom, SubscribeOptions, Subscription,
};
pub use model::{
    AppendResult, ExpectedRevision, MAX_JSON_DEPTH, NewEvent, RecordedEvent, Snapshot,
};
pub use page::{EventView, Iter as PageIter, Page};
pub use projections::{
    Change, ChangeFeed, ChangeOp, ChangesPage, Checkpoint, CommitBatch, CommitOutcome,
    DEFAULT_CHANGES_MAX_LEN, DeadLetter, DocPage, DocWrite, Lease, LeaseHolder, MAX_CHANGES_PAGE,
    MAX_CHECKPOINT_STREAMS, MAX_COMMIT_BYTES, MAX_COMMIT_DEAD_LETTERS, MAX_COMMIT_WRITES,
    MAX_DOC_BYTES, MAX_DOC_KEY_BYTES, MAX_DOC_PAGE, MAX_ERROR_CHARS, MAX_HOLDER_CHARS,
    MAX_LEASE_TTL, MAX_PROJECTION_NAME_CHARS, MAX_VERSION_ID_CHARS, MAX_VERSION_META_BYTES,
    Pointer, ProjectionFailure, ProjectionInfo, ProjectionStatus, ProjectionVersion, SourceEvent,
    SourceLag, SourceStream, StoredDeadLetter, validate_projection_name, validate_version_id,
};
pub use read::{CategoryReadOptions, History, MAX_CATEGORY_COUNT, ReadOptions};

/// The Redis Cluster hash slot of a key (CRC16 of its hash tag, or of the whole key
/// without one, modulo 16384), as `CLUSTER KEYSLOT` computes it: which node of a
/// cluster holds an aggregate's keys (`hash_slot(&store.keys(t, id)?.stream)`).
pub fn hash_slot(key: &str) -> u16 {
    cluster::slot_of(key.as_bytes())
}

/// A connection to the event store. Cheap to clone: clones share one multiplexed,
/// self-reconnecting connection for writes and small commands, and a pool of lean
/// connections for reading histories (see [`History`]).
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
    con: Connection,
}

struct Inner {
    config: StoreConfig,
    /// For connections of other kinds (pub/sub): one per configured node. Never
    /// printed: they hold the password.
    clients: Vec<redis::Client>,
    /// The TLS certificates of a `rediss://` cluster, for clients of discovered nodes.
    /// Never printed: it holds the client key.
    certs: Option<redis::TlsCertificates>,
    /// The URL(s) with any password removed: the only form we keep.
    url: String,
    /// Lean connections for stream reads (`XRANGE`), see [`wire`] and [`cluster`].
    reader: Reads,
    /// Types whose partition count was checked against the one recorded in Redis.
    partitions_checked: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Appends waiting for their partition's next script call (group commit).
    appends: append::Queues,
    /// The partition watchers that wake waiting fetches of durable subscriptions.
    wakers: wake::Wakers,
}

/// Where one `SCAN` walk runs.
pub(crate) enum ScanAt<'a> {
    /// The master of this key's slot (on one Redis: that Redis).
    SlotOf(&'a str),
    /// This cluster node (`None`: the one Redis).
    Node(Option<&'a cluster::Node>),
}

/// The same place, borrowed again (a walk takes many steps at one place).
fn at_ref<'a>(at: &'a ScanAt<'_>) -> ScanAt<'a> {
    match at {
        ScanAt::SlotOf(key) => ScanAt::SlotOf(key),
        ScanAt::Node(node) => ScanAt::Node(*node),
    }
}

/// One URL, ready for the `redis` crate and the lean reader.
struct Node {
    info: ConnectionInfo,
    client: redis::Client,
    certs: Option<redis::TlsCertificates>,
    wire_tls: Option<Arc<ClientConfig>>,
}

/// Parses one URL and applies the TLS settings to it.
fn prepare(url: &str, config: &StoreConfig) -> Result<Node> {
    let redacted = redact_url(url);
    let bad_url =
        |e: redis::RedisError| Error::invalid(format!("{redacted} is not a usable Redis URL: {e}"));
    let info = url.into_connection_info().map_err(bad_url)?;
    match info.addr().clone() {
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
            let client = redis::Client::build_with_tls(info.clone(), certs.clone())
                .map_err(|e| Error::invalid(format!("{redacted}: unusable TLS settings: {e}")))?;
            Ok(Node {
                info,
                client,
                certs: Some(certs),
                wire_tls: Some(wire_tls),
            })
        }
        _ if config.tls.is_set() => Err(Error::invalid(format!(
            "TLS settings (a CA, a client certificate or insecure) were given, but \
             {redacted} is not a rediss:// URL"
        ))),
        _ => Ok(Node {
            client: redis::Client::open(info.clone()).map_err(bad_url)?,
            info,
            certs: None,
            wire_tls: None,
        }),
    }
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
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let redacted = urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
        match urls.len() {
            0 => return Err(Error::invalid("no Redis URL given")),
            1 => {}
            n if !config.cluster => {
                return Err(Error::invalid(format!(
                    "{n} Redis URLs given ({redacted}): several URLs are the nodes of a Redis \
                     Cluster, and the store is not configured for one (StoreConfig::cluster)"
                )));
            }
            _ => {}
        }
        let nodes = urls
            .iter()
            .map(|u| prepare(u, &config))
            .collect::<Result<Vec<_>>>()?;
        if nodes
            .iter()
            .any(|n| n.wire_tls.is_some() != nodes[0].wire_tls.is_some())
        {
            return Err(Error::invalid(format!(
                "{redacted}: either every node URL is rediss:// (TLS) or none is"
            )));
        }
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

        let (reader, con) = if config.cluster {
            let infos: Vec<ConnectionInfo> = nodes.iter().map(|n| n.info.clone()).collect();
            let reader = ClusterReader::new(
                &infos,
                &redacted,
                nodes[0].wire_tls.clone(),
                config.connect_timeout,
                config.response_timeout,
                config.reconnect_retries,
            )?;
            // Reads the slot map: fails fast, with typed TLS errors, when no node answers.
            reader.probe().await?;
            let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX))
                .min_retry_wait(100)
                .max_retry_wait(1000);
            if let Some(certs) = &nodes[0].certs {
                builder = builder.certs(certs.clone());
            }
            let client = builder.build().map_err(|e| {
                Error::invalid(format!("{redacted}: unusable cluster settings: {e}"))
            })?;
            let con = client.get_async_connection().await.map_err(unreachable)?;
            (Reads::Cluster(Box::new(reader)), Con::Cluster(con))
        } else {
            let node = &nodes[0];
            let reader = wire::Reader::new(
                node.client.get_connection_info(),
                &redacted,
                node.wire_tls.clone(),
                config.connect_timeout,
                config.response_timeout,
                config.reconnect_retries,
            )?;
            // The lean reader's attempt first: its TLS errors are typed, and it tells a
            // plain URL pointed at a TLS port from a server that is not there.
            reader.probe().await?;

            // One plain attempt first: the manager would retry with back-off, and a
            // caller pointing at the wrong address should hear about it at once.
            let probe_config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout));
            let mut probe = node
                .client
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
            let con = ConnectionManager::new_with_config(node.client.clone(), manager_config)
                .await
                .map_err(unreachable)?;
            (Reads::Single(reader), Con::Single(con))
        };
        Ok(EventStore {
            inner: Arc::new(Inner {
                config,
                certs: nodes[0].certs.clone(),
                clients: nodes.into_iter().map(|n| n.client).collect(),
                url: redacted,
                reader,
                partitions_checked: Default::default(),
                appends: Default::default(),
                wakers: Default::default(),
            }),
            con: Connection(con),
        })
    }

    /// A pub/sub connection to the same Redis (for plugin activation notices).
    ///
    /// On a cluster it is classic (not sharded) pub/sub on the first configured node
    /// that answers (else on a master the cluster has now): Redis Cluster forwards every `PUBLISH` to all nodes, so one
    /// connection to any node hears every host's notices. Notices are rare (a plugin
    /// registered or activated), so the broadcast costs nothing that matters, and a
    /// subscriber whose node fails reconnects to another without knowing the slot map.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        let mut last = None;
        for client in &self.inner.clients {
            match client.get_async_pubsub().await {
                Ok(pubsub) => return Ok(pubsub),
                Err(e) => last = Some(e),
            }
        }
        // No configured node answers: on a cluster, try the masters it has now.
        if let Reads::Cluster(c) = &self.inner.reader {
            for node in c.masters().await.unwrap_or_default() {
                let info = c.node_info(&node);
                let client = match &self.inner.certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                    None => redis::Client::open(info),
                };
                match client {
                    Ok(client) => match client.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    },
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(match last {
            Some(e) => self.map_err(e, "pub/sub"),
            None => Error::unreachable(self.inner.url.clone(), "no node to subscribe on"),
        })
    }

    /// Every key that starts with `prefix` (taken literally), on every master of a
    /// cluster, sorted: for other modules' keys under the store's prefix (the plugin
    /// registry). Walks the keyspace with `SCAN`: for rare listings, not for request
    /// paths.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = format!("{}*", keys::glob_escape(prefix));
        let pattern = pattern.as_str();
        let nodes: Vec<Option<cluster::Node>> = match &self.inner.reader {
            Reads::Cluster(c) => c.masters().await?.into_iter().map(Some).collect(),
            Reads::Single(_) => vec![None],
        };
        let mut keys = std::collections::BTreeSet::new();
        for node in &nodes {
            self.scan(ScanAt::Node(node.as_ref()), pattern, None, |key: String| {
                keys.insert(key);
                true
            })
            .await?;
        }
        Ok(keys.into_iter().collect())
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.con.is_cluster()
    }

    /// The settings the store was made with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// A clone of the store's connection, for other modules that keep their data in the
    /// same Redis (the plugin registry). Keys they write should start with
    /// [`key_prefix`](Self::key_prefix) followed by `:` and a name without `{`.
    pub fn connection(&self) -> Connection {
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
    /// particular order: [`aggregate_ids_page`](Self::aggregate_ids_page) walked from
    /// the first page until `limit` ids or the last page.
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
        let mut options = IdsPageOptions::new().count(MAX_IDS_PAGE);
        while ids.len() < limit {
            let page = self
                .aggregate_ids_page(aggregate_type, options.clone())
                .await?;
            for id in page.ids {
                if ids.len() < limit && seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            match page.next_cursor {
                Some(cursor) => options = options.cursor(cursor),
                None => break,
            }
        }
        Ok(ids)
    }

    /// Walks `SCAN ... MATCH pattern COUNT 1000 [TYPE kind]` to its end at `at` (a
    /// cursor belongs to one node), handing every key to `each`, which returns false
    /// to stop early.
    async fn scan<T>(
        &self,
        at: ScanAt<'_>,
        pattern: &str,
        kind: Option<&str>,
        mut each: impl FnMut(T) -> bool,
    ) -> Result<()>
    where
        T: redis::FromRedisValue + Send,
    {
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<T>) = self
                .scan_step(at_ref(&at), cursor, pattern, kind, 1000)
                .await?;
            for key in found {
                if !each(key) {
                    return Ok(());
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(());
            }
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count [TYPE kind]` at `at`: the next
    /// cursor (0 at the end) and the keys found.
    pub(crate) async fn scan_step<T>(
        &self,
        at: ScanAt<'_>,
        cursor: u64,
        pattern: &str,
        kind: Option<&str>,
        count: usize,
    ) -> Result<(u64, Vec<T>)>
    where
        T: redis::FromRedisValue + Send,
    {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        if let Some(kind) = kind {
            cmd.arg("TYPE").arg(kind);
        }
        let (cmd, at) = (&cmd, &at);
        self.with_reconnect(pattern, move |mut con| async move {
            match at {
                ScanAt::SlotOf(key) => con.query_at(key, cmd).await,
                ScanAt::Node(node) => con.query_on(*node, cmd).await,
            }
        })
        .await
    }

    /// Runs a command, once more if the connection was lost (the manager reconnects in
    /// the meantime), and maps the error. Safe for appends too: a repeated append
    /// carries the same event ids and is recognised if the first one got through.
    pub(crate) async fn with_reconnect<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(Connection) -> Fut,
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
