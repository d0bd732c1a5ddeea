//! A private Redis Cluster for the tests: masters and replicas on free loopback ports.
//!
//! [`LocalCluster::start`] runs one [`LocalRedis`] per node with cluster mode on (each
//! with its own `nodes.conf` in its directory, no persistence), then forms the cluster
//! with plain commands rather than `redis-cli --cluster create` (which waits in
//! one-second steps): `CLUSTER SET-CONFIG-EPOCH` and `CLUSTER ADDSLOTSRANGE` (the
//! 16384 slots split evenly over the masters), `CLUSTER MEET` between every pair of
//! nodes, `CLUSTER REPLICATE` for the replicas once everyone knows everyone, and it
//! returns when the cluster is healthy ([`LocalCluster::wait_healthy`]) and every
//! replica's link to its master is up. Every wait polls a condition with a deadline.
//!
//! That takes a little over 2 s: a Redis master reports `cluster_state:ok` no sooner
//! than 2 s after it started (Redis's `CLUSTER_WRITABLE_DELAY`), however fast the
//! cluster is formed. The wait is idle, so tests may start clusters side by side.
//!
//! The nodes are killed when the value is dropped (each [`LocalRedis`] kills its own).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use crate::local_redis::{Error, LocalRedis, Result};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// The cluster-node-timeout of [`LocalCluster::start`], in milliseconds: a node is
/// suspected after this long without an answer. Short enough for failovers within a
/// few seconds, long enough that a busy two-core machine causes none by itself.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 3000;
/// How long forming a cluster may take, per step.
const FORM_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two looks at a condition being waited for.
const POLL: Duration = Duration::from_millis(10);

/// A Redis Cluster of our own on `127.0.0.1`: masters first (in start order), then
/// replicas; stopped on drop.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalRedis>,
    /// Every node's cluster node id (`CLUSTER MYID`), by index; kept across restarts
    /// since each node keeps its `nodes.conf`.
    ids: Vec<String>,
}

/// Who serves which slots, as one node sees it: (first slot, last slot, index of the
/// serving node), sorted.
type SlotTable = Vec<(u16, u16, usize)>;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    flags: Vec<String>,
    /// The id of its master, for a replica.
    master: Option<String>,
    connected: bool,
    /// Slot ranges it serves (inclusive), for a master; migration markers are left out.
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// Flagged as failing (`fail`) or suspected (`fail?`) by the node that reports it.
    fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }
}

fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: fields[0].to_owned(),
                flags: fields[2].split(',').map(str::to_owned).collect(),
                master: (fields[3] != "-").then(|| fields[3].to_owned()),
                connected: fields[7] == "connected",
                slots,
            })
        })
        .collect()
}

/// The error of a cluster that did not get into shape: what was being waited for and
/// what was still wrong.
fn not_ready(what: impl fmt::Display) -> Error {
    Error::io(
        what,
        std::io::Error::other("the Redis Cluster is not ready"),
    )
}

/// Polls `check` until it returns `Ok`, or fails with its last complaint after `deadline`.
fn poll_until(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let problem = match check() {
            Ok(()) => return Ok(()),
            Err(problem) => problem,
        };
        if started.elapsed() >= deadline {
            return Err(not_ready(format!(
                "timed out after {deadline:?} waiting for {what}: {problem}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Sends one command to `node` on a fresh connection (short timeouts) and returns the
/// reply as `T`.
fn query<T: redis::FromRedisValue>(node: &LocalRedis, args: &[&str]) -> Result<T> {
    let context = || {
        format!(
            "{} on the cluster node at port {}",
            args.join(" "),
            node.port()
        )
    };
    let fail = |e: redis::RedisError| Error::io(context(), std::io::Error::other(e.to_string()));
    let client = redis::Client::open(node.url()).map_err(fail)?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .map_err(fail)?;
    con.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(fail)?;
    con.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(fail)?;
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(&mut con).map_err(fail)
}

/// `query`, for commands answered with `OK`.
fn expect_ok(node: &LocalRedis, args: &[&str]) -> Result<()> {
    query::<redis::Value>(node, args).map(drop)
}

/// The value of `field` in an `INFO`-style reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

impl LocalCluster {
    /// Starts a cluster of `masters` masters (3 or more recommended: a failover needs
    /// a majority of masters) with `replicas_per_master` replicas each (0, 1 or
    /// more), with a cluster-node-timeout of [`DEFAULT_NODE_TIMEOUT_MS`], and returns
    /// once it is healthy and every replica is in sync with its master.
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<Self> {
        Self::start_with_node_timeout(masters, replicas_per_master, DEFAULT_NODE_TIMEOUT_MS)
    }

    /// [`start`](Self::start) with a chosen cluster-node-timeout, in milliseconds:
    /// failover tests use a short one (e.g. 1000), for a failover in a few seconds.
    pub fn start_with_node_timeout(
        masters: usize,
        replicas_per_master: usize,
        node_timeout_ms: u64,
    ) -> Result<Self> {
        if masters == 0 || masters > usize::from(SLOTS) {
            return Err(not_ready(format!(
                "a cluster needs 1 to {SLOTS} masters, not {masters}"
            )));
        }
        let total = masters * (1 + replicas_per_master);
        let timeout = node_timeout_ms.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            // A replica may take over however long it has been cut off from its
            // master, and stays with its master.
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-allow-replica-migration",
            "no",
            // A full sync starts at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay",
            "0",
        ];
        // Start the processes side by side: each waits for its server to answer.
        let started: Vec<Result<LocalRedis>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..total)
                .map(|_| scope.spawn(|| LocalRedis::start_with_args(&args)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(not_ready("a thread starting a cluster node panicked"))
                    })
                })
                .collect()
        });
        let nodes = started.into_iter().collect::<Result<Vec<_>>>()?;
        let mut cluster = LocalCluster {
            nodes,
            ids: Vec::new(),
        };
        cluster.form(masters).map_err(|e| {
            not_ready(format!(
                "forming a cluster of {masters} masters with {replicas_per_master} replicas each: {e}\n{}",
                cluster.log_tails()
            ))
        })?;
        Ok(cluster)
    }

    fn form(&mut self, masters: usize) -> Result<()> {
        self.ids = self
            .nodes
            .iter()
            .map(|n| query::<String>(n, &["CLUSTER", "MYID"]))
            .collect::<Result<_>>()?;
        // Distinct config epochs up front, as redis-cli does: no collisions to resolve.
        for (i, node) in self.nodes.iter().enumerate() {
            let epoch = (i + 1).to_string();
            expect_ok(node, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch])?;
        }
        for (k, node) in self.nodes[..masters].iter().enumerate() {
            let first = k * usize::from(SLOTS) / masters;
            let last = (k + 1) * usize::from(SLOTS) / masters - 1;
            let (first, last) = (first.to_string(), last.to_string());
            expect_ok(node, &["CLUSTER", "ADDSLOTSRANGE", &first, &last])?;
        }
        // Every pair meets directly: waiting for gossip to introduce them takes seconds.
        for (i, node) in self.nodes.iter().enumerate() {
            for other in &self.nodes[i + 1..] {
                let port = other.port().to_string();
                expect_ok(node, &["CLUSTER", "MEET", "127.0.0.1", &port])?;
            }
        }
        poll_until("every node to know every other", FORM_TIMEOUT, || {
            self.check_everyone_known()
        })?;
        let replicas: Vec<(usize, usize)> = (masters..self.nodes.len())
            .map(|r| (r, (r - masters) % masters))
            .collect();
        for &(r, m) in &replicas {
            expect_ok(&self.nodes[r], &["CLUSTER", "REPLICATE", &self.ids[m]])?;
        }
        poll_until("every node to see the replicas", FORM_TIMEOUT, || {
            self.check_roles(&replicas)
        })?;
        self.wait_healthy(FORM_TIMEOUT)?;
        poll_until("every replica to be in sync", FORM_TIMEOUT, || {
            for &(r, _) in &replicas {
                let info: String =
                    query(&self.nodes[r], &["INFO", "replication"]).map_err(|e| e.to_string())?;
                let link = info_field(&info, "master_link_status");
                if link != Some("up") {
                    return Err(format!(
                        "node {r} (port {}): master_link_status {link:?}",
                        self.nodes[r].port()
                    ));
                }
            }
            Ok(())
        })
    }

    /// Does every node know all the others, connected and out of handshake?
    fn check_everyone_known(&self) -> std::result::Result<(), String> {
        for i in 0..self.nodes.len() {
            let view = self.view(i).map_err(|e| e.to_string())?;
            for id in &self.ids {
                let Some(line) = view.iter().find(|l| &l.id == id) else {
                    return Err(format!("node {i} does not know {id} yet"));
                };
                if line.has_flag("handshake") || line.has_flag("noaddr") || !line.connected {
                    return Err(format!("node {i} sees {id} as {:?}", line.flags));
                }
            }
        }
        Ok(())
    }

    /// Does every node see each replica `r` as a replica of `m`, for every `(r, m)`?
    fn check_roles(&self, replicas: &[(usize, usize)]) -> std::result::Result<(), String> {
        for i in 0..self.nodes.len() {
            let view = self.view(i).map_err(|e| e.to_string())?;
            for &(r, m) in replicas {
                let line = view.iter().find(|l| l.id == self.ids[r]);
                if line.is_none_or(|l| l.master.as_deref() != Some(self.ids[m].as_str())) {
                    return Err(format!(
                        "node {i} does not see node {r} as a replica of node {m} yet"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Node `i`'s `CLUSTER NODES`.
    fn view(&self, i: usize) -> Result<Vec<NodeLine>> {
        let text: String = query(&self.nodes[i], &["CLUSTER", "NODES"])?;
        Ok(parse_cluster_nodes(&text))
    }

    /// Is node `i` up, and ours (it answers `CLUSTER MYID` with its id)?
    fn is_up(&self, i: usize) -> bool {
        query::<String>(&self.nodes[i], &["CLUSTER", "MYID"]).is_ok_and(|id| id == self.ids[i])
    }

    /// The nodes that answer, by index.
    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// `CLUSTER NODES` of the first node that answers.
    fn any_view(&self) -> Result<Vec<NodeLine>> {
        let mut last = None;
        for i in 0..self.nodes.len() {
            if !self.is_up(i) {
                continue;
            }
            match self.view(i) {
                Ok(view) => return Ok(view),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| not_ready("no node of the cluster is running")))
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// The URL of every node, `redis://127.0.0.1:<port>/`, masters first (in start
    /// order), then replicas.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(LocalRedis::url).collect()
    }

    /// The cluster node id of node `i` (`CLUSTER MYID`), for commands that name nodes
    /// (`CLUSTER SETSLOT ... NODE`). Panics if there is no node `i`.
    pub fn node_id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The [`urls`](Self::urls) joined with `,`: what `--redis` takes for a cluster.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The nodes, masters first (in start order), then replicas: replica `r` was
    /// started as a replica of master `(r - masters) % masters`.
    pub fn nodes(&self) -> &[LocalRedis] {
        &self.nodes
    }

    /// Node `i`, to stop it or start it again (it rejoins with the same id, since it
    /// keeps its `nodes.conf`). Panics if there is no node `i`.
    pub fn node_mut(&mut self, i: usize) -> &mut LocalRedis {
        &mut self.nodes[i]
    }

    /// The indices of the nodes that are masters now, holding slots and not flagged
    /// as failing, per `CLUSTER NODES` of the first node that answers; in index order.
    pub fn masters(&self) -> Result<Vec<usize>> {
        let view = self.any_view()?;
        let set: BTreeSet<usize> = view
            .iter()
            .filter(|l| l.is_master() && !l.is_failing() && !l.slots.is_empty())
            .filter_map(|l| self.index_of(&l.id))
            .collect();
        Ok(set.into_iter().collect())
    }

    /// The index of the node serving `slot` as master, per `CLUSTER NODES` of the
    /// first node that answers.
    pub fn master_of_slot(&self, slot: u16) -> Result<usize> {
        let view = self.any_view()?;
        view.iter()
            .filter(|l| l.is_master())
            .find(|l| l.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .and_then(|l| self.index_of(&l.id))
            .ok_or_else(|| not_ready(format!("no node of ours serves slot {slot}")))
    }

    /// The hash slot of `key`, as Redis Cluster computes it (and `CLUSTER KEYSLOT`
    /// answers): CRC16 of the key, or of its hash tag (what is between the first `{`
    /// and the next `}`, if that is not empty), modulo 16384.
    pub fn key_slot(key: &str) -> u16 {
        streamfold_store::hash_slot(key)
    }

    /// Waits until every running node reports `cluster_state:ok`, all 16384 slots are
    /// assigned to running masters not flagged as failing, and all running nodes agree
    /// on which node serves each slot range; fails after `deadline` saying what was
    /// still wrong.
    pub fn wait_healthy(&self, deadline: Duration) -> Result<()> {
        poll_until("the cluster to be healthy", deadline, || {
            self.check_healthy()
        })
    }

    fn check_healthy(&self) -> std::result::Result<(), String> {
        let running = self.running();
        if running.is_empty() {
            return Err("no node is running".to_owned());
        }
        let running_ids: HashMap<&str, usize> =
            running.iter().map(|&i| (self.ids[i].as_str(), i)).collect();
        let mut agreed: Option<(usize, SlotTable)> = None;
        for &i in &running {
            let port = self.nodes[i].port();
            let info: String =
                query(&self.nodes[i], &["CLUSTER", "INFO"]).map_err(|e| e.to_string())?;
            let state = info_field(&info, "cluster_state");
            if state != Some("ok") {
                return Err(format!("node {i} (port {port}): cluster_state {state:?}"));
            }
            let view = self.view(i).map_err(|e| e.to_string())?;
            let mut table = SlotTable::new();
            for line in view.iter().filter(|l| l.is_master() && !l.slots.is_empty()) {
                let Some(&owner) = running_ids.get(line.id.as_str()) else {
                    return Err(format!(
                        "node {i} has slots served by {} ({:?}), which is not running",
                        line.id, line.flags
                    ));
                };
                if line.is_failing() {
                    return Err(format!("node {i} sees node {owner} as {:?}", line.flags));
                }
                table.extend(line.slots.iter().map(|&(a, b)| (a, b, owner)));
            }
            table.sort_unstable();
            let mut next = 0u32;
            for &(a, b, owner) in &table {
                if u32::from(a) > next {
                    return Err(format!("node {i}: slots {next}-{} are not served", a - 1));
                }
                if u32::from(a) < next {
                    return Err(format!(
                        "node {i}: slot {a} is served twice (again by node {owner})"
                    ));
                }
                next = u32::from(b) + 1;
            }
            if next != u32::from(SLOTS) {
                return Err(format!("node {i}: slots {next}-16383 are not served"));
            }
            match &agreed {
                None => agreed = Some((i, table)),
                Some((j, other)) if *other != table => {
                    return Err(format!(
                        "nodes {j} and {i} disagree on the slots: {other:?} vs {table:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Kills node `i` (like [`LocalRedis::stop`]). Panics if there is no node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Every node's log tail, labelled with its index, port and directory, for a
    /// failing test's output.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                format!(
                    "--- cluster node {i} (port {}, {}) ---\n{}\n",
                    node.port(),
                    node.dir().display(),
                    node.log_tail()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn con(node: &LocalRedis) -> redis::Connection {
        redis::Client::open(node.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    #[test]
    fn key_slots_are_crc16_of_the_hash_tag() {
        assert_eq!(LocalCluster::key_slot("123456789"), 0x31C3);
        assert_eq!(
            LocalCluster::key_slot("{user:0}:events"),
            LocalCluster::key_slot("user:0")
        );
    }

    #[test]
    fn three_masters_route_keys_by_slot() {
        let started = Instant::now();
        let cluster = LocalCluster::start(3, 0).unwrap();
        eprintln!("start(3, 0) took {:?}", started.elapsed());
        let tails = || cluster.log_tails();
        assert_eq!(cluster.nodes().len(), 3);
        assert_eq!(cluster.urls().len(), 3);
        assert_eq!(cluster.url_list().split(',').count(), 3);
        cluster.wait_healthy(Duration::from_secs(5)).unwrap();
        assert_eq!(cluster.masters().unwrap(), vec![0, 1, 2], "{}", tails());

        let mut any = con(&cluster.nodes()[0]);
        for key in [
            "{user:0}",
            "{user:0}:events",
            "a{}b",
            "a{b}{c}",
            "{{x}}",
            "plain",
        ] {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut any)
                .unwrap();
            assert_eq!(LocalCluster::key_slot(key), slot, "{key}");
        }

        let key = "{user:0}:stream";
        let slot = LocalCluster::key_slot(key);
        let owner = cluster.master_of_slot(slot).unwrap();
        let set = |node: usize| {
            redis::cmd("SET")
                .arg(key)
                .arg("v")
                .query::<()>(&mut con(&cluster.nodes()[node]))
        };
        set(owner).unwrap();
        let other = (owner + 1) % 3;
        let err = set(other).unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{err}");
        let port = cluster.nodes()[owner].port();
        let address = format!("127.0.0.1:{port}");
        assert_eq!(err.redirect_node(), Some((address.as_str(), slot)), "{err}");
    }

    #[test]
    fn a_replica_takes_over_from_a_killed_master() {
        let started = Instant::now();
        let mut cluster = LocalCluster::start_with_node_timeout(3, 1, 1000).unwrap();
        eprintln!(
            "start_with_node_timeout(3, 1, 1000) took {:?}",
            started.elapsed()
        );
        assert_eq!(cluster.nodes().len(), 6);
        assert_eq!(cluster.masters().unwrap(), vec![0, 1, 2]);
        let before = cluster.master_of_slot(0).unwrap();
        assert_eq!(before, 0);

        let killed = Instant::now();
        cluster.kill(before);
        if let Err(e) = cluster.wait_healthy(Duration::from_secs(30)) {
            panic!("{e}\n{}", cluster.log_tails());
        }
        eprintln!("failover took {:?}", killed.elapsed());
        let masters = cluster.masters().unwrap();
        assert_eq!(masters.len(), 3, "{masters:?}\n{}", cluster.log_tails());
        assert!(!masters.contains(&before), "{masters:?}");
        let after = cluster.master_of_slot(0).unwrap();
        assert_ne!(after, before);
        // The replica started for master 0.
        assert_eq!(after, 3, "{}", cluster.log_tails());
    }
}
