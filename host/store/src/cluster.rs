//! Redis Cluster for the lean reader: which node serves a key, and following the
//! cluster when slots move or a replica takes over.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked of any node that answers (the
//! known masters first, then the configured URLs). Each master gets a
//! [`wire::Reader`] pool of its own. A `MOVED` reply means the map is old: it is read
//! again and the command sent where the slot lives now; an `ASK` reply (a slot being
//! migrated) sends this one command to the named node after `ASKING`. A node that
//! cannot be reached marks the map stale too, so that the request after a failover
//! goes to the promoted replica. Writes and small commands go through the `redis`
//! crate's cluster client, which does the same for its own connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio_rustls::rustls::ClientConfig;

use crate::error::{Error, Result};
use crate::wire::{self, Dedicated, Frame, Reader, Routed};

/// Redis Cluster's number of hash slots.
pub(crate) const SLOTS: u16 = 16384;

/// How many redirects one request follows before it gives up (a cluster whose
/// slots keep moving).
const MAX_REDIRECTS: usize = 5;

/// The hash slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of the hash
/// tag (the part between the first `{` and the next `}`, if not empty) or of the
/// whole key, modulo 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A node's address as the cluster announces it.
pub(crate) type Node = (String, u16);

/// Which master serves which slots, from one `CLUSTER SLOTS` reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// `(first, last, master)`, sorted by `first`, not overlapping.
    ranges: Vec<(u16, u16, Node)>,
}

impl SlotMap {
    fn master_of(&self, slot: u16) -> Option<&Node> {
        let i = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (first, last, node) = self.ranges.get(i.checked_sub(1)?)?;
        (*first <= slot && slot <= *last).then_some(node)
    }

    fn masters(&self) -> Vec<Node> {
        let mut nodes: Vec<Node> = self.ranges.iter().map(|(_, _, n)| n.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Parses `CLUSTER SLOTS`: `[[first, last, [host, port, id, ...], replicas...], ...]`.
    /// An empty host means the node that answered (`asked`).
    fn parse(mut reply: Frame<'_>, asked: &Node) -> std::result::Result<SlotMap, String> {
        let n = reply.array()?.unwrap_or(0);
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let parts = reply.array()?.ok_or("a nil slot range")?;
            if parts < 3 {
                return Err(format!("a slot range of {parts} elements"));
            }
            let number = |b: Option<&[u8]>| -> std::result::Result<u16, String> {
                b.and_then(wire::decimal)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| "a slot or port is not a number".to_owned())
            };
            let first = number(reply.bulk()?)?;
            let last = number(reply.bulk()?)?;
            let fields = reply.array()?.ok_or("a nil node")?;
            if fields < 2 {
                return Err("a node without host and port".to_owned());
            }
            let host = reply.bulk()?.unwrap_or_default();
            let host = if host.is_empty() || host == b"?" {
                asked.0.clone()
            } else {
                String::from_utf8_lossy(host).into_owned()
            };
            let port = number(reply.bulk()?)?;
            for _ in 2..fields {
                reply.skip()?;
            }
            for _ in 3..parts {
                reply.skip()?; // replicas: reads go to masters
            }
            if first > last || last >= SLOTS {
                return Err(format!("slot range {first}-{last}"));
            }
            ranges.push((first, last, (host, port)));
        }
        ranges.sort_by_key(|(first, _, _)| *first);
        if ranges.windows(2).any(|w| w[0].1 >= w[1].0) {
            return Err("overlapping slot ranges".to_owned());
        }
        Ok(SlotMap { ranges })
    }
}

/// Lean reads on a Redis Cluster: a [`Reader`] per master, chosen by the key's slot.
pub(crate) struct ClusterReader {
    /// The first URL's settings (user, password, TLS); each node's address replaces
    /// its host and port.
    template: ConnectionInfo,
    tls: Option<Arc<ClientConfig>>,
    /// The configured nodes, asked for the slot map when no known master answers.
    seeds: Vec<Node>,
    /// The configured URLs, redacted, for messages about the cluster as a whole.
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
    map: RwLock<Arc<SlotMap>>,
    pools: Mutex<HashMap<Node, Arc<Reader>>>,
    /// The map is known to be old (a redirect, a node gone): read it again first.
    stale: Arc<AtomicBool>,
    /// One refresh at a time; the others wait for it and use its map.
    refreshing: tokio::sync::Mutex<()>,
}

impl ClusterReader {
    /// For the nodes `infos` name (`url` the redacted list, for messages); the slot map
    /// is read by [`probe`](Self::probe).
    pub(crate) fn new(
        infos: &[ConnectionInfo],
        url: &str,
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
        response_timeout: Duration,
        reconnect_retries: usize,
    ) -> Result<ClusterReader> {
        let template = infos
            .first()
            .ok_or_else(|| Error::invalid("a cluster needs at least one node URL"))?
            .clone();
        let seeds = infos
            .iter()
            .map(|info| match info.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    Ok((host.clone(), *port))
                }
                _ => Err(Error::invalid(format!(
                    "{url}: cluster nodes are redis:// or rediss:// addresses"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClusterReader {
            template,
            tls,
            seeds,
            url: url.to_owned(),
            connect_timeout,
            response_timeout,
            reconnect_retries,
            map: RwLock::new(Arc::new(SlotMap::default())),
            pools: Mutex::new(HashMap::new()),
            stale: Arc::new(AtomicBool::new(true)),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The connection settings of a node: the configured URL's user, password and TLS
    /// with the node's address.
    pub(crate) fn node_info(&self, node: &Node) -> ConnectionInfo {
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host: node.0.clone(),
                port: node.1,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(node.0.clone(), node.1),
        };
        self.template.clone().set_addr(addr)
    }

    /// The pool of one node, made on first use.
    fn pool(&self, node: &Node) -> Result<Arc<Reader>> {
        let mut pools = self.pools.lock().expect("cluster pools poisoned");
        if let Some(reader) = pools.get(node) {
            return Ok(reader.clone());
        }
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let reader = Arc::new(Reader::new(
            &self.node_info(node),
            &format!("{scheme}://{}:{}", node.0, node.1),
            self.tls.clone(),
            self.connect_timeout,
            self.response_timeout,
            // Failing over is the cluster's job: a dead master is not waited for here.
            self.reconnect_retries.min(1),
        )?);
        pools.insert(node.clone(), reader.clone());
        Ok(reader)
    }

    fn current(&self) -> Arc<SlotMap> {
        self.map.read().expect("slot map poisoned").clone()
    }

    /// Reads the slot map again, unless another caller did while this one waited.
    async fn refresh(&self, seen: &Arc<SlotMap>) -> Result<Arc<SlotMap>> {
        let _one = self.refreshing.lock().await;
        let now = self.current();
        if !Arc::ptr_eq(&now, seen) && !self.stale.load(Ordering::Acquire) {
            return Ok(now);
        }
        let mut candidates = now.masters();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last_error = None;
        for node in candidates {
            let reader = match self.pool(&node) {
                Ok(r) => r,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let asked = node.clone();
            let got = reader
                .request(&[b"CLUSTER", b"SLOTS"], |reply| {
                    SlotMap::parse(reply, &asked).map_err(|reason| {
                        Error::corrupt("CLUSTER SLOTS", format!("unexpected reply: {reason}"))
                    })
                })
                .await;
            match got {
                Ok(map) if !map.ranges.is_empty() => {
                    let map = Arc::new(map);
                    *self.map.write().expect("slot map poisoned") = map.clone();
                    self.stale.store(false, Ordering::Release);
                    tracing::debug!(
                        target: "streamfold::store",
                        masters = map.masters().len(),
                        "read the cluster's slot map"
                    );
                    return Ok(map);
                }
                Ok(_) => {
                    last_error = Some(Error::unreachable(
                        format!("redis://{}:{}", node.0, node.1),
                        "the node serves no slots (is the cluster formed?)",
                    ))
                }
                Err(e) => {
                    reader.forget_idle();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::unreachable(self.url.clone(), "no node answered")))
    }

    /// The map to route with: the current one, read again first if it is stale.
    async fn map(&self) -> Result<Arc<SlotMap>> {
        let map = self.current();
        if self.stale.load(Ordering::Acquire) || map.ranges.is_empty() {
            return self.refresh(&map).await;
        }
        Ok(map)
    }

    fn node_for(&self, map: &SlotMap, slot: u16) -> Result<Node> {
        map.master_of(slot).cloned().ok_or_else(|| {
            Error::unreachable(
                self.url.clone(),
                format!("no master serves slot {slot} (CLUSTERDOWN?)"),
            )
        })
    }

    /// Reads the slot map (fails like a single node's connect when no node answers).
    pub(crate) async fn probe(&self) -> Result<()> {
        let map = self.current();
        self.refresh(&map).await.map(drop)
    }

    /// Sends one command about `key` to the master of its slot, following redirects.
    pub(crate) async fn request<T, W>(&self, key: &[u8], args: &[&[u8]], mut walk: W) -> Result<T>
    where
        W: FnOnce(Frame<'_>) -> Result<T>,
    {
        let slot = slot_of(key);
        let mut map = self.map().await?;
        let mut node = self.node_for(&map, slot)?;
        let mut asking = false;
        let mut moved_on = false;
        for _ in 0..=MAX_REDIRECTS {
            let reader = self.pool(&node)?;
            match reader.send(args, asking, walk).await {
                Routed::Done(out) => return out,
                Routed::Failed(e, w) if e.is_unavailable() => {
                    // The node is gone or changed. Ask the cluster again: if another
                    // node serves the slot now (a replica promoted), go there once;
                    // else fail, retry-safe, and the next request asks again.
                    reader.forget_idle();
                    self.stale.store(true, Ordering::Release);
                    if moved_on {
                        return Err(e);
                    }
                    moved_on = true;
                    let Ok(fresh) = self.refresh(&map).await else {
                        return Err(e);
                    };
                    match self.node_for(&fresh, slot) {
                        Ok(next) if next != node => {
                            (map, node, asking, walk) = (fresh, next, false, w);
                        }
                        _ => return Err(e),
                    }
                }
                Routed::Failed(e, _) => return Err(e),
                Routed::Redirect(to, w) => {
                    walk = w;
                    asking = to.ask;
                    if to.ask {
                        node = (to.host, to.port);
                    } else {
                        self.stale.store(true, Ordering::Release);
                        map = self.refresh(&map).await?;
                        node = self.node_for(&map, slot)?;
                        if node != (to.host.clone(), to.port) {
                            // The map we read disagrees with the redirect (the
                            // cluster is still converging): follow the redirect.
                            node = (to.host, to.port);
                        }
                    }
                }
            }
        }
        Err(Error::unreachable(
            self.url.clone(),
            format!("slot {slot} kept moving ({MAX_REDIRECTS} redirects)"),
        ))
    }

    /// A connection of its own to the master of `key`'s slot (a live subscription's
    /// blocking reads). A redirect on it marks the map stale, so that the caller's
    /// next connection goes where the slot lives then.
    pub(crate) async fn dedicated(&self, key: &[u8]) -> Result<Dedicated> {
        let map = self.map().await?;
        let node = self.node_for(&map, slot_of(key))?;
        match self.pool(&node)?.dedicated().await {
            Ok(mut conn) => {
                conn.moved = Some(self.stale.clone());
                Ok(conn)
            }
            Err(e) => {
                self.stale.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Every master in the current slot map (read first if need be).
    pub(crate) async fn masters(&self) -> Result<Vec<Node>> {
        Ok(self.map().await?.masters())
    }
}

/// The store's lean reads: one Redis, or a cluster routed by key.
pub(crate) enum Reads {
    Single(Reader),
    Cluster(Box<ClusterReader>),
}

impl Reads {
    /// One command about `key` (see [`Reader::request`]).
    pub(crate) async fn request<T, W>(&self, key: &str, args: &[&[u8]], walk: W) -> Result<T>
    where
        W: FnOnce(Frame<'_>) -> Result<T>,
    {
        match self {
            Reads::Single(r) => r.request(args, walk).await,
            Reads::Cluster(c) => c.request(key.as_bytes(), args, walk).await,
        }
    }

    /// A dedicated connection for reads of `key` (see [`Reader::dedicated`]).
    pub(crate) async fn dedicated(&self, key: &str) -> Result<Dedicated> {
        match self {
            Reads::Single(r) => r.dedicated().await,
            Reads::Cluster(c) => c.dedicated(key.as_bytes()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` (Redis 7.0).
        assert_eq!(slot_of(b"123456789"), 12739);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(
            slot_of(b"foo{}{bar}"),
            slot_of(b"bar"),
            "an empty tag hashes the key"
        );
        assert_eq!(slot_of(b"sf:{user:0}:agg:1"), slot_of(b"sf:{user:0}:cat"));
    }

    #[test]
    fn slot_maps_parse_and_route() {
        let reply = b"*2\r\n\
            *4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n\
            *3\r\n:8192\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n";
        let asked = ("10.0.0.9".to_owned(), 7001);
        let map = SlotMap::parse(Frame::new(reply), &asked).unwrap();
        assert_eq!(map.master_of(0), Some(&("127.0.0.1".to_owned(), 7000)));
        assert_eq!(map.master_of(8191), Some(&("127.0.0.1".to_owned(), 7000)));
        assert_eq!(
            map.master_of(8192),
            Some(&asked),
            "an empty host is the node asked"
        );
        assert_eq!(map.masters().len(), 2);
        let gap = b"*1\r\n*3\r\n:10\r\n:20\r\n*2\r\n$1\r\nh\r\n:1\r\n";
        let map = SlotMap::parse(Frame::new(gap), &asked).unwrap();
        assert_eq!(map.master_of(9), None);
        assert_eq!(map.master_of(21), None);
        assert!(
            SlotMap::parse(
                Frame::new(b"*1\r\n*3\r\n:5\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n"),
                &asked
            )
            .is_err()
        );
    }
}
