//! A reducer session: one instance folding one aggregate.
//!
//! Start it (a fresh instance and a new `aggregate` resource), [`restore`] a
//! snapshot if there is one, [`apply`] pages of events as they come, take the
//! [`state`] whenever it is wanted, and drop it. Replay is "pages into a session";
//! a live subscription keeps one open and feeds it events as they are appended.
//!
//! The session owns everything that makes a failure clear: the limits (re-armed
//! for every call), the attribution (the event the reducer named, or the batch it
//! was in), and the log context (reducer log lines are tracing events carrying the
//! plugin and the aggregate). After any failure the instance is never entered
//! again: every later call fails at once.
//!
//! [`restore`]: Session::restore
//! [`apply`]: Session::apply
//! [`state`]: Session::state

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Func, ResourceAny};

use crate::bindings::{self, ErrorKind, EventArg, ReducerError};
use crate::engine::{self, HostState, Limits, LogContext};
use crate::error::{Error, Result};
use crate::failure::{FailedEvent, FailureCause, ReducerFailure, RejectionKind};
use crate::plugin::Plugin;
use crate::text;

/// One event handed to a session, borrowed from wherever the caller keeps it (a
/// page of the event store, say): no copy is made on the way into the reducer.
#[derive(Debug, Clone, Copy)]
pub struct SessionEvent<'a> {
    /// Its 1-based position in the aggregate's history.
    pub revision: u64,
    /// Its stream position (kept as the session's position once applied).
    pub position: &'a str,
    /// Its id, for error messages.
    pub event_id: &'a str,
    /// Its type; events of types the reducer does not handle are skipped.
    pub event_type: &'a str,
    /// Its payload, JSON text.
    pub data: &'a str,
    /// When it was appended (RFC 3339).
    pub timestamp: &'a str,
    /// Its schema version (`"1"` unless the writer said otherwise).
    pub version: &'a str,
}

/// One reducer instance: its store (memory, tables, host state) and its exports.
/// Between sessions it waits in its plugin's idle list.
pub(crate) struct Instance {
    store: Store<HostState>,
    exports: bindings::Plugin,
    apply: Func,
    /// Sessions started on it, this one included.
    sessions: u32,
}

const IN_USE: &str = "a session has its instance until it ends";

impl Instance {
    /// Folds an empty throwaway aggregate (constructor, `state`, destructor), so
    /// that the instance has served another aggregate before the real one.
    fn serve_throwaway(&mut self, limits: &Limits, plugin: &Plugin, aggregate: &str) -> Result<()> {
        self.sessions += 1;
        engine::arm_deadline(&mut self.store, limits);
        let guest = self.exports.streamfold_reducer_reducer().aggregate();
        let run = guest
            .call_constructor(&mut self.store, "streamfold-throwaway")
            .and_then(|h| {
                engine::arm_deadline(&mut self.store, limits);
                let _ = guest.call_state(&mut self.store, h)?;
                engine::arm_deadline(&mut self.store, limits);
                h.resource_drop(&mut self.store)
            });
        run.map_err(|e| {
            Error::from(ReducerFailure {
                plugin: plugin.info().clone(),
                aggregate: aggregate.to_owned(),
                event: None,
                cause: classify(&self.store, limits, e),
            })
        })
    }
}

/// Whether a session's instance may serve later sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Drop it with the session.
    No,
    /// Return it to the plugin's idle list (at most `max_idle` kept) unless it has
    /// served `max_sessions`.
    Warm { max_sessions: u32, max_idle: usize },
}

/// A reducer instance folding one aggregate. Not `Sync`: one caller at a time,
/// on a thread that may block (reducer calls are CPU-bound).
///
/// The instance is fresh, or warm: one that served other aggregates before (each
/// session has its own `aggregate` resource, and its own log budget). After any
/// failure (a trap, a limit, the reducer's own error, output the contract
/// forbids) the instance is never entered again, and never reused.
pub struct Session {
    plugin: Arc<Plugin>,
    /// Taken out only when the session ends.
    instance: Option<Instance>,
    handle: ResourceAny,
    limits: Limits,
    keep: Keep,
    aggregate: String,
    revision: u64,
    position: String,
    events_applied: u64,
    failed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("plugin", &self.plugin.info().label())
            .field("aggregate", &self.aggregate)
            .field("revision", &self.revision)
            .field("warm", &self.is_warm())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session; with `served_before`, on an instance that has served
    /// another aggregate first (a new one serves a throwaway aggregate before).
    pub(crate) fn start(
        machine: &engine::Machine,
        limits: &Limits,
        keep: Keep,
        served_before: bool,
        plugin: Arc<Plugin>,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Session> {
        let aggregate = format!("{aggregate_type}/{aggregate_id}");
        let log = LogContext {
            plugin: plugin.info().label(),
            aggregate: aggregate.clone(),
            max_bytes: limits.log_line_bytes,
            lines_left: limits.log_lines_per_replay,
            dropped: 0,
        };
        let warm = match keep {
            Keep::No => None,
            Keep::Warm { .. } => plugin.take_idle(),
        };
        let mut instance = match warm {
            Some(mut instance) => {
                instance.store.data_mut().start_session(log);
                instance
            }
            None => {
                let mut fresh = Self::instantiate(machine, limits, &plugin, &aggregate, log)?;
                if served_before {
                    fresh.serve_throwaway(limits, &plugin, &aggregate)?;
                }
                fresh
            }
        };
        instance.sessions += 1;
        engine::arm_deadline(&mut instance.store, limits);
        let handle = instance
            .exports
            .streamfold_reducer_reducer()
            .aggregate()
            .call_constructor(&mut instance.store, aggregate_id);
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                return Err(Error::from(ReducerFailure {
                    plugin: plugin.info().clone(),
                    aggregate,
                    event: None,
                    cause: classify(&instance.store, limits, e),
                }));
            }
        };
        Ok(Session {
            plugin,
            instance: Some(instance),
            handle,
            limits: limits.clone(),
            keep,
            aggregate,
            revision: 0,
            position: String::new(),
            events_applied: 0,
            failed: false,
        })
    }

    fn instantiate(
        machine: &engine::Machine,
        limits: &Limits,
        plugin: &Arc<Plugin>,
        aggregate: &str,
        log: LogContext,
    ) -> Result<Instance> {
        let mut store = engine::store(machine, limits, log);
        plugin.made_instance();
        let started = plugin.pre().instantiate(&mut store).and_then(|i| {
            let exports = plugin.indices().load(&mut store, &i)?;
            Ok((i, exports))
        });
        let (instance, exports) = started.map_err(|e| {
            Error::from(ReducerFailure {
                plugin: plugin.info().clone(),
                aggregate: aggregate.to_owned(),
                event: None,
                cause: classify(&store, limits, e),
            })
        })?;
        let Some(apply) = instance.get_func(&mut store, plugin.apply_export()) else {
            return Err(Error::from(ReducerFailure {
                plugin: plugin.info().clone(),
                aggregate: aggregate.to_owned(),
                event: None,
                cause: FailureCause::BadOutput {
                    message: "its instance has no aggregate.apply".to_owned(),
                },
            }));
        };
        Ok(Instance {
            store,
            exports,
            apply,
            sessions: 0,
        })
    }

    /// Whether this session runs on an instance that served other sessions before.
    pub fn is_warm(&self) -> bool {
        self.instance.as_ref().is_some_and(|i| i.sessions > 1)
    }

    /// The plugin this session runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The revision of the last event applied (or restored): 0 before any.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The stream position of that event (empty before any).
    pub fn position(&self) -> &str {
        &self.position
    }

    /// Events the reducer was handed so far (the others were skipped).
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// The wall-clock budget of each call into the reducer: the sandbox's
    /// [`Limits::call_timeout`] unless set otherwise.
    pub fn call_timeout(&self) -> std::time::Duration {
        self.limits.call_timeout
    }

    /// Sets the budget of the calls that follow (a caller that tries a short budget
    /// first, on a thread that must not block for long, then sets it back).
    pub fn set_call_timeout(&mut self, timeout: std::time::Duration) {
        self.limits.call_timeout = timeout;
    }

    /// Hands the reducer a state it serialized earlier (a snapshot), covering the
    /// history up to `revision` at stream `position`.
    pub fn restore(&mut self, state: &str, revision: u64, position: &str) -> Result<()> {
        self.check_usable()?;
        let inst = self.instance.as_mut().expect(IN_USE);
        engine::arm_deadline(&mut inst.store, &self.limits);
        let guest = inst.exports.streamfold_reducer_reducer().aggregate();
        match guest.call_restore(&mut inst.store, self.handle, state) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.fail(None, rejection(e))),
            Err(e) => return Err(self.trap(None, e)),
        }
        self.revision = revision;
        self.position.clear();
        self.position.push_str(position);
        Ok(())
    }

    /// Folds `events` (consecutive, in history order) into the state, as one call
    /// into the reducer with the events of the types it handles. Returns how many it
    /// was handed. On a failure nothing is kept: the session is done.
    pub fn apply<'a>(
        &mut self,
        events: impl IntoIterator<Item = SessionEvent<'a>>,
    ) -> Result<usize> {
        self.check_usable()?;
        let events = events.into_iter();
        let mut batch = Vec::with_capacity(events.size_hint().0);
        let mut ids = Vec::with_capacity(events.size_hint().0);
        let mut last = None;
        for e in events {
            last = Some((e.revision, e.position));
            if self.plugin.handles(e.event_type) {
                ids.push(e.event_id);
                batch.push(EventArg {
                    revision: e.revision,
                    event_type: e.event_type,
                    data: e.data,
                    timestamp: e.timestamp,
                    schema_version: e.version.parse().unwrap_or(1),
                });
            }
        }
        if !batch.is_empty() {
            self.call_apply(&batch, &ids)?;
            self.events_applied += batch.len() as u64;
        }
        if let Some((revision, position)) = last {
            self.revision = revision;
            self.position.clear();
            self.position.push_str(position);
        }
        Ok(batch.len())
    }

    fn call_apply(&mut self, batch: &[EventArg<'_>], ids: &[&str]) -> Result<()> {
        let inst = self.instance.as_mut().expect(IN_USE);
        engine::arm_deadline(&mut inst.store, &self.limits);
        let whole_batch = FailedEvent::Batch {
            first_revision: batch[0].revision,
            last_revision: batch[batch.len() - 1].revision,
        };
        let call = inst
            .apply
            .typed::<(ResourceAny, &[EventArg<'_>]), (std::result::Result<(), ReducerError>,)>(
                &inst.store,
            )
            .and_then(|f| f.call(&mut inst.store, (self.handle, batch)))
            .map(|(r,)| r);
        let e = match call {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(e) => return Err(self.trap(Some(whole_batch), e)),
        };
        let event = match e.event_index.map(|i| i as usize) {
            Some(i) if i < batch.len() => FailedEvent::Event {
                revision: batch[i].revision,
                event_id: ids[i].to_owned(),
                event_type: batch[i].event_type.to_owned(),
            },
            Some(i) => {
                let message = format!(
                    "its error names event {i} of a batch of {} ({:?}: {})",
                    batch.len(),
                    e.kind,
                    text::shown(&e.message, text::MESSAGE_BYTES)
                );
                return Err(self.fail(Some(whole_batch), FailureCause::BadOutput { message }));
            }
            None => whole_batch,
        };
        Err(self.fail(Some(event), rejection(e)))
    }

    /// The state as the reducer serializes it: checked to be one JSON document.
    pub fn state(&mut self) -> Result<String> {
        self.check_usable()?;
        let inst = self.instance.as_mut().expect(IN_USE);
        engine::arm_deadline(&mut inst.store, &self.limits);
        let guest = inst.exports.streamfold_reducer_reducer().aggregate();
        let state = match guest.call_state(&mut inst.store, self.handle) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.fail(None, rejection(e))),
            Err(e) => return Err(self.trap(None, e)),
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&state) {
            let message = format!("`state` returned text that is not JSON ({e})");
            return Err(self.fail(None, FailureCause::BadOutput { message }));
        }
        Ok(state)
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::engine(anyhow::anyhow!(
                "the session of {} for {} already failed; its instance is never entered again",
                self.plugin.info().label(),
                self.aggregate
            )));
        }
        Ok(())
    }

    fn fail(&mut self, event: Option<FailedEvent>, cause: FailureCause) -> Error {
        self.failed = true;
        Error::from(ReducerFailure {
            plugin: self.plugin.info().clone(),
            aggregate: self.aggregate.clone(),
            event,
            cause,
        })
    }

    fn trap(&mut self, event: Option<FailedEvent>, e: wasmtime::Error) -> Error {
        let cause = classify(
            &self.instance.as_ref().expect(IN_USE).store,
            &self.limits,
            e,
        );
        self.fail(event, cause)
    }
}

impl Session {
    /// Ends the session: its `aggregate` resource is dropped (the guest's
    /// destructor runs) and a healthy instance goes back to the idle list.
    fn finish(&mut self) {
        let Some(mut instance) = self.instance.take() else {
            return;
        };
        let dropped = instance.store.data().dropped_log_lines();
        if dropped > 0 {
            tracing::warn!(
                target: "streamfold::reducer",
                plugin = %self.plugin.info().label(),
                aggregate = %self.aggregate,
                "dropped {dropped} log lines over the limit of {} per session",
                self.limits.log_lines_per_replay
            );
        }
        let Keep::Warm {
            max_sessions,
            max_idle,
        } = self.keep
        else {
            return;
        };
        if self.failed || instance.sessions >= max_sessions {
            return;
        }
        engine::arm_deadline(&mut instance.store, &self.limits);
        if self.handle.resource_drop(&mut instance.store).is_err()
            || instance.store.data().memory_limit_hit().is_some()
        {
            return; // the destructor failed: the instance goes with the session
        }
        self.plugin.keep_idle(instance, max_idle);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}

fn rejection(e: ReducerError) -> FailureCause {
    FailureCause::Rejected {
        reason: match e.kind {
            ErrorKind::InvalidData => RejectionKind::InvalidData,
            ErrorKind::InvalidSnapshot => RejectionKind::InvalidSnapshot,
            ErrorKind::RuleViolation => RejectionKind::RuleViolation,
        },
        message: text::shown(&e.message, text::MESSAGE_BYTES),
    }
}

/// Tells a limit from a trap: the memory limiter records what it refused, and an
/// epoch deadline surfaces as `Trap::Interrupt`. A trap's text names functions of
/// the component (its backtrace): untrusted, so bounded and escaped.
pub(crate) fn classify<X>(
    store: &Store<HostState<X>>,
    limits: &Limits,
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
        message: text::shown(&format!("{e:#}"), text::MESSAGE_BYTES),
    }
}
