//! `streamfold-sandbox`: the WebAssembly host that reducers run in.
//!
//! This crate knows nothing of Redis. It takes a reducer component's bytes and
//! events as borrowed text, and gives back states and typed failures.
//!
//! # A tour
//! - [`Sandbox`]: one Wasmtime engine for the process (pooling allocator, an epoch
//!   ticker for time limits), the linker reducers are instantiated against (the
//!   contract's `host` interface, and WASI with no capabilities and frozen clocks),
//!   and the compiled-code cache on disk.
//! - [`Sandbox::load`] validates a component — a component, not a core module; the
//!   contract version this host speaks; only the imports we provide; the reducer
//!   world's exports; sane [`PluginInfo`] — and compiles it once into a [`Plugin`].
//! - [`Sandbox::session`] starts a [`Session`]: a fresh instance folding one
//!   aggregate. Restore a snapshot, apply pages of [`SessionEvent`]s, take the state.
//!   Every call is bounded by [`Limits`]; a failure is a [`ReducerFailure`] naming the
//!   plugin, the aggregate and the event.
//! - Reducer text is untrusted: messages, log lines and `info` are bounded and
//!   escaped (see [`text`]). Reducer log lines are `tracing` events with the target
//!   `streamfold::reducer` and the fields `plugin` and `aggregate`.
#![warn(missing_docs)]

mod bindings;
mod engine;
mod error;
mod failure;
mod plugin;
mod session;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::Linker;

pub use engine::Limits;
pub use error::{Error, ErrorKind, Result};
pub use failure::{FailedEvent, FailureCause, ReducerFailure, RejectionKind};
pub use plugin::{
    CONTRACT, MAX_HANDLES, MAX_INFO_NAME, MAX_INFO_VERSION, Plugin, PluginInfo, digest,
    short_digest,
};
pub use session::{Session, SessionEvent};

/// How a [`Sandbox`] is set up. Every field has a sensible default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// What a reducer may use.
    pub limits: Limits,
    /// Folder for compiled code (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling instance allocator (fast instantiation). Default: true.
    pub pooling: bool,
    /// With pooling: how much of a finished instance's linear memory stays mapped
    /// in its slot (up to 16 idle slots), so the next instance of the same reducer
    /// does not fault it in again. Default 16 MiB; 0 turns it off.
    pub keep_resident_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Limits::default(),
            cache_dir: None,
            pooling: true,
            keep_resident_bytes: 16 << 20,
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

/// The reducer host: engine, linker, limits and compiled-code cache. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    linker: Linker<engine::HostState>,
    cache: plugin::CodeCache,
    limits: Limits,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Sets up the engine (and its epoch ticker thread, which lives as long as the
    /// engine) and the linker.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        let engine = engine::engine(&config.limits, config.pooling, config.keep_resident_bytes)
            .map_err(Error::engine)?;
        engine::start_epoch_ticker(&engine);
        let linker = engine::linker(&engine).map_err(Error::engine)?;
        let cache = plugin::CodeCache::new(config.cache_dir, &engine);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                limits: config.limits,
            }),
        })
    }

    /// The limits every session runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Validates and compiles a component, or takes its compiled code from the
    /// disk cache. Blocking: compiling a large component takes seconds, so call it
    /// from a thread that may block. Never returns [`LoadSource::Memory`]: keeping
    /// loaded plugins is the caller's business.
    pub fn load(&self, bytes: &[u8]) -> Result<(Arc<Plugin>, LoadSource)> {
        let i = &self.inner;
        let (plugin, hit) = plugin::load(&i.engine, &i.linker, &i.cache, &i.limits, bytes)?;
        let source = if hit {
            LoadSource::DiskCache
        } else {
            LoadSource::Compiled
        };
        Ok((plugin, source))
    }

    /// Starts a session of `plugin` for one aggregate: a fresh instance and a new
    /// `aggregate` resource. Blocking (it enters the reducer).
    pub fn session(
        &self,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        Session::start(
            &self.inner.engine,
            &self.inner.limits,
            plugin,
            aggregate_type,
            aggregate_id,
        )
    }
}
