//! How a failure is reported: which plugin, which aggregate or batch, which event,
//! why. [`ReducerFailure`] for a reducer's session, [`ProjectionFailure`] for a
//! projection's batch; both share [`FailureCause`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::plugin::PluginInfo;
use crate::projection::ProjectionInfo;

/// A reducer's failure in one session (a replay, say). Stored events are never
/// touched; the host goes on serving. Every text in it that came from the reducer
/// (its messages, a trap's backtrace) is already bounded and escaped.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReducerFailure {
    /// The plugin that failed.
    pub plugin: PluginInfo,
    /// The aggregate being replayed, `type/id`.
    pub aggregate: String,
    /// The event it failed on: exact when the reducer named it, otherwise the
    /// batch it was working on.
    pub event: Option<FailedEvent>,
    /// What went wrong.
    pub cause: FailureCause,
}

/// The event (or batch of events) a reducer failed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailedEvent {
    /// The reducer named this event.
    Event {
        /// Its revision in the aggregate's history.
        revision: u64,
        /// Its id.
        event_id: String,
        /// Its type.
        event_type: String,
    },
    /// The reducer trapped or ran out of budget somewhere in this batch.
    Batch {
        /// Revision of the batch's first event.
        first_revision: u64,
        /// Revision of the batch's last event.
        last_revision: u64,
    },
}

/// The plugin's own verdict, from the WIT `error-kind` (the reducer's or the
/// projection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RejectionKind {
    /// An event's data is not what the reducer expects.
    InvalidData,
    /// The snapshot could not be restored.
    InvalidSnapshot,
    /// The event breaks a rule of the aggregate.
    RuleViolation,
    /// A projection read a document of its read model that it cannot use.
    InvalidDocument,
}

/// Why a replay failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailureCause {
    /// The reducer returned its typed error.
    Rejected {
        /// Its kind.
        reason: RejectionKind,
        /// Its message.
        message: String,
    },
    /// The reducer trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap {
        /// Wasmtime's description, with the guest backtrace when there is one.
        message: String,
    },
    /// A call ran longer than its time limit (an endless loop, say). The limit is
    /// wall-clock time (an epoch deadline), not CPU time.
    Timeout {
        /// The budget.
        #[serde(with = "millis")]
        #[cfg_attr(feature = "openapi", schema(value_type = u64))]
        limit: Duration,
    },
    /// The reducer tried to grow its memory past the limit.
    OutOfMemory {
        /// The limit in bytes.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// The reducer answered something the contract forbids (state that is not
    /// JSON, an error naming an event that is not in the batch; for a projection,
    /// a `put` of text that is not JSON, or a key with control characters).
    BadOutput {
        /// What was wrong.
        message: String,
    },
    /// A projection's batch broke a bound on what it may read or write (see
    /// [`ReadModelLimits`](crate::ReadModelLimits)): too many writes or reads, too
    /// many bytes, a key or document too large. Nothing of the batch is written.
    WriteLimit {
        /// Which bound, and by how much.
        message: String,
    },
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

impl ReducerFailure {
    /// Whether the reducer refused an event (or snapshot) with its typed error.
    pub fn is_rejection(&self) -> bool {
        matches!(self.cause, FailureCause::Rejected { .. })
    }
    /// Whether the reducer trapped.
    pub fn is_trap(&self) -> bool {
        matches!(self.cause, FailureCause::Trap { .. })
    }
    /// Whether the reducer ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.cause, FailureCause::Timeout { .. })
    }
    /// Whether the reducer hit the memory limit.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self.cause, FailureCause::OutOfMemory { .. })
    }
}

impl fmt::Display for ReducerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reducer {} failed replaying {}",
            self.plugin.label(),
            self.aggregate
        )?;
        match &self.event {
            Some(FailedEvent::Event {
                revision,
                event_id,
                event_type,
            }) => write!(f, " at revision {revision} ({event_type} {event_id})")?,
            Some(FailedEvent::Batch {
                first_revision,
                last_revision,
            }) if first_revision == last_revision => write!(f, " at revision {first_revision}")?,
            Some(FailedEvent::Batch {
                first_revision,
                last_revision,
            }) => write!(
                f,
                " in the batch of revisions {first_revision}..={last_revision}"
            )?,
            None => {}
        }
        self.cause.fmt(f)
    }
}

/// `: why`, as the failures' messages end.
impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Rejected { reason, message } => {
                let reason = match reason {
                    RejectionKind::InvalidData => "invalid event data",
                    RejectionKind::InvalidSnapshot => "invalid snapshot",
                    RejectionKind::RuleViolation => "rule violation",
                    RejectionKind::InvalidDocument => "invalid read-model document",
                };
                write!(f, ": {reason}: {message}")
            }
            FailureCause::Trap { message } => write!(f, ": trapped: {message}"),
            FailureCause::Timeout { limit } => {
                write!(
                    f,
                    ": ran past its time limit of {limit:?} (wall-clock) for one call (endless loop?)"
                )
            }
            FailureCause::OutOfMemory { limit, requested } => write!(
                f,
                ": memory limit exceeded (asked for {requested} bytes, limit {limit} bytes)"
            ),
            FailureCause::BadOutput { message } => write!(f, ": broke the contract: {message}"),
            FailureCause::WriteLimit { message } => {
                write!(f, ": over a read-model limit: {message}")
            }
        }
    }
}

impl std::error::Error for ReducerFailure {}

/// A projection's failure on one batch. Nothing of the batch is written; stored
/// events are never touched; the host goes on serving. Every text in it that came
/// from the projection (its messages, a trap's backtrace, keys) is already bounded
/// and escaped.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionFailure {
    /// The projection that failed.
    pub projection: ProjectionInfo,
    /// The event it failed on: exact when the projection named it, otherwise the
    /// batch it was working on.
    pub event: Option<FailedProjectionEvent>,
    /// What went wrong.
    pub cause: FailureCause,
}

/// The event (or batch of events) a projection failed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailedProjectionEvent {
    /// The projection named this event.
    Event {
        /// Its index in the batch the caller passed (0-based, counting the events
        /// the projection does not handle too).
        index: usize,
        /// The type of its aggregate.
        aggregate_type: String,
        /// The id of its aggregate.
        aggregate_id: String,
        /// Its position in the category (the stream entry id).
        position: String,
        /// Its id.
        event_id: String,
        /// Its type.
        event_type: String,
    },
    /// The projection trapped, ran out of budget or broke a bound somewhere in
    /// this batch.
    Batch {
        /// Position of the batch's first event.
        first_position: String,
        /// Position of the batch's last event.
        last_position: String,
        /// Events in the batch the caller passed.
        events: usize,
    },
}

impl ProjectionFailure {
    /// Whether the projection refused an event with its typed error.
    pub fn is_rejection(&self) -> bool {
        matches!(self.cause, FailureCause::Rejected { .. })
    }
    /// Whether the projection trapped.
    pub fn is_trap(&self) -> bool {
        matches!(self.cause, FailureCause::Trap { .. })
    }
    /// Whether the projection ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.cause, FailureCause::Timeout { .. })
    }
    /// Whether the projection hit the memory limit.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self.cause, FailureCause::OutOfMemory { .. })
    }
    /// Whether the batch broke a bound of [`ReadModelLimits`](crate::ReadModelLimits).
    pub fn is_write_limit(&self) -> bool {
        matches!(self.cause, FailureCause::WriteLimit { .. })
    }
}

impl fmt::Display for ProjectionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projection {} failed", self.projection.label())?;
        match &self.event {
            Some(FailedProjectionEvent::Event {
                index,
                aggregate_type,
                aggregate_id,
                position,
                event_id,
                event_type,
            }) => write!(
                f,
                " at event {index} of its batch ({event_type} {event_id} of {aggregate_type}/{aggregate_id}, position {position})"
            )?,
            Some(FailedProjectionEvent::Batch {
                first_position,
                last_position,
                events,
            }) => write!(
                f,
                " in the batch of {events} events at positions {first_position}..={last_position}"
            )?,
            None => {}
        }
        self.cause.fmt(f)
    }
}

impl std::error::Error for ProjectionFailure {}
