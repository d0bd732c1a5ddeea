//! `streamfold-sandbox`: the WebAssembly host that reducers and projections run in.
//!
//! This crate knows nothing of Redis. It takes a plugin component's bytes and
//! events as borrowed text, and gives back states (reducers), read-model writes
//! (projections) and typed failures.
//!
//! A plugin has a [`PluginKind`]: a **reducer** (`wit/reducer.wit`,
//! [`CONTRACT`]) folds one aggregate into its state; a **projection**
//! (`wit/projection/projection.wit`, [`PROJECTION_CONTRACT`]) folds whole
//! categories into a read model of JSON documents. What every kind shares lives
//! outside the kinds' modules: the engine, its limits and WASI context (`engine`),
//! the size limit, digest, compiled-code cache, contract versions and kind
//! detection (`code`), the checks on `info` (`info`), and untrusted text
//! ([`text`]).
//!
//! # A tour
//! - [`Sandbox`]: one Wasmtime engine for the process (pooling allocator, an epoch
//!   clock for time limits, which sleeps while no call into a plugin can be
//!   running), the linker reducers are instantiated against (the
//!   contract's `host` interface, and WASI with no capabilities and frozen clocks),
//!   and the compiled-code cache on disk.
//! - [`Sandbox::load`] validates a component — a component, not a core module; the
//!   contract version this host speaks; only the imports we provide; the reducer
//!   world's exports; sane [`PluginInfo`] — and compiles it once into a [`Plugin`].
//! - [`Sandbox::session`] starts a [`Session`]: a new `aggregate` resource on a
//!   warm instance (one kept from earlier sessions) or a fresh one, as
//!   [`Instances`] says. Restore a snapshot, apply pages of [`SessionEvent`]s, take
//!   the state. An instance that failed in any way is never used again; a plugin
//!   that keeps state across aggregates is served fresh ([`Plugin::serve_fresh`]).
//!   Every call is bounded by [`Limits`]; a failure is a [`ReducerFailure`] naming the
//!   plugin, the aggregate and the event.
//! - [`Sandbox::load_projection`] does the same for a projection, giving a
//!   [`Projection`]; [`Sandbox::load_any`] takes either kind, telling them apart by
//!   their exports. Asking for one kind with a component of the other is refused
//!   saying what it is.
//! - [`Projection::apply_batch`] runs one batch of [`ProjectionEvent`]s on a fresh
//!   instance, answering its reads from its own writes and a [`DocumentSource`],
//!   and gives back the final [`BatchWrites`] (or a [`ProjectionFailure`] naming the
//!   event). What a batch may write is bounded by [`ReadModelLimits`].
//! - Plugin text is untrusted: messages, log lines, keys and `info` are bounded and
//!   escaped (see [`text`]). Reducer log lines are `tracing` events with the target
//!   `streamfold::reducer` and the fields `plugin` and `aggregate`; a projection's
//!   have the target `streamfold::projection` and the fields `plugin` and `batch`.
#![warn(missing_docs)]

mod bindings;
mod code;
mod engine;
mod error;
mod failure;
mod info;
mod plugin;
mod projection;
mod session;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::Linker;

pub use code::PluginKind;
pub use engine::{Limits, ReadModelLimits};
pub use error::{Error, ErrorKind, Result};
pub use failure::{
    FailedEvent, FailedProjectionEvent, FailureCause, ProjectionFailure, ReducerFailure,
    RejectionKind,
};
pub use info::{MAX_HANDLES, MAX_INFO_NAME, MAX_INFO_VERSION};
pub use plugin::{CONTRACT, Plugin, PluginInfo, digest, short_digest};
pub use projection::{
    BatchWrites, DocumentSource, LoadedPlugin, PROJECTION_CONTRACT, Projection, ProjectionEvent,
    ProjectionInfo, SourceError,
};
use session::Keep;
pub use session::{Session, SessionEvent};

/// How a [`Sandbox`] is set up. Every field has a sensible default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// What a plugin may use.
    pub limits: Limits,
    /// Folder for compiled code (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling instance allocator (fast instantiation). Default: true.
    pub pooling: bool,
    /// With pooling: how much of a finished instance's linear memory stays mapped
    /// in its slot (up to 16 idle slots), so the next instance of the same reducer
    /// does not fault it in again. Default 16 MiB; 0 turns it off.
    pub keep_resident_bytes: usize,
    /// Whether sessions reuse warm instances. Default [`Instances::Warm`].
    pub instances: Instances,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Limits::default(),
            cache_dir: None,
            pooling: true,
            keep_resident_bytes: 16 << 20,
            instances: Instances::default(),
        }
    }
}

/// Which instance a session runs on.
///
/// A fresh instance per session is the strictest isolation: nothing an instance did
/// for one aggregate can reach another. It costs an instantiation per session
/// (about 300 µs for a small Rust reducer on a 2-core machine, milliseconds for the
/// JavaScript and Python interpreters), which dominates replays of small
/// aggregates. A warm instance skips it: each session still gets its own
/// `aggregate` resource, log budget and time limits, and an instance that failed in
/// any way is dropped at once; but the reducer's global variables survive from one
/// aggregate to the next. A reducer that keeps state in them would give results
/// that depend on what its instance served before: `verify` detects that (it
/// replays on fresh and on warm instances), and such a plugin is served fresh
/// ([`Plugin::serve_fresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instances {
    /// A new instance for every session.
    Fresh,
    /// Reuse instances: each serves at most `sessions_per_instance` sessions, and at
    /// most `idle_per_plugin` wait between sessions (each holds its memory).
    Warm {
        /// Sessions an instance serves before it is replaced by a new one.
        sessions_per_instance: u32,
        /// Idle instances kept per plugin.
        idle_per_plugin: usize,
    },
}

impl Default for Instances {
    /// Warm: 1,000 sessions per instance, 4 idle per plugin.
    fn default() -> Self {
        Instances::Warm {
            sessions_per_instance: 1000,
            idle_per_plugin: 4,
        }
    }
}

impl SandboxConfig {
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
    /// Turns the pooling allocator on or off.
    pub fn pooling(mut self, on: bool) -> Self {
        self.pooling = on;
        self
    }
    /// Sets [`SandboxConfig::instances`].
    pub fn instances(mut self, instances: Instances) -> Self {
        self.instances = instances;
        self
    }
    /// Sets [`SandboxConfig::keep_resident_bytes`] (0: off).
    pub fn keep_resident_bytes(mut self, bytes: usize) -> Self {
        self.keep_resident_bytes = bytes;
        self
    }
}

/// How a plugin was made ready: from memory, the compiled-code cache or by compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Already loaded in this process.
    Memory,
    /// Deserialized from the on-disk compiled-code cache.
    DiskCache,
    /// Compiled from the component's bytes.
    Compiled,
}

fn load_source(cache_hit: bool) -> LoadSource {
    if cache_hit {
        LoadSource::DiskCache
    } else {
        LoadSource::Compiled
    }
}

/// The plugin host: engine, linkers (one per kind), limits and compiled-code cache.
/// Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    machine: engine::Machine,
    linker: Linker<engine::HostState>,
    projection_linker: projection::ProjectionLinker,
    cache: code::CodeCache,
    limits: Limits,
    keep: Keep,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Sets up the engine (and its epoch clock's thread, which lives as long as the
    /// engine) and the linkers.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        let engine = engine::engine(&config.limits, config.pooling, config.keep_resident_bytes)
            .map_err(Error::engine)?;
        let linker = engine::linker(&engine).map_err(Error::engine)?;
        let projection_linker = projection::linker(&engine).map_err(Error::engine)?;
        let cache = code::CodeCache::new(config.cache_dir, &engine);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                machine: engine::Machine::new(engine),
                linker,
                projection_linker,
                cache,
                limits: config.limits,
                keep: match config.instances {
                    Instances::Fresh => Keep::No,
                    Instances::Warm {
                        sessions_per_instance,
                        idle_per_plugin,
                    } => Keep::Warm {
                        max_sessions: sessions_per_instance.max(1),
                        max_idle: idle_per_plugin,
                    },
                },
            }),
        })
    }

    /// The limits every session runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether the epoch clock that enforces call time limits is ticking. It ticks
    /// from the moment a call into a plugin is armed until that call's time limit
    /// has passed, and sleeps otherwise: an idle host does not wake up to count
    /// time nobody is using.
    pub fn epoch_clock_running(&self) -> bool {
        self.inner.machine.clock.is_running()
    }

    /// Validates and compiles a reducer component, or takes its compiled code from
    /// the disk cache. Blocking: compiling a large component takes seconds, so call
    /// it from a thread that may block. Never returns [`LoadSource::Memory`]:
    /// keeping loaded plugins is the caller's business. A projection is refused,
    /// saying that it is one.
    pub fn load(&self, bytes: &[u8]) -> Result<(Arc<Plugin>, LoadSource)> {
        let checked = self.check(bytes, Some(PluginKind::Reducer))?;
        self.load_reducer(checked, bytes.len())
    }

    /// [`load`](Self::load) for a projection component. A reducer is refused,
    /// saying that it is one.
    pub fn load_projection(&self, bytes: &[u8]) -> Result<(Arc<Projection>, LoadSource)> {
        let checked = self.check(bytes, Some(PluginKind::Projection))?;
        self.load_projection_checked(checked, bytes.len())
    }

    /// Loads a component of any kind, telling which it is from its exports.
    pub fn load_any(&self, bytes: &[u8]) -> Result<(LoadedPlugin, LoadSource)> {
        let checked = self.check(bytes, None)?;
        Ok(match checked.kind {
            PluginKind::Reducer => {
                let (p, source) = self.load_reducer(checked, bytes.len())?;
                (LoadedPlugin::Reducer(p), source)
            }
            PluginKind::Projection => {
                let (p, source) = self.load_projection_checked(checked, bytes.len())?;
                (LoadedPlugin::Projection(p), source)
            }
        })
    }

    fn check(&self, bytes: &[u8], wanted: Option<PluginKind>) -> Result<code::Checked> {
        let i = &self.inner;
        code::check(&i.machine.engine, &i.cache, &i.limits, bytes, wanted)
    }

    fn load_reducer(
        &self,
        checked: code::Checked,
        size: usize,
    ) -> Result<(Arc<Plugin>, LoadSource)> {
        let i = &self.inner;
        let (plugin, hit) =
            plugin::load_checked(&i.machine, &i.linker, &i.limits, checked, size as u64)?;
        self.warm_up(&plugin);
        Ok((plugin, load_source(hit)))
    }

    fn load_projection_checked(
        &self,
        checked: code::Checked,
        size: usize,
    ) -> Result<(Arc<Projection>, LoadSource)> {
        let i = &self.inner;
        let hit = checked.cache_hit;
        let projection = projection::load_checked(
            &i.machine,
            &i.projection_linker,
            &i.limits,
            checked,
            size as u64,
        )?;
        Ok((projection, load_source(hit)))
    }

    /// Starts a session of `plugin` for one aggregate: a new `aggregate` resource on
    /// a warm instance or a fresh one (see [`Instances`]). Blocking (it enters the
    /// reducer).
    pub fn session(
        &self,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        let keep = if plugin.serves_fresh() {
            Keep::No
        } else {
            self.inner.keep
        };
        self.start(keep, false, plugin, aggregate_type, aggregate_id)
    }

    /// Starts a session on a fresh instance, whatever the policy, which is dropped
    /// with the session (to compare with warm ones, say). Blocking.
    pub fn fresh_session(
        &self,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        self.start(Keep::No, false, plugin, aggregate_type, aggregate_id)
    }

    /// Starts a session on an instance that has served another aggregate before
    /// (an idle one, or a new one that serves a throwaway aggregate first),
    /// whatever the policy: to tell whether a reducer's results depend on what its
    /// instance served before. The instance is kept afterwards as the policy says.
    /// Blocking.
    pub fn warm_session(
        &self,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        self.start(self.inner.keep, true, plugin, aggregate_type, aggregate_id)
    }

    fn start(
        &self,
        keep: Keep,
        served_before: bool,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        let i = &self.inner;
        Session::start(
            &i.machine,
            &i.limits,
            keep,
            served_before,
            plugin,
            aggregate_type,
            aggregate_id,
        )
    }

    /// With warm instances: makes the first one and enters it once (`state` of an
    /// empty aggregate), so that whatever a reducer's first call costs (the start
    /// of a JavaScript or Python interpreter) is paid at load, not by the first
    /// request. A failure here is not reported: the reducer fails the same way when
    /// it is used, with the aggregate named.
    fn warm_up(&self, plugin: &Arc<Plugin>) {
        if self.inner.keep == Keep::No || plugin.idle_instances() > 0 {
            return;
        }
        if let Ok(mut s) = self.session(plugin.clone(), "streamfold", "warm-up") {
            let _ = s.state();
        }
    }
}
