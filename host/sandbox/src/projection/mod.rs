//! Projections: components of the world `projection-plugin` of
//! `wit/projection/projection.wit`, which fold whole categories into a read model.
//!
//! [`Projection::apply_batch`] runs one batch on a fresh instance (a projection
//! keeps no state between batches, so nothing is lost, and nothing one batch did
//! can reach the next): the events it handles go in as one `apply` call; its
//! `get` calls are answered from the batch's own writes first, then from the
//! caller's [`DocumentSource`]; its `put` and `delete` calls are checked and
//! buffered. On success the caller gets the final write set ([`BatchWrites`]) to
//! commit; on any failure nothing, and an [`Error`] naming the projection and the
//! event. This module knows nothing of Redis: the runtime commits the writes.

mod batch;
mod bindings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentExportIndex, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::code::{self, PluginKind};
use crate::engine::{self, HostState, Limits, LogContext};
use crate::error::{Error, Result};
use crate::failure::{FailedProjectionEvent, FailureCause, ProjectionFailure, RejectionKind};
use crate::info::InfoCheck;
use crate::plugin::short_digest;
use crate::session::classify;
use crate::text;

use self::batch::{Batch, Stop};
use self::bindings::{ErrorKind, EventArg, ProjectionError};

/// The WIT package every projection implements, and the versions this host accepts.
pub const PROJECTION_CONTRACT: &str = "streamfold:projection@0.1.0";

/// What a projection is: what it said about itself, plus its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionInfo {
    /// The projection's name (`info.name`).
    pub name: String,
    /// Its semantic version (`info.version`).
    pub version: String,
    /// The aggregate types whose categories it reads (at least one).
    pub sources: Vec<String>,
    /// The event types it handles; empty means all.
    pub handles: Vec<String>,
    /// SHA-256 of the component's bytes, hex: the plugin's identity.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
}

impl ProjectionInfo {
    /// `name@version (sha256:0123456789ab)`: how errors and logs name a projection.
    pub fn label(&self) -> String {
        format!(
            "{}@{} ({})",
            self.name,
            self.version,
            short_digest(&self.digest)
        )
    }

    /// Always [`PluginKind::Projection`].
    pub fn kind(&self) -> PluginKind {
        PluginKind::Projection
    }
}

impl fmt::Display for ProjectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// What a failed read of the read model gives back: the source's own error.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a batch's `get` calls read the read model from, for the keys the batch has
/// not written itself: the committed documents (Redis, for the runtime; a map in
/// tests). Called on the thread that runs the batch, which may block.
///
/// Shared (`Arc`) rather than borrowed because Wasmtime's store, which holds it
/// during the call, must be `'static`.
pub trait DocumentSource: Send + Sync {
    /// The committed document under `key` (JSON text), or `None` when there is none.
    /// An error stops the batch with an [`ErrorKind::ReadModel`](crate::ErrorKind::ReadModel)
    /// error whose source is this one.
    fn get(&self, key: &str) -> std::result::Result<Option<String>, SourceError>;
}

impl DocumentSource for BTreeMap<String, String> {
    fn get(&self, key: &str) -> std::result::Result<Option<String>, SourceError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

impl DocumentSource for HashMap<String, String> {
    fn get(&self, key: &str) -> std::result::Result<Option<String>, SourceError> {
        Ok(HashMap::get(self, key).cloned())
    }
}

impl<S: DocumentSource> DocumentSource for RwLock<S> {
    fn get(&self, key: &str) -> std::result::Result<Option<String>, SourceError> {
        self.read()
            .map_err(|_| "the read model's lock is poisoned")?
            .get(key)
    }
}

impl<S: DocumentSource> DocumentSource for Mutex<S> {
    fn get(&self, key: &str) -> std::result::Result<Option<String>, SourceError> {
        self.lock()
            .map_err(|_| "the read model's lock is poisoned")?
            .get(key)
    }
}

/// One event of a category handed to a projection, borrowed from wherever the
/// caller keeps it (a page of the category feed, say).
#[derive(Debug, Clone, Copy)]
pub struct ProjectionEvent<'a> {
    /// The type of its aggregate; events of types not in the projection's
    /// `sources` are skipped.
    pub aggregate_type: &'a str,
    /// The id of its aggregate.
    pub aggregate_id: &'a str,
    /// Its 1-based position in its aggregate's history.
    pub revision: u64,
    /// Its position in its category: the stream entry id, e.g. `1733560000000-0`.
    pub position: &'a str,
    /// Its id, for error messages.
    pub event_id: &'a str,
    /// Its type; events of types the projection does not handle are skipped.
    pub event_type: &'a str,
    /// Its payload, JSON text.
    pub data: &'a str,
    /// When it was appended (RFC 3339).
    pub timestamp: &'a str,
    /// Its schema version (`"1"` unless the writer said otherwise).
    pub version: &'a str,
}

/// What a successful batch wrote: the final write set, to commit at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchWrites {
    /// Every key the batch wrote, in key order, with its last write: `Some(document)`
    /// for a `put` (checked to be JSON within the bounds), `None` for a `delete`.
    pub writes: BTreeMap<String, Option<String>>,
    /// Events handed to the projection (the others were skipped).
    pub events_applied: usize,
    /// `put` and `delete` calls made.
    pub write_calls: usize,
    /// `get` calls made.
    pub reads: usize,
    /// Bytes of the final write set: every key, and every document put.
    pub bytes: usize,
}

impl BatchWrites {
    /// Applies the writes to a map of documents (a read model in memory).
    pub fn apply_to(&self, documents: &mut BTreeMap<String, String>) {
        for (key, write) in &self.writes {
            match write {
                Some(document) => documents.insert(key.clone(), document.clone()),
                None => documents.remove(key),
            };
        }
    }
}

/// A validated, compiled projection. Cheap to share; every batch runs on a fresh
/// instance made from it.
pub struct Projection {
    info: ProjectionInfo,
    sources: HashSet<String>,
    handles: HashSet<String>,
    pre: InstancePre<HostState<Batch>>,
    /// `apply`, called with borrowed events (see `EventArg`).
    apply: ComponentExportIndex,
    machine: engine::Machine,
    limits: Limits,
    instances_made: AtomicU64,
}

impl fmt::Debug for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The linker projections are instantiated with.
pub(crate) type ProjectionLinker = Linker<HostState<Batch>>;

/// The linker every projection is instantiated with: the projection world's `host`
/// and `read-model` interfaces, and WASI with no capabilities.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<ProjectionLinker> {
    let mut linker = Linker::new(engine);
    bindings::ProjectionPlugin::add_to_linker::<HostState<Batch>, HasSelf<HostState<Batch>>>(
        &mut linker,
        |s| s,
    )?;
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// Validates `checked` (a component that exports the projection world) as a
/// projection: linked against our imports, with sane `info`.
pub(crate) fn load_checked(
    machine: &engine::Machine,
    linker: &Linker<HostState<Batch>>,
    limits: &Limits,
    checked: code::Checked,
    size: u64,
) -> Result<Arc<Projection>> {
    let export = PluginKind::Projection.export_name();
    let code::Checked {
        digest, component, ..
    } = checked;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        Error::plugin(
            None,
            format!(
                "imports something a projection may not use (only {PROJECTION_CONTRACT}'s `host` and `read-model` interfaces, and WASI with no capabilities, are provided): {}",
                text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
            ),
        )
    })?;
    let indices = bindings::ProjectionPluginIndices::new(&pre).map_err(|e| {
        Error::plugin(
            None,
            format!(
                "does not export the projection world {export} (it exports: {}): {}",
                code::exports_shown(&component, &machine.engine),
                text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
            ),
        )
    })?;
    // Ask the projection what it is, in a sandbox like any other call; the read
    // model is out of reach (`Batch::outside_apply`).
    let log = LogContext {
        plugin: short_digest(&digest),
        aggregate: "-".into(),
        max_bytes: limits.log_line_bytes,
        lines_left: 10,
        dropped: 0,
    };
    let mut store = engine::store_with(machine, limits, log, Batch::outside_apply(limits));
    let info = pre
        .instantiate(&mut store)
        .and_then(|i| indices.load(&mut store, &i))
        .and_then(|p| {
            engine::arm_deadline(&mut store, limits);
            p.streamfold_projection_projection().call_info(&mut store)
        })
        .map_err(|e| {
            Error::plugin(
                None,
                format!(
                    "failed while answering `info`: {}",
                    text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
                ),
            )
        })?;
    let info = check_info(info, digest, size)?;
    let apply = component
        .get_export_index(None, export)
        .and_then(|p| component.get_export_index(Some(&p), "apply"))
        .ok_or_else(|| Error::plugin(None, format!("{export} has no apply")))?;
    Ok(Arc::new(Projection {
        sources: info.sources.iter().cloned().collect(),
        handles: info.handles.iter().cloned().collect(),
        info,
        pre,
        apply,
        machine: machine.clone(),
        limits: limits.clone(),
        instances_made: AtomicU64::new(0),
    }))
}

fn check_info(info: bindings::Info, digest: String, size: u64) -> Result<ProjectionInfo> {
    let check = InfoCheck::new(&info.name);
    check.name(&info.name)?;
    check.version(&info.version)?;
    check.aggregate_types("info.sources", &info.sources)?;
    check.handles(&info.handles)?;
    Ok(ProjectionInfo {
        name: info.name,
        version: info.version,
        sources: info.sources,
        handles: info.handles,
        digest,
        size,
    })
}

impl Projection {
    /// What the projection said about itself, and its digest.
    pub fn info(&self) -> &ProjectionInfo {
        &self.info
    }

    /// Whether the projection wants an event of `event_type` of an aggregate of
    /// `aggregate_type`.
    pub fn wants(&self, aggregate_type: &str, event_type: &str) -> bool {
        self.sources.contains(aggregate_type)
            && (self.handles.is_empty() || self.handles.contains(event_type))
    }

    /// How many instances were made of this projection so far (one per batch that
    /// had events it wants, and one at load).
    pub fn instances_made(&self) -> u64 {
        self.instances_made.load(Ordering::Relaxed)
    }

    /// Folds one batch of events (consecutive, in category order) into the read
    /// model, as one `apply` call on a fresh instance with the events the
    /// projection wants (the others are skipped, and a batch with none makes no
    /// call). Reads go to the batch's own writes first, then to `source`.
    ///
    /// Returns the final write set to commit. On any failure nothing of the batch
    /// should be written: a [`ProjectionFailure`] (its typed error naming the
    /// event, a trap, a limit of time, memory or [`ReadModelLimits`], or output the
    /// contract forbids), or a [`ReadModel`](crate::ErrorKind::ReadModel) error
    /// when `source` failed. Blocking: call it from a thread that may block.
    ///
    /// [`ReadModelLimits`]: crate::ReadModelLimits
    pub fn apply_batch(
        &self,
        events: &[ProjectionEvent<'_>],
        source: Arc<dyn DocumentSource>,
    ) -> Result<BatchWrites> {
        let mut batch = Vec::with_capacity(events.len());
        let mut indices = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            if self.wants(e.aggregate_type, e.event_type) {
                indices.push(i);
                batch.push(EventArg {
                    aggregate_type: e.aggregate_type,
                    aggregate_id: e.aggregate_id,
                    revision: e.revision,
                    position: e.position,
                    event_type: e.event_type,
                    data: e.data,
                    timestamp: e.timestamp,
                    schema_version: e.version.parse().unwrap_or(1),
                });
            }
        }
        if batch.is_empty() {
            return Ok(BatchWrites::default());
        }
        let whole_batch = FailedProjectionEvent::Batch {
            first_position: text::shown(events[0].position, 128),
            last_position: text::shown(events[events.len() - 1].position, 128),
            events: events.len(),
        };
        let fail = |event: Option<FailedProjectionEvent>, cause: FailureCause| {
            Error::from(ProjectionFailure {
                projection: self.info.clone(),
                event,
                cause,
            })
        };

        let log = LogContext {
            plugin: self.info.label(),
            aggregate: format!(
                "batch {}..={}",
                text::shown(events[0].position, 64),
                text::shown(events[events.len() - 1].position, 64)
            ),
            max_bytes: self.limits.log_line_bytes,
            lines_left: self.limits.log_lines_per_replay,
            dropped: 0,
        };
        let mut store = engine::store_with(
            &self.machine,
            &self.limits,
            log,
            Batch::new(&self.limits, source),
        );
        self.instances_made.fetch_add(1, Ordering::Relaxed);
        let call = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| {
                let func = instance
                    .get_func(&mut store, self.apply)
                    .ok_or_else(|| wasmtime::Error::msg("the instance has no apply"))?;
                let typed = func
                    .typed::<(&[EventArg<'_>],), (std::result::Result<(), ProjectionError>,)>(
                        &store,
                    )?;
                engine::arm_deadline(&mut store, &self.limits);
                typed.call(&mut store, (&batch,))
            })
            .map(|(r,)| r);
        report_dropped_lines(&store, &self.info, &self.limits);
        let e = match call {
            Ok(Ok(())) => return Ok(store.into_data().extra.finish(batch.len())),
            Ok(Err(e)) => e,
            Err(trap) => {
                return Err(match store.data_mut().extra.stop.take() {
                    Some(Stop::Limit(message)) => {
                        fail(Some(whole_batch), FailureCause::WriteLimit { message })
                    }
                    Some(Stop::Contract(message)) => {
                        fail(Some(whole_batch), FailureCause::BadOutput { message })
                    }
                    Some(Stop::Source { key, error }) => Error::read_model(
                        format!(
                            "projection {}: reading \"{}\" from the read model failed",
                            self.info.label(),
                            text::shown(&key, 128)
                        ),
                        error,
                    ),
                    None => fail(Some(whole_batch), classify(&store, &self.limits, trap)),
                });
            }
        };
        let message = text::shown(&e.message, text::MESSAGE_BYTES);
        let reason = match e.kind {
            ErrorKind::InvalidData => RejectionKind::InvalidData,
            ErrorKind::InvalidDocument => RejectionKind::InvalidDocument,
            ErrorKind::RuleViolation => RejectionKind::RuleViolation,
        };
        let event = match e.event_index.map(|i| i as usize) {
            Some(i) if i < batch.len() => {
                let index = indices[i];
                let ev = &events[index];
                FailedProjectionEvent::Event {
                    index,
                    aggregate_type: text::shown(ev.aggregate_type, 128),
                    aggregate_id: text::shown(ev.aggregate_id, 256),
                    position: text::shown(ev.position, 128),
                    event_id: text::shown(ev.event_id, 128),
                    event_type: text::shown(ev.event_type, 128),
                }
            }
            Some(i) => {
                let message = format!(
                    "its error names event {i} of a batch of {} ({:?}: {message})",
                    batch.len(),
                    e.kind,
                );
                return Err(fail(Some(whole_batch), FailureCause::BadOutput { message }));
            }
            None => whole_batch,
        };
        Err(fail(
            Some(event),
            FailureCause::Rejected { reason, message },
        ))
    }
}

fn report_dropped_lines(store: &Store<HostState<Batch>>, info: &ProjectionInfo, limits: &Limits) {
    let dropped = store.data().dropped_log_lines();
    if dropped > 0 {
        tracing::warn!(
            target: "streamfold::projection",
            plugin = %info.label(),
            "dropped {dropped} log lines over the limit of {} per batch",
            limits.log_lines_per_replay
        );
    }
}

/// A plugin of either kind, as [`Sandbox::load_any`](crate::Sandbox::load_any)
/// loaded it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LoadedPlugin {
    /// A reducer.
    Reducer(Arc<crate::Plugin>),
    /// A projection.
    Projection(Arc<Projection>),
}

impl LoadedPlugin {
    /// Which kind it is.
    pub fn kind(&self) -> PluginKind {
        match self {
            LoadedPlugin::Reducer(_) => PluginKind::Reducer,
            LoadedPlugin::Projection(_) => PluginKind::Projection,
        }
    }

    /// Its name (`info.name`).
    pub fn name(&self) -> &str {
        match self {
            LoadedPlugin::Reducer(p) => &p.info().name,
            LoadedPlugin::Projection(p) => &p.info().name,
        }
    }

    /// Its version (`info.version`).
    pub fn version(&self) -> &str {
        match self {
            LoadedPlugin::Reducer(p) => &p.info().version,
            LoadedPlugin::Projection(p) => &p.info().version,
        }
    }

    /// Its digest (SHA-256 of its bytes, hex).
    pub fn digest(&self) -> &str {
        match self {
            LoadedPlugin::Reducer(p) => &p.info().digest,
            LoadedPlugin::Projection(p) => &p.info().digest,
        }
    }

    /// `name@version (sha256:…)`.
    pub fn label(&self) -> String {
        match self {
            LoadedPlugin::Reducer(p) => p.info().label(),
            LoadedPlugin::Projection(p) => p.info().label(),
        }
    }
}
