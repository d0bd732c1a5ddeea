//! `streamfold-test-support`: what the tests, the benchmarks and the demo share.
//!
//! - [`LocalRedis`]: a private `redis-server` on a free loopback port, stopped on drop.
//! - [`LocalCluster`]: a private Redis Cluster (masters, optionally replicas) on free
//!   loopback ports, stopped on drop.
//! - [`Env`]: a server and an [`EventStore`] connected to it, with the server's log
//!   printed when a test fails.
//! - [`wait_until`] and [`eventually`]: wait for a condition with a deadline, never
//!   for a fixed time.
#![warn(missing_docs)]

mod local_cluster;
mod local_redis;

use std::future::Future;
use std::time::{Duration, Instant};

pub use local_cluster::{DEFAULT_NODE_TIMEOUT_MS, LocalCluster};
pub use local_redis::{ClientCerts, Error, LocalRedis, Result, TlsFiles, find_redis_server};
use streamfold_store::{EventStore, StoreConfig};

/// What [`Env::start`] runs the store against, from `STREAMFOLD_TEST_REDIS`: `single`
/// (the default) or `cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One `redis-server` per test.
    Single,
    /// A 3-master Redis Cluster per test ([`LocalCluster`]), the store configured
    /// with [`StoreConfig::cluster`]. `./dev test` runs the store and runtime suites
    /// once more this way.
    Cluster,
}

impl Backend {
    /// The backend `STREAMFOLD_TEST_REDIS` asks for (panics on an unknown value, so a
    /// typo does not silently test the other one).
    pub fn from_env() -> Backend {
        match std::env::var("STREAMFOLD_TEST_REDIS").as_deref() {
            Err(_) | Ok("") | Ok("single") => Backend::Single,
            Ok("cluster") => Backend::Cluster,
            Ok(other) => {
                panic!("STREAMFOLD_TEST_REDIS={other:?}: expected \"single\" or \"cluster\"")
            }
        }
    }
}

/// The servers behind an [`Env`].
#[derive(Debug)]
enum Servers {
    Single(Box<LocalRedis>),
    Cluster(LocalCluster),
}

/// A test environment: a fresh `redis-server` on a free port (or a fresh 3-master
/// cluster, see [`Backend`]) and a store connected to it. Dropping it stops the
/// servers; if the test is failing (panicking) at that point, the servers' log tails
/// are printed first, so a Redis-side cause is visible in the test output.
#[derive(Debug)]
pub struct Env {
    /// The store, connected with the configuration given to [`Env::start_with`].
    pub store: EventStore,
    servers: Servers,
}

impl Env {
    /// A server and a store with the default configuration.
    pub async fn start() -> Env {
        Self::start_with(|c| c).await
    }

    /// A server and a store whose configuration `configure` adjusts (from
    /// [`StoreConfig::default`]).
    pub async fn start_with(configure: impl FnOnce(StoreConfig) -> StoreConfig) -> Env {
        Self::start_with_args(&[], configure).await
    }

    /// [`start_with`](Self::start_with), with more `redis-server` arguments for a
    /// single server (e.g. `--appendonly yes`); a cluster ignores them.
    pub async fn start_with_args(
        redis_args: &[&str],
        configure: impl FnOnce(StoreConfig) -> StoreConfig,
    ) -> Env {
        let (servers, url, config) = match Backend::from_env() {
            Backend::Single => {
                let redis = LocalRedis::start_with_args(redis_args)
                    .unwrap_or_else(|e| panic!("cannot start redis-server for the test: {e}"));
                let url = redis.url();
                (
                    Servers::Single(Box::new(redis)),
                    url,
                    configure(StoreConfig::default()),
                )
            }
            Backend::Cluster => {
                let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(3, 0))
                    .await
                    .expect("the cluster start did not panic")
                    .unwrap_or_else(|e| panic!("cannot start a Redis Cluster for the test: {e}"));
                let url = cluster.url_list();
                let config = configure(StoreConfig::default().cluster(true));
                (Servers::Cluster(cluster), url, config)
            }
        };
        let store = match EventStore::connect(&url, config).await {
            Ok(store) => store,
            Err(e) => panic!(
                "cannot connect to the test's Redis: {e}\n--- redis log ---\n{}",
                servers.log_tail()
            ),
        };
        Env { store, servers }
    }

    /// Which backend this environment runs on.
    pub fn backend(&self) -> Backend {
        match self.servers {
            Servers::Single(_) => Backend::Single,
            Servers::Cluster(_) => Backend::Cluster,
        }
    }

    /// The single `redis-server`, for tests that stop, restart or reconfigure it.
    /// Panics on a cluster: such tests are about one server (`./dev test` skips them
    /// in its cluster run).
    pub fn redis(&self) -> &LocalRedis {
        match &self.servers {
            Servers::Single(r) => r,
            Servers::Cluster(_) => panic!("this test needs a single redis-server, not a cluster"),
        }
    }

    /// [`redis`](Self::redis), mutably (to stop and start it).
    pub fn redis_mut(&mut self) -> &mut LocalRedis {
        match &mut self.servers {
            Servers::Single(r) => r,
            Servers::Cluster(_) => panic!("this test needs a single redis-server, not a cluster"),
        }
    }

    /// The cluster, when the backend is [`Backend::Cluster`].
    pub fn cluster(&self) -> Option<&LocalCluster> {
        match &self.servers {
            Servers::Cluster(c) => Some(c),
            Servers::Single(_) => None,
        }
    }

    /// The URL (a cluster: the node URLs, comma-separated) the store connected to.
    pub fn url(&self) -> String {
        match &self.servers {
            Servers::Single(r) => r.url(),
            Servers::Cluster(c) => c.url_list(),
        }
    }

    /// Another store on the same server, with another configuration (another prefix
    /// or layout); on a cluster, `cluster` is set for it.
    pub async fn store_with(&self, config: StoreConfig) -> EventStore {
        let config = match self.servers {
            Servers::Cluster(_) => config.cluster(true),
            Servers::Single(_) => config,
        };
        match EventStore::connect(&self.url(), config).await {
            Ok(store) => store,
            Err(e) => panic!("cannot connect another store: {e}"),
        }
    }

    /// A connection to the servers for raw commands a test needs (writing entries the
    /// way another program would, deleting, flushing scripts): on a cluster each
    /// command goes to the node serving its key.
    pub async fn raw(&self) -> streamfold_store::Connection {
        self.store.connection()
    }
}

impl Servers {
    fn log_tail(&self) -> String {
        match self {
            Servers::Single(r) => r.log_tail(),
            Servers::Cluster(c) => c.log_tails(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let which = match &self.servers {
                Servers::Single(r) => format!("port {}, {}", r.port(), r.dir().display()),
                Servers::Cluster(c) => format!("cluster {}", c.url_list()),
            };
            eprintln!(
                "--- redis-server log ({which}) ---\n{}\n--- end of redis-server log ---",
                self.servers.log_tail()
            );
        }
    }
}

/// Runs `f` up to `attempts` times until it returns `Ok`, sleeping `pause` between
/// tries; returns the last result. For "eventually" assertions (a server coming back).
pub async fn eventually<T, E, Fut>(
    attempts: usize,
    pause: std::time::Duration,
    mut f: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut result = f().await;
    for _ in 1..attempts {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(pause).await;
        result = f().await;
    }
    result
}

/// Polls `check` every few milliseconds until it returns `Some`, and returns that;
/// panics with `what` (and how long it waited) after `deadline`. Tests wait for the
/// condition they need this way, with a generous deadline, never for a fixed time.
pub async fn wait_until<T, Fut>(what: &str, deadline: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// An event of type `event_type` whose payload is `{"n": n}`: events that differ only
/// by their number, for tests that count, order or page events.
pub fn numbered_event(event_type: &str, n: u64) -> streamfold_store::NewEvent {
    streamfold_store::NewEvent::from_json_text(event_type, format!("{{\"n\":{n}}}"))
        .expect("{\"n\": n} is valid JSON")
}

/// `count` events of type `Counted` numbered `from`, `from + 1`, … (see
/// [`numbered_event`]): a batch to append.
pub fn counted_events(from: u64, count: u64) -> Vec<streamfold_store::NewEvent> {
    (from..from + count)
        .map(|n| numbered_event("Counted", n))
        .collect()
}

/// The revisions of recorded events, in their order.
pub fn revisions(events: &[streamfold_store::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

/// The event ids of recorded events, in their order.
pub fn event_ids(events: &[streamfold_store::RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

/// Raw looks at the server's streams, beside what the store reports.
impl Env {
    /// The length of a stream (`XLEN`: 0 if there is no such key), asked directly.
    pub async fn xlen(&self, key: &str) -> u64 {
        redis::AsyncCommands::xlen(&mut self.raw().await, key)
            .await
            .expect("XLEN")
    }

    /// Every entry of a stream, read directly in pages of 500, as (stream id, value of
    /// the entry's `event_id` field or `""`).
    pub async fn stream_entries(&self, key: &str) -> Vec<(String, String)> {
        let mut con = self.raw().await;
        let mut out = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let reply: redis::streams::StreamRangeReply =
                redis::AsyncCommands::xrange_count(&mut con, key, &start, "+", 500)
                    .await
                    .expect("XRANGE");
            let Some(last) = reply.ids.last() else {
                return out;
            };
            start = format!("({}", last.id);
            for entry in &reply.ids {
                let event_id: String = entry.get("event_id").unwrap_or_default();
                out.push((entry.id.clone(), event_id));
            }
        }
    }
}

/// The first instant whose millisecond is past `t`'s, waited for (not slept):
/// stream ids, and so `as_of`, have millisecond resolution.
pub async fn a_millisecond_after(
    t: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    wait_until(
        "the clock to pass a millisecond",
        Duration::from_secs(30),
        || {
            let now = chrono::Utc::now();
            async move { (now.timestamp_millis() > t.timestamp_millis()).then_some(now) }
        },
    )
    .await
}
