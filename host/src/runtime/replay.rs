//! Replay: latest valid snapshot + the rest of the history, read in pages and
//! folded in batches by a fresh reducer instance.
//!
//! Reading and folding overlap: a task fetches page N+1 from Redis while the
//! reducer (on tokio's blocking pool, since Wasmtime calls are synchronous)
//! folds page N. The channel between them holds two pages, which bounds memory
//! however long the history is.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::Runtime;
use super::bindings::{ErrorKind, EventArg, ReducerError};
use super::failure::{FailedEvent, FailureCause, ReducerFailure, RejectionKind};
use super::plugin::{Plugin, PluginInfo};
use super::sandbox::{self, HostState, LogContext};
use crate::error::{Error, Result};
use crate::store::{Page, ReadOptions, Snapshot};

/// What to replay, and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    at_revision: Option<u64>,
    as_of: Option<DateTime<Utc>>,
    use_snapshots: bool,
    plugin: Option<Arc<Plugin>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            at_revision: None,
            as_of: None,
            use_snapshots: true,
            plugin: None,
        }
    }
}

impl ReplayOptions {
    /// The state just after the event with this revision (time travel by revision).
    pub fn at_revision(mut self, revision: u64) -> Self {
        self.at_revision = Some(revision);
        self
    }
    /// The state as of this instant: events appended at or before it (time travel by time).
    pub fn as_of(mut self, t: DateTime<Utc>) -> Self {
        self.as_of = Some(t);
        self
    }
    /// Whether to start from a snapshot (default: yes). Off replays every event,
    /// which is how to check a snapshot, or a reducer, from scratch.
    pub fn use_snapshots(mut self, on: bool) -> Self {
        self.use_snapshots = on;
        self
    }
    /// Replays through this plugin instead of the type's active one (to compare a
    /// candidate with the active version, say).
    pub fn plugin(mut self, plugin: Arc<Plugin>) -> Self {
        self.plugin = Some(plugin);
        self
    }

    fn time_travel(&self) -> bool {
        self.at_revision.is_some() || self.as_of.is_some()
    }
}

/// A replayed state.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The state, exactly as the reducer serialized it (a JSON document).
    pub state: String,
    /// The revision of the last event the state includes.
    pub revision: u64,
    /// The stream position of that event.
    pub position: String,
    /// The reducer that made it.
    pub plugin: PluginInfo,
    /// The snapshot the replay started from, if any (its revision).
    pub snapshot_revision: Option<u64>,
    /// Events read from Redis after the snapshot.
    pub events_read: u64,
    /// Of those, the events the reducer handles (the others were skipped).
    pub events_applied: u64,
    /// Whether this replay saved a new snapshot.
    pub snapshot_saved: bool,
}

pub(super) async fn replay(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    options: ReplayOptions,
) -> Result<Replayed> {
    let plugin = match &options.plugin {
        Some(p) => p.clone(),
        None => rt.active_plugin(aggregate_type).await?,
    };
    if plugin.info().aggregate_type != aggregate_type {
        return Err(Error::invalid(format!(
            "reducer {} folds {:?} aggregates, not {aggregate_type:?}",
            plugin.info().label(),
            plugin.info().aggregate_type
        )));
    }
    let store = rt.store();
    let snapshot = if options.use_snapshots {
        store
            .load_snapshot(aggregate_type, aggregate_id, &plugin.info().digest)
            .await?
            .filter(|s| options.at_revision.is_none_or(|r| s.revision <= r))
            .filter(|s| {
                options
                    .as_of
                    .is_none_or(|t| position_millis(&s.position) <= t.timestamp_millis())
            })
    } else {
        None
    };

    let mut read = ReadOptions::default();
    if let Some(s) = &snapshot {
        read = read.after(s.position.clone(), s.revision);
    }
    if let Some(r) = options.at_revision {
        read = read.to_revision(r);
    }
    if let Some(t) = options.as_of {
        read = read.as_of(t);
    }
    let mut history = store.history(aggregate_type, aggregate_id, read);
    let (tx, rx) = mpsc::channel::<Result<Page>>(2);
    let fetch = tokio::spawn(async move {
        loop {
            let page = history.next_page().await;
            let last = !matches!(page, Ok(Some(_)));
            let page = page.transpose();
            match page {
                Some(page) => {
                    if tx.send(page).await.is_err() || last {
                        break;
                    }
                }
                None => break,
            }
        }
    });

    let job = Fold {
        plugin: plugin.clone(),
        engine: rt.engine().clone(),
        limits: rt.config().limits.clone(),
        log: LogContext {
            plugin: plugin.info().label(),
            aggregate: format!("{aggregate_type}/{aggregate_id}"),
            sink: rt.config().log_sink.clone(),
            max_bytes: rt.config().limits.log_line_bytes,
            lines_left: rt.config().limits.log_lines_per_replay,
            dropped: 0,
        },
        aggregate_id: aggregate_id.to_string(),
        snapshot: snapshot.clone(),
    };
    let folded = tokio::task::spawn_blocking(move || job.run(rx))
        .await
        .map_err(|e| Error::Engine(anyhow::anyhow!("replay task failed: {e}")));
    fetch.abort();
    let folded = folded??;

    if folded.events_read == 0 && snapshot.is_none() {
        return Err(Error::NotFound(
            match (options.at_revision, options.as_of) {
                (_, Some(t)) => format!(
                    "aggregate {aggregate_type}/{aggregate_id} as of {t} (no events by then)"
                ),
                _ => format!("aggregate {aggregate_type}/{aggregate_id} (no events)"),
            },
        ));
    }
    if let Some(r) = options.at_revision.filter(|r| folded.revision < *r) {
        return Err(Error::NotFound(format!(
            "revision {r} of {aggregate_type}/{aggregate_id} (its last revision is {})",
            folded.revision
        )));
    }

    let mut replayed = Replayed {
        state: folded.state,
        revision: folded.revision,
        position: folded.position,
        plugin: plugin.info().clone(),
        snapshot_revision: snapshot.as_ref().map(|s| s.revision),
        events_read: folded.events_read,
        events_applied: folded.events_applied,
        snapshot_saved: false,
    };
    let since_snapshot = replayed.revision - replayed.snapshot_revision.unwrap_or(0);
    if !options.time_travel()
        && options.plugin.is_none()
        && rt
            .config()
            .snapshot_every
            .is_some_and(|n| since_snapshot >= n)
    {
        save_snapshot(rt, aggregate_type, aggregate_id, &replayed).await?;
        replayed.snapshot_saved = true;
    }
    Ok(replayed)
}

pub(super) async fn save_snapshot(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    replayed: &Replayed,
) -> Result<()> {
    let snapshot = Snapshot {
        state: replayed.state.clone(),
        revision: replayed.revision,
        position: replayed.position.clone(),
        reducer_digest: replayed.plugin.digest.clone(),
        created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    rt.store()
        .save_snapshot(aggregate_type, aggregate_id, &snapshot)
        .await
}

/// The milliseconds part of a stream id (`1700000000000-3` → 1700000000000).
fn position_millis(position: &str) -> i64 {
    position
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(i64::MAX)
}

struct Fold {
    plugin: Arc<Plugin>,
    engine: wasmtime::Engine,
    limits: sandbox::Limits,
    log: LogContext,
    aggregate_id: String,
    snapshot: Option<Snapshot>,
}

struct Folded {
    state: String,
    revision: u64,
    position: String,
    events_read: u64,
    events_applied: u64,
}

impl Fold {
    /// Runs on a blocking thread: instantiate, restore, apply every page, serialize.
    fn run(self, mut pages: mpsc::Receiver<Result<Page>>) -> Result<Folded> {
        let aggregate = self.log.aggregate.clone();
        let mut store = sandbox::store(&self.engine, &self.limits, self.log);
        let fail = |event: Option<FailedEvent>, cause: FailureCause| {
            Error::Reducer(Box::new(ReducerFailure {
                plugin: self.plugin.info().clone(),
                aggregate: aggregate.clone(),
                event,
                cause,
            }))
        };
        let trap = |store: &Store<HostState>, event: Option<FailedEvent>, e: wasmtime::Error| {
            let cause = classify(store, &self.limits, e);
            fail(event, cause)
        };

        let (instance, exports) = match self.plugin.pre().instantiate(&mut store).and_then(|i| {
            let exports = self.plugin.indices().load(&mut store, &i)?;
            Ok((i, exports))
        }) {
            Ok(i) => i,
            Err(e) => return Err(trap(&store, None, e)),
        };
        let guest = exports.streamfold_reducer_reducer().aggregate();
        sandbox::arm_deadline(&mut store, &self.limits);
        let handle = guest
            .call_constructor(&mut store, &self.aggregate_id)
            .map_err(|e| trap(&store, None, e))?;

        let mut revision = 0;
        let mut position = String::new();
        if let Some(s) = &self.snapshot {
            revision = s.revision;
            position = s.position.clone();
            sandbox::arm_deadline(&mut store, &self.limits);
            match guest.call_restore(&mut store, handle, &s.state) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fail(None, rejection(e))),
                Err(e) => return Err(trap(&store, None, e)),
            }
        }

        let apply = instance
            .get_func(&mut store, self.plugin.apply_export())
            .ok_or_else(|| {
                fail(
                    None,
                    FailureCause::BadOutput {
                        message: "its instance has no aggregate.apply".to_owned(),
                    },
                )
            })?;
        let mut events_read = 0u64;
        let mut events_applied = 0u64;
        while let Some(page) = pages.blocking_recv() {
            let page = page?;
            events_read += page.len() as u64;
            if let Some(last) = page.last() {
                revision = last.revision;
                position.clear();
                position.push_str(last.position);
            }
            let mut batch = Vec::with_capacity(page.len());
            for e in page.iter() {
                if self.plugin.handles(e.event_type) {
                    batch.push(EventArg {
                        revision: e.revision,
                        event_type: e.event_type,
                        data: e.data,
                        timestamp: e.timestamp,
                        schema_version: e.version.parse().unwrap_or(1),
                    });
                }
            }
            if batch.is_empty() {
                continue;
            }
            events_applied += batch.len() as u64;
            sandbox::arm_deadline(&mut store, &self.limits);
            let whole_batch = || FailedEvent::Batch {
                first_revision: batch[0].revision,
                last_revision: batch[batch.len() - 1].revision,
            };
            let call = apply
                .typed::<(ResourceAny, &[EventArg<'_>]), (std::result::Result<(), ReducerError>,)>(
                    &store,
                )
                .and_then(|f| f.call(&mut store, (handle, &batch)))
                .map(|(r,)| r);
            match call {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let event = match e.event_index.map(|i| i as usize) {
                        Some(i) if i < batch.len() => Some(FailedEvent::Event {
                            revision: batch[i].revision,
                            // The batch skips unhandled types: its i-th is the
                            // page's i-th handled event.
                            event_id: page
                                .iter()
                                .filter(|e| self.plugin.handles(e.event_type))
                                .nth(i)
                                .map(|e| e.event_id.to_owned())
                                .unwrap_or_default(),
                            event_type: batch[i].event_type.to_owned(),
                        }),
                        Some(i) => {
                            return Err(fail(
                                Some(whole_batch()),
                                FailureCause::BadOutput {
                                    message: format!(
                                        "its error names event {i} of a batch of {} ({:?}: {})",
                                        batch.len(),
                                        e.kind,
                                        e.message
                                    ),
                                },
                            ));
                        }
                        None => Some(whole_batch()),
                    };
                    return Err(fail(event, rejection(e)));
                }
                Err(e) => return Err(trap(&store, Some(whole_batch()), e)),
            }
        }

        sandbox::arm_deadline(&mut store, &self.limits);
        let state = match guest.call_state(&mut store, handle) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(None, rejection(e))),
            Err(e) => return Err(trap(&store, None, e)),
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&state) {
            return Err(fail(
                None,
                FailureCause::BadOutput {
                    message: format!("`state` returned text that is not JSON ({e})"),
                },
            ));
        }
        let dropped = store.data().dropped_log_lines();
        if dropped > 0 {
            eprintln!(
                "[{} {aggregate}] dropped {dropped} log lines over the per-replay limit",
                self.plugin.info().label()
            );
        }
        Ok(Folded {
            state,
            revision,
            position,
            events_read,
            events_applied,
        })
    }
}

fn rejection(e: ReducerError) -> FailureCause {
    FailureCause::Rejected {
        reason: match e.kind {
            ErrorKind::InvalidData => RejectionKind::InvalidData,
            ErrorKind::InvalidSnapshot => RejectionKind::InvalidSnapshot,
            ErrorKind::RuleViolation => RejectionKind::RuleViolation,
        },
        message: e.message,
    }
}

/// Tells a limit from a trap: the memory limiter records what it refused, and an
/// epoch deadline surfaces as `Trap::Interrupt`.
fn classify(
    store: &Store<HostState>,
    limits: &sandbox::Limits,
    e: wasmtime::Error,
) -> FailureCause {
    if let Some(requested) = store.data().memory_limit_hit() {
        return FailureCause::OutOfMemory {
            limit: limits.memory_bytes,
            requested,
        };
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return FailureCause::Timeout {
            limit: limits.call_timeout,
        };
    }
    FailureCause::Trap {
        message: format!("{e:#}"),
    }
}
