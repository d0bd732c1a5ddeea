//! How an [`EventStore`](super::EventStore) names its keys, trims, pages and times out.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Which key names the store uses. See [the crate docs](crate#keys) for both layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// Streamfold's own, cluster-ready keys: `prefix:{type:partition}:agg:id` and friends.
    #[default]
    Default,
    /// The seed document's keys (`events:type`, `events:type:id`, `snapshot:type:id`), to
    /// adopt streams written by the seed's `EventStore`. Single Redis only: no hash tags,
    /// no partitions, and the prefix is not used for event keys.
    Seed,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Default => "default",
            Layout::Seed => "seed",
        })
    }
}

impl FromStr for Layout {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(Layout::Default),
            "seed" => Ok(Layout::Seed),
            other => Err(Error::invalid(format!(
                "unknown key layout {other:?} (expected \"default\" or \"seed\")"
            ))),
        }
    }
}

/// Settings of an [`EventStore`](super::EventStore).
///
/// Build it from [`StoreConfig::default()`] with the builder methods; the fields are
/// public so that callers can read them back (`store.config().page_size`). Everything is
/// checked when the store connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Prefix of every key in the default layout (default `"sf"`), so that several
    /// applications can share one Redis. No braces or whitespace.
    pub prefix: String,
    /// Key layout (default [`Layout::Default`]).
    pub layout: Layout,
    /// Approximate maximum length of each category stream (`XADD ... MAXLEN ~ n`);
    /// default 100,000 as in the seed, 0 = never trim. Aggregate streams are never
    /// trimmed.
    pub category_max_len: u64,
    /// Number of category partitions of a type not listed in `partitions_by_type`
    /// (default 1). Fixed for the life of a type: changing it moves aggregates to other
    /// keys.
    pub partitions: u32,
    /// Per-type partition counts, overriding `partitions`.
    pub partitions_by_type: HashMap<String, u32>,
    /// Entries fetched per `XRANGE` when reading (default 1,000: measured faster than
    /// 10,000 pages or one unbounded `XRANGE`, and it keeps Redis responsive).
    pub page_size: usize,
    /// How long to wait for any one reply (default 10 s). The redis crate's own default
    /// (500 ms) fires on large replies.
    pub response_timeout: Duration,
    /// How long one connection attempt may take (default 5 s).
    pub connect_timeout: Duration,
    /// How many times the connection manager retries (with exponential back-off from
    /// 100 ms, at most 1 s apart) when it reconnects after losing Redis (default 3).
    /// Keep it small: while Redis is down, every call waits for these retries before
    /// it fails.
    pub reconnect_retries: usize,
    /// TLS settings for a `rediss://` URL (see [`TlsConfig`]); default: none, which
    /// with `rediss://` verifies the server against the system's certificate store.
    pub tls: TlsConfig,
    /// The Redis is a Redis Cluster (default: a single Redis, or a primary with
    /// replicas behind one address). With it, [`EventStore::connect`](super::EventStore::connect)
    /// takes one or more node URLs, comma-separated, discovers the other nodes, and
    /// sends every command to the node that serves its key.
    pub cluster: bool,
    /// When an append is acknowledged (default [`Durability::Primary`]).
    pub durability: Durability,
}

/// When an append counts as done.
///
/// Redis replicates asynchronously: a primary acknowledges a write before any replica
/// has it, so a primary that fails right after an append can take the append with it
/// when a replica is promoted, though the caller was told it succeeded.
/// [`Replicas`](Self::Replicas) closes that window with `WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledged when the primary has it (Redis's own default). Fastest; a
    /// failover within about a second of an append can lose it.
    #[default]
    Primary,
    /// Acknowledged only when at least `count` replicas hold it too (`WAIT count
    /// timeout` after the append). If fewer confirm within `timeout`, the append fails
    /// with [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable): it is stored on
    /// the primary and may or may not survive a failover, and retrying it (same event
    /// ids) is safe.
    Replicas {
        /// How many replicas must confirm (>= 1).
        count: u32,
        /// How long to wait for them.
        timeout: Duration,
    },
}

impl Durability {
    /// The default time [`Durability::Replicas`] waits for replicas: 1 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Primary => f.write_str("primary"),
            Durability::Replicas { count, timeout } if *timeout == Self::DEFAULT_TIMEOUT => {
                write!(f, "replicas={count}")
            }
            Durability::Replicas { count, timeout } => {
                write!(f, "replicas={count},timeout={}ms", timeout.as_millis())
            }
        }
    }
}

impl FromStr for Durability {
    type Err = Error;

    /// `primary`, `replicas=N` or `replicas=N,timeout=MS` (milliseconds, or with an
    /// `ms` or `s` suffix).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "unknown durability {s:?} (expected \"primary\", \"replicas=N\" or \"replicas=N,timeout=MS\")"
            ))
        };
        let s = s.trim();
        if s.eq_ignore_ascii_case("primary") {
            return Ok(Durability::Primary);
        }
        let mut parts = s.split(',');
        let count = parts
            .next()
            .and_then(|p| p.trim().strip_prefix("replicas="))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let timeout = match parts.next() {
            None => Self::DEFAULT_TIMEOUT,
            Some(t) => {
                let t = t.trim().strip_prefix("timeout=").ok_or_else(bad)?;
                let (digits, unit) = match t.strip_suffix("ms") {
                    Some(d) => (d, 1),
                    None => match t.strip_suffix('s') {
                        Some(d) => (d, 1000),
                        None => (t, 1),
                    },
                };
                Duration::from_millis(digits.parse::<u64>().map_err(|_| bad())? * unit)
            }
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Durability::Replicas { count, timeout })
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            prefix: "sf".to_owned(),
            layout: Layout::Default,
            category_max_len: 100_000,
            partitions: 1,
            partitions_by_type: HashMap::new(),
            page_size: 1000,
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            reconnect_retries: 3,
            tls: TlsConfig::default(),
            cluster: false,
            durability: Durability::Primary,
        }
    }
}

impl StoreConfig {
    /// Sets the key prefix (default `"sf"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the key layout (default [`Layout::Default`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the approximate maximum length of category streams (0 = never trim).
    pub fn category_max_len(mut self, n: u64) -> Self {
        self.category_max_len = n;
        self
    }

    /// Sets the partition count of every type not set with
    /// [`partitions_for`](Self::partitions_for) (default 1; must be >= 1).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    /// Sets the partition count of one type (must be >= 1).
    pub fn partitions_for(mut self, aggregate_type: impl Into<String>, n: u32) -> Self {
        self.partitions_by_type.insert(aggregate_type.into(), n);
        self
    }

    /// Sets the number of entries fetched per read request (default 1,000; >= 1).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }

    /// Sets how long to wait for a reply (default 10 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets how long one connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how many times a lost connection is retried before a call fails (default 3).
    pub fn reconnect_retries(mut self, n: usize) -> Self {
        self.reconnect_retries = n;
        self
    }

    /// Sets the TLS settings used with a `rediss://` URL (see [`TlsConfig`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Says the Redis is a Redis Cluster (see [`cluster`](Self::cluster)).
    pub fn cluster(mut self, yes: bool) -> Self {
        self.cluster = yes;
        self
    }

    /// Sets when an append is acknowledged (see [`Durability`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The number of category partitions of a type. Always 1 in the seed layout.
    pub fn partitions_of(&self, aggregate_type: &str) -> u32 {
        if self.layout == Layout::Seed {
            return 1;
        }
        self.partitions_by_type
            .get(aggregate_type)
            .copied()
            .unwrap_or(self.partitions)
            .max(1)
    }

    /// Checks the settings (done by [`EventStore::connect`](super::EventStore::connect)).
    pub fn validate(&self) -> Result<()> {
        super::keys::validate_prefix(&self.prefix)?;
        if self.partitions == 0 {
            return Err(Error::invalid("the partition count must be at least 1"));
        }
        for (t, n) in &self.partitions_by_type {
            super::keys::validate_type(self.layout, t)?;
            if *n == 0 {
                return Err(Error::invalid(format!(
                    "the partition count of type {t:?} must be at least 1"
                )));
            }
        }
        if self.page_size == 0 {
            return Err(Error::invalid("the page size must be at least 1"));
        }
        if self.response_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid("timeouts must be longer than zero"));
        }
        crate::tls::check(&self.tls)?;
        if let Durability::Replicas { count, timeout } = self.durability {
            if count == 0 {
                return Err(Error::invalid(
                    "durability replicas=0 waits for nothing: use \"primary\" or at least 1",
                ));
            }
            if timeout.is_zero() {
                return Err(Error::invalid(
                    "the durability timeout must be longer than zero (WAIT 0 would wait forever)",
                ));
            }
        }
        if self.cluster && self.layout == Layout::Seed {
            return Err(Error::invalid(
                "the seed key layout has no hash tags, so an aggregate's keys would be spread \
                 over a cluster's slots: use the default layout on a Redis Cluster",
            ));
        }
        Ok(())
    }
}

/// TLS settings of a `rediss://` connection: the writes and small commands (the
/// `redis` crate), pub/sub, and the lean reader use the same ones.
///
/// TLS is on when the URL's scheme is `rediss://`; settings given with a `redis://`
/// URL are refused rather than silently ignored. Without a CA the server is verified
/// against the system's certificate store. Everything is PEM. The client key is never
/// printed (`Debug` shows only whether one is set).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The CA certificate(s) the server's certificate must chain to (PEM), instead of
    /// the system's store.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain for mutual TLS (PEM), with
    /// [`client_identity_pem`](Self::client_identity_pem).
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key (PEM). Not public: it is a secret.
    client_key_pem: Option<Vec<u8>>,
    /// Skip verifying the server's certificate. For development only: anyone on the
    /// path can read and change the traffic. The store logs a warning when it is used.
    /// (`rediss://host/#insecure` does the same.)
    pub insecure: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |b: &Option<Vec<u8>>| if b.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("TlsConfig")
            .field("ca_pem", &set(&self.ca_pem))
            .field("client_cert_pem", &set(&self.client_cert_pem))
            .field("client_key_pem", &set(&self.client_key_pem))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsConfig {
    /// Trusts the CA certificate(s) in `pem` instead of the system's store.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Reads the CA certificate(s) from a PEM file. Fails with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the file when
    /// it cannot be read or holds no PEM certificate.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = read_pem_file("CA certificate", path)?;
        crate::tls::parse_certs(&pem)
            .map_err(|e| Error::invalid(format!("TLS CA file {}: {e}", path.display())))?;
        Ok(self.ca_pem(pem))
    }

    /// The client certificate chain and its private key (both PEM), for a server that
    /// asks for client certificates (`tls-auth-clients yes`).
    pub fn client_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert_pem = Some(cert_pem.into());
        self.client_key_pem = Some(key_pem.into());
        self
    }

    /// Reads the client certificate chain and key from PEM files; errors name the file
    /// (never the key's contents).
    pub fn client_identity_files(
        self,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let cert = read_pem_file("client certificate", cert_path)?;
        crate::tls::parse_certs(&cert).map_err(|e| {
            Error::invalid(format!(
                "TLS client certificate file {}: {e}",
                cert_path.display()
            ))
        })?;
        let key = read_pem_file("client key", key_path)?;
        crate::tls::parse_key(&key).map_err(|e| {
            Error::invalid(format!("TLS client key file {}: {e}", key_path.display()))
        })?;
        Ok(self.client_identity_pem(cert, key))
    }

    /// Turns certificate verification off (development only; see [`insecure`](Self::insecure)).
    pub fn insecure(mut self, yes: bool) -> Self {
        self.insecure = yes;
        self
    }

    /// Whether anything is set (a CA, a client identity or `insecure`).
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some()
            || self.client_cert_pem.is_some()
            || self.client_key_pem.is_some()
            || self.insecure
    }

    /// The client key (PEM), for the crate's connections only.
    pub(crate) fn client_key(&self) -> Option<&[u8]> {
        self.client_key_pem.as_deref()
    }
}

fn read_pem_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the TLS {what} file {}: {e}",
            path.display()
        ))
    })
}
