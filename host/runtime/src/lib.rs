//! Streamfold: event sourcing on Redis Streams, with state replayed through
//! sandboxed WebAssembly reducers. This is the library applications embed.
//!
//! # A tour
//! The work is done by two crates that know nothing of each other, joined here:
//! - `streamfold-store`: the event store. Appends are atomic and optimistic (one Lua
//!   script checks the expected revision and writes the aggregate's stream and its
//!   type's category stream); reads come in pages; snapshots are keyed by the
//!   reducer that made them. Its types are re-exported here: [`EventStore`],
//!   [`NewEvent`], [`ExpectedRevision`], [`ReadOptions`], [`History`], [`Page`], ….
//! - `streamfold-sandbox`: the WebAssembly host. Validates reducer components,
//!   compiles them once (cached on disk), and runs [`Session`]s, each a fresh
//!   sandboxed instance folding one aggregate under [`Limits`].
//!
//! This crate adds what needs both:
//! - [`Runtime`]: the plugin registry in Redis (register, activate, roll back,
//!   remove, history), replay ([`Runtime::state`]: snapshot + the tail of the
//!   history in pages into a session; time travel by revision or instant),
//!   snapshots, hot reload ([`Runtime::follow_activations`]), replay-diff
//!   verification ([`Runtime::verify`]) and live state ([`Runtime::subscribe_state`]:
//!   one session kept open, fed each event as it is appended; plain event
//!   subscriptions are the store's [`EventStore::subscribe`]).
//! - Projections ([`Runtime::register_projection`], [`Runtime::run_projections`]):
//!   components of the projection world fold the category feeds of their source
//!   types into read models of JSON documents in Redis. See "Projections" below.
//! - [`Error`]: one error type with a [`kind`](Error::kind) and `is_*` checks for
//!   what a caller can act on.
//!
//! The `streamfold` binary (`host/cli`) is a thin command line over this crate.
//!
//! ```no_run
//! # async fn demo() -> streamfold::Result<()> {
//! use streamfold::{EventStore, ExpectedRevision, NewEvent, RegisterOptions, ReplayOptions, Runtime, RuntimeConfig, StoreConfig};
//!
//! let store = EventStore::connect("redis://127.0.0.1:6379", StoreConfig::default()).await?;
//! let runtime = Runtime::new(store.clone(), RuntimeConfig::default())?;
//! runtime.register(std::fs::read("user.wasm").unwrap(), RegisterOptions::default()).await?;
//! let created = serde_json::json!({"id": 1, "name": "Ada", "email": "ada@example.com"});
//! store
//!     .append("user", "1", vec![NewEvent::new("UserCreated", &created)], ExpectedRevision::NoStream)
//!     .await?;
//! let replayed = runtime.state("user", "1", ReplayOptions::default()).await?;
//! println!("{} at revision {}", replayed.state, replayed.revision);
//! # Ok(()) }
//! ```
//!
//! # Projections
//! A projection component (`wit/projection`) names its source aggregate types and
//! the event types it handles; the host folds those categories into its read model
//! batch by batch, each batch on a fresh sandboxed instance.
//! - **Versions.** [`Runtime::register_projection`] stores the component (bytes in
//!   the plugin blob store by digest) as a version of the projection its `info`
//!   names; the version id is the digest. Every version has its own keys: its read
//!   model, checkpoint, lease, dead letters and change stream ([`ProjectionVersion`]).
//! - **Running.** Every host calls [`Runtime::run_projections`] (until a shutdown
//!   future completes). It runs the *serving* and the *active* version of every
//!   projection, each under a lease (one host at a time; renewed every third of
//!   [`RuntimeConfig::projection_lease_ttl`]; when a holder dies another host takes
//!   over within about a lease time). A runner reads pages of the merged source
//!   partitions after its checkpoint, folds them, and commits the writes with the new
//!   checkpoint in one fenced step: **effectively once**, whatever crashes when.
//!   Caught up, it follows the categories live (the store's shared `XREAD BLOCK`
//!   watchers, [`CategoryWatch`]): writes are visible milliseconds after an append.
//! - **Blue/green.** [`Runtime::activate_projection`] makes a version active: it
//!   builds from position 0 under its own keys while the serving version keeps
//!   serving (and following); once it has caught up its runner switches the serving
//!   pointer to it (compare-and-set). Activating an older version again is the
//!   rollback; [`Runtime::rebuild_projection`] rebuilds the active version in place;
//!   [`Runtime::remove_projection`] drops a version that neither serves nor is active.
//! - **Failures.** With [`OnError::Stop`] (the default) a projection that fails on an
//!   event stops there (status names the event, reads keep the last commit) until
//!   [`Runtime::resume_projection`] or a fixed version; with [`OnError::Skip`] the
//!   event goes to the dead letters and the rest flow.
//! - **Reads** follow the serving version: [`Runtime::projection_doc`],
//!   [`Runtime::projection_docs`], [`Runtime::watch_projection`] (changes with
//!   resumable positions, for SSE); [`Runtime::projection_status`] and
//!   [`Runtime::list_projections`] report state, position, lag, rate and failures.
//!
//! ```no_run
//! # async fn demo(runtime: streamfold::Runtime) -> streamfold::Result<()> {
//! use streamfold::ProjectionOptions;
//!
//! let wasm = std::fs::read("email_domains.wasm").unwrap();
//! let reg = runtime.register_projection(wasm, ProjectionOptions::default()).await?;
//! // Run the projections until Ctrl-C (every host may: the leases pick one per version).
//! let rt = runtime.clone();
//! tokio::spawn(async move {
//!     rt.run_projections(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await
//! });
//! if let Some(doc) = runtime.projection_doc(&reg.info.name, "domain/example.com").await? {
//!     println!("{} (ETag {})", doc.doc, doc.etag);
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod catalog;
mod error;
mod follow;
mod live;
mod projections;
mod registry;
mod replay;
mod state_cache;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use catalog::TypeSummary;
pub use error::{Error, ErrorKind, Result};
pub use live::{LiveState, LiveUpdate};
pub use projections::{
    LIVE_LAG_MS, OnError, ProjectionChanges, ProjectionDoc, ProjectionDocs, ProjectionOptions,
    ProjectionSummary, RegisteredProjection, RunState, RunnerCounters, ServingChange,
    ServingChangesPage, VersionStatus,
};
pub use registry::{Activation, RegisteredPlugin};
pub use replay::{ReplayOptions, Replayed};
pub use streamfold_sandbox::{
    CONTRACT, FailedEvent, FailureCause, Instances, Limits, LoadSource, Plugin, PluginInfo,
    ReducerFailure, RejectionKind, Sandbox, Session, SessionEvent, digest, short_digest, text,
};
// Projections in the sandbox: the component, its info, a batch's failure.
pub use streamfold_sandbox::{
    FailedProjectionEvent, PROJECTION_CONTRACT, Projection, ProjectionFailure, ProjectionInfo,
    ReadModelLimits,
};
// Projections in the store: a version's keys and steps. The store's registry entry,
// recorded failure and raw status are renamed beside the runtime's own types.
pub use streamfold_store::names;
pub use streamfold_store::{
    AggregateKeys, AppendCalls, AppendResult, CategoryFeed, CategoryReadOptions, Conflict,
    Connection, Durability, EventStore, EventView, ExpectedRevision, History, IdsPage,
    IdsPageOptions, Layout, Live, MAX_BATCH, MAX_CATEGORY_COUNT, MAX_IDS_PAGE, NewEvent, Page,
    PageIter, RETRY_SCAN_LIMIT, ReadOptions, RecordedEvent, Snapshot, StoreConfig, SubscribeFrom,
    SubscribeOptions, Subscription, TlsConfig,
};
pub use streamfold_store::{
    CategoryWatch, Change, ChangeFeed, ChangeOp, ChangesPage, Checkpoint, CommitBatch,
    CommitOutcome, DEFAULT_CHANGES_MAX_LEN, DeadLetter, DocPage, DocWrite, Lease, LeaseHolder,
    MAX_CHANGES_PAGE, MAX_DOC_PAGE, Pointer, ProjectionFailure as ProjectionStop,
    ProjectionInfo as ProjectionEntry, ProjectionStatus as VersionRecord, ProjectionVersion,
    SourceEvent, SourceLag, SourceStream, StoredDeadLetter,
};
// Durable subscriptions (the store's groups); the store's `Replayed` is
// `ParkedReplayed` here, beside the runtime's own `Replayed`.
pub use streamfold_store::{
    ConsumerStatus, DEFAULT_ACK_TIMEOUT_MS, DEFAULT_MAX_DELIVERIES, Delivery, GroupCreated,
    GroupInfo, GroupSettings, GroupStart, GroupStatus, MAX_ACK_TIMEOUT_MS, MAX_FETCH,
    MAX_GROUP_NAME_CHARS, MAX_MAX_DELIVERIES, MAX_PARKED_PAGE, MAX_REASON_CHARS, MAX_SETTLE,
    NackAction, ParkReason, ParkedEvent, ParkedPage, PartitionStatus, Replayed as ParkedReplayed,
    Settled, validate_group_name,
};
pub use verify::{CandidateFailure, Difference, StateLeak, VerifyOptions, VerifyReport};

use streamfold_sandbox::SandboxConfig;
use streamfold_store::MAX_LEASE_TTL;

/// How a [`Runtime`] is set up. Every field has a sensible default.
#[derive(Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// What a reducer may use.
    pub limits: Limits,
    /// Folder for compiled code (`None`: compile every time). Default:
    /// `$STREAMFOLD_CACHE_DIR`, else `$XDG_CACHE_HOME/streamfold`, else
    /// `~/.cache/streamfold`.
    pub cache_dir: Option<PathBuf>,
    /// Save a snapshot automatically when a replay of the current state applied at
    /// least this many events past the last snapshot. `None` turns it off.
    /// Default: 1,000.
    pub snapshot_every: Option<u64>,
    /// Use the pooling instance allocator (fast instantiation). Default: true.
    pub pooling: bool,
    /// With pooling: how much of a finished instance's linear memory stays mapped
    /// (reset in place rather than handed back to the kernel), so that the next
    /// instance of the same reducer does not fault it in again. Up to 16 idle instance
    /// slots keep it. Default 16 MiB: fresh instances of the JavaScript and Python
    /// components (12-18 MB images) measured 30-40% faster, for up to ~270 MB more
    /// resident memory when all 16 idle slots hold that much; 0 turns it off.
    pub keep_resident_bytes: usize,
    /// Whether replays, verifies and live sessions reuse warm reducer instances
    /// (the default) or start each on a fresh one: see [`Instances`] for the
    /// trade-off.
    pub instances: Instances,
    /// When following activations ([`Runtime::follow_activations`]), how often to
    /// re-read every active digest in case a notice was missed. Default: 2 s.
    pub activation_check_every: Duration,
    /// How long a projection runner's lease lasts unless renewed (it is renewed
    /// every third of it): when a host dies, another takes its projections over
    /// after about this long. Default: 10 s.
    pub projection_lease_ttl: Duration,
    /// How many source events a projection runner reads, folds and commits at once
    /// (smaller when a batch fails or is too large to commit). Default: 200.
    pub projection_batch: usize,
    /// Memory (bytes, about) each projection runner may use to keep the committed
    /// documents it has read or written, so that a batch's `get`s go to Redis only
    /// for documents the runner has not seen. A runner that folds a version from its
    /// first event (a new version, a rebuild) knows every document there is, and
    /// reads Redis for none until the cache is full. Default: 64 MiB; 0 turns it off.
    pub projection_cache_bytes: usize,
    /// How often [`Runtime::run_projections`] re-reads the projection registry for
    /// activations. Default: 1 s.
    pub projection_check_every: Duration,
    /// Memory (bytes, about) for the state cache: the latest state each
    /// aggregate's current-state reads produced, per reducer, so that the next read
    /// folds only the events appended since, and calls no reducer when there are
    /// none. Every read checks in Redis, in the same one request that reads what
    /// follows, that the held state's last event is still there, the same event: a
    /// held state is never served stale. Reads of the past (time travel), without
    /// snapshots, through a chosen reducer or on a chosen instance do not use it. Default: 64 MiB; 0 turns it
    /// off.
    pub state_cache_bytes: usize,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .field("snapshot_every", &self.snapshot_every)
            .field("pooling", &self.pooling)
            .field("keep_resident_bytes", &self.keep_resident_bytes)
            .field("instances", &self.instances)
            .field("activation_check_every", &self.activation_check_every)
            .field("projection_lease_ttl", &self.projection_lease_ttl)
            .field("projection_batch", &self.projection_batch)
            .field("projection_cache_bytes", &self.projection_cache_bytes)
            .field("projection_check_every", &self.projection_check_every)
            .field("state_cache_bytes", &self.state_cache_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            cache_dir: default_cache_dir(),
            snapshot_every: Some(1000),
            pooling: true,
            keep_resident_bytes: 16 << 20,
            instances: Instances::default(),
            activation_check_every: Duration::from_secs(2),
            projection_lease_ttl: Duration::from_secs(10),
            projection_batch: 200,
            projection_cache_bytes: 64 << 20,
            projection_check_every: Duration::from_secs(1),
            state_cache_bytes: 64 << 20,
        }
    }
}

impl RuntimeConfig {
    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Sets (or, with `None`, turns off) the compiled-code cache folder.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }
    /// Sets (or, with `None`, turns off) automatic snapshots.
    pub fn snapshot_every(mut self, n: Option<u64>) -> Self {
        self.snapshot_every = n.filter(|n| *n > 0);
        self
    }
    /// Turns the pooling allocator on or off.
    pub fn pooling(mut self, on: bool) -> Self {
        self.pooling = on;
        self
    }
    /// Sets [`RuntimeConfig::keep_resident_bytes`] (0: off).
    pub fn keep_resident_bytes(mut self, bytes: usize) -> Self {
        self.keep_resident_bytes = bytes;
        self
    }
    /// Sets [`RuntimeConfig::instances`].
    pub fn instances(mut self, instances: Instances) -> Self {
        self.instances = instances;
        self
    }
    /// Sets how often a following runtime re-reads the active digests.
    pub fn activation_check_every(mut self, every: Duration) -> Self {
        self.activation_check_every = every;
        self
    }
    /// Sets [`RuntimeConfig::projection_lease_ttl`] (1 ms to 10 minutes).
    pub fn projection_lease_ttl(mut self, ttl: Duration) -> Self {
        self.projection_lease_ttl = ttl.clamp(Duration::from_millis(1), MAX_LEASE_TTL);
        self
    }
    /// Sets [`RuntimeConfig::projection_batch`] (at least 1).
    pub fn projection_batch(mut self, events: usize) -> Self {
        self.projection_batch = events.max(1);
        self
    }
    /// Sets [`RuntimeConfig::state_cache_bytes`] (0: off).
    pub fn state_cache_bytes(mut self, bytes: usize) -> Self {
        self.state_cache_bytes = bytes;
        self
    }
    /// Sets [`RuntimeConfig::projection_cache_bytes`] (0: off).
    pub fn projection_cache_bytes(mut self, bytes: usize) -> Self {
        self.projection_cache_bytes = bytes;
        self
    }
    /// Sets [`RuntimeConfig::projection_check_every`].
    pub fn projection_check_every(mut self, every: Duration) -> Self {
        self.projection_check_every = every.max(Duration::from_millis(1));
        self
    }
}

/// `host-pid-random`: a projection lease holder name of this runtime's own.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        u32::from_le_bytes(random)
    )
}

fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("STREAMFOLD_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("streamfold")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("streamfold")))
}

/// How [`Runtime::register`] treats a new plugin.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// Make it the active reducer of its aggregate type. Default: true.
    pub activate: bool,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions { activate: true }
    }
}

impl RegisterOptions {
    /// Sets [`RegisterOptions::activate`].
    pub fn activate(mut self, on: bool) -> Self {
        self.activate = on;
        self
    }
}

/// The reducer host: loads plugins, keeps the registry, replays aggregates.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    sandbox: Sandbox,
    config: RuntimeConfig,
    store: EventStore,
    registry: registry::Registry,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    /// Loads from the registry in progress, by digest.
    loading: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Plugin>>>>>,
    /// Active digest per type, kept by the activation follower; `None` when not
    /// following (then each replay asks Redis).
    active: RwLock<Option<HashMap<String, String>>>,
    /// Loaded projection components, by digest.
    projections: projections::Components,
    /// This runtime's name as a projection lease holder: host, process and a random
    /// part (two runtimes of one process are two holders).
    holder: String,
    /// Whether `run_projections` runs (one at a time: one holder name).
    running_projections: std::sync::atomic::AtomicBool,
    /// The latest states replays produced (see [`RuntimeConfig::state_cache_bytes`]).
    states: state_cache::StateCache,
}

impl Runtime {
    /// A runtime over `store`, whose Redis also holds the plugin registry.
    pub fn new(store: EventStore, config: RuntimeConfig) -> Result<Self> {
        let sandbox = Sandbox::new(
            SandboxConfig::default()
                .limits(config.limits.clone())
                .cache_dir(config.cache_dir.clone())
                .pooling(config.pooling)
                .instances(config.instances)
                .keep_resident_bytes(config.keep_resident_bytes),
        )?;
        let registry = registry::Registry::new(&store);
        let states = state_cache::StateCache::new(config.state_cache_bytes);
        Ok(Runtime {
            inner: Arc::new(Inner {
                sandbox,
                config,
                store,
                registry,
                loaded: Mutex::new(HashMap::new()),
                loading: Mutex::new(HashMap::new()),
                active: RwLock::new(None),
                projections: projections::Components::default(),
                holder: holder_name(),
                running_projections: std::sync::atomic::AtomicBool::new(false),
                states,
            }),
        })
    }

    /// The event store this runtime replays from.
    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Validates and compiles a component (or takes it from the caches) without
    /// registering it. Blocking: compiling a large component takes seconds, so call
    /// it from a blocking context, or use [`Runtime::load_async`].
    pub fn load(&self, bytes: &[u8]) -> Result<(Arc<Plugin>, LoadSource)> {
        let digest = digest(bytes);
        if let Some(p) = self.inner.loaded.lock().expect("plugin map").get(&digest) {
            return Ok((p.clone(), LoadSource::Memory));
        }
        let (p, source) = self.inner.sandbox.load(bytes)?;
        let mut loaded = self.inner.loaded.lock().expect("plugin map");
        let p = loaded.entry(digest).or_insert(p).clone();
        Ok((p, source))
    }

    /// [`Runtime::load`] on tokio's blocking pool.
    pub async fn load_async(&self, bytes: Arc<[u8]>) -> Result<(Arc<Plugin>, LoadSource)> {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || rt.load(&bytes))
            .await
            .map_err(|e| Error::task("plugin loading", e))?
    }

    /// Validates `bytes`, stores them in the registry and, unless the options say
    /// otherwise, makes the plugin the active reducer of its aggregate type.
    pub async fn register(
        &self,
        bytes: Vec<u8>,
        options: RegisterOptions,
    ) -> Result<RegisteredPlugin> {
        let bytes: Arc<[u8]> = bytes.into();
        let (plugin, _) = self.load_async(bytes.clone()).await?;
        let mut reg = self.inner.registry.put(plugin.info(), &bytes).await?;
        if options.activate {
            self.inner.registry.activate(&reg).await?;
            self.note_activation(&reg.info.aggregate_type, &reg.info.digest);
            reg.active = true;
        } else {
            reg.active = self
                .inner
                .registry
                .active_digest(&reg.info.aggregate_type)
                .await?
                .as_deref()
                == Some(reg.info.digest.as_str());
        }
        Ok(reg)
    }

    /// Makes a registered version (by digest, digest prefix or semantic version)
    /// the active reducer of `aggregate_type`.
    pub async fn activate(
        &self,
        aggregate_type: &str,
        digest_or_version: &str,
    ) -> Result<RegisteredPlugin> {
        let mut reg = self
            .inner
            .registry
            .resolve(aggregate_type, digest_or_version)
            .await?;
        if reg.info.aggregate_type != aggregate_type {
            return Err(Error::invalid(format!(
                "{} folds {:?} aggregates, not {aggregate_type:?}",
                reg.info.label(),
                reg.info.aggregate_type
            )));
        }
        self.inner.registry.activate(&reg).await?;
        self.note_activation(aggregate_type, &reg.info.digest);
        reg.active = true;
        Ok(reg)
    }

    /// What was active for `aggregate_type` when, newest first.
    pub async fn activation_history(&self, aggregate_type: &str) -> Result<Vec<Activation>> {
        self.inner.registry.history(aggregate_type).await
    }

    /// Deletes a registered version (by digest, digest prefix or version). The
    /// active version cannot be removed: activate another one first.
    pub async fn remove(
        &self,
        aggregate_type: &str,
        digest_or_version: &str,
    ) -> Result<RegisteredPlugin> {
        let reg = self
            .inner
            .registry
            .resolve(aggregate_type, digest_or_version)
            .await?;
        self.inner.registry.remove(&reg).await?;
        self.inner
            .loaded
            .lock()
            .expect("plugin map")
            .remove(&reg.info.digest);
        Ok(reg)
    }

    /// The registered version of `aggregate_type` that `digest_or_version` names (a
    /// digest, a digest prefix of 6+ hex digits, or a semantic version), with whether
    /// it is active.
    pub async fn registered(
        &self,
        aggregate_type: &str,
        digest_or_version: &str,
    ) -> Result<RegisteredPlugin> {
        let mut reg = self
            .inner
            .registry
            .resolve(aggregate_type, digest_or_version)
            .await?;
        reg.active =
            self.active_digest(aggregate_type).await?.as_deref() == Some(reg.info.digest.as_str());
        Ok(reg)
    }

    /// Every registered version (of one type, or of all), with the active ones marked.
    pub async fn plugins(&self, aggregate_type: Option<&str>) -> Result<Vec<RegisteredPlugin>> {
        self.inner.registry.list(aggregate_type).await
    }

    /// Every plugin loaded in this process (for figures such as
    /// [`Plugin::instances_made`]), in no particular order.
    pub fn loaded_plugins(&self) -> Vec<Arc<Plugin>> {
        self.inner
            .loaded
            .lock()
            .expect("plugin map")
            .values()
            .cloned()
            .collect()
    }

    /// The plugin registered under `digest`, loaded and ready.
    pub async fn plugin(&self, digest: &str) -> Result<Arc<Plugin>> {
        if let Some(p) = self.inner.loaded.lock().expect("plugin map").get(digest) {
            return Ok(p.clone());
        }
        // One load per digest at a time: replays and the activation follower asking
        // for the same new plugin at once share one fetch and one compilation.
        let cell = self
            .inner
            .loading
            .lock()
            .expect("loading map")
            .entry(digest.to_string())
            .or_default()
            .clone();
        let p = cell
            .get_or_try_init(|| async {
                let bytes: Arc<[u8]> = self.inner.registry.bytes(digest).await?.into();
                let (p, _) = self.load_async(bytes).await?;
                if p.info().digest != digest {
                    return Err(Error::corrupt(
                        format!("plugin blob {digest}"),
                        format!("its bytes hash to {}", p.info().digest),
                    ));
                }
                if self.inner.registry.is_fresh(digest).await? {
                    p.serve_fresh(); // verify found it keeping state across aggregates
                }
                Ok(p)
            })
            .await?
            .clone();
        self.inner
            .loading
            .lock()
            .expect("loading map")
            .remove(digest);
        Ok(p)
    }

    /// The active reducer of `aggregate_type`, loaded and ready.
    pub async fn active_plugin(&self, aggregate_type: &str) -> Result<Arc<Plugin>> {
        let digest = self.active_digest(aggregate_type).await?.ok_or_else(|| {
            Error::not_found(format!(
                "an active reducer for aggregate type {aggregate_type:?}"
            ))
        })?;
        self.plugin(&digest).await
    }

    /// Replays an aggregate and returns its state.
    pub async fn state(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        options: ReplayOptions,
    ) -> Result<Replayed> {
        replay::replay(self, aggregate_type, aggregate_id, options).await
    }

    /// Replays the aggregate's current state and saves it as a snapshot for the
    /// active reducer.
    pub async fn snapshot(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Replayed> {
        let replayed = self
            .state(aggregate_type, aggregate_id, ReplayOptions::default())
            .await?;
        replay::save_snapshot(self, aggregate_type, aggregate_id, &replayed).await?;
        Ok(replayed)
    }

    pub(crate) fn states(&self) -> &state_cache::StateCache {
        &self.inner.states
    }

    /// The state cache's use: how many states it holds and their bytes (see
    /// [`RuntimeConfig::state_cache_bytes`], its budget).
    pub fn state_cache_usage(&self) -> (usize, u64) {
        self.inner.states.usage()
    }

    /// The sandbox reducers run in (for sessions of one's own: live folds,
    /// projections).
    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }
}
