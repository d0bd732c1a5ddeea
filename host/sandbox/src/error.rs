//! The sandbox's error type: one opaque [`Error`] with a [`kind`](Error::kind) and
//! `is_*` checks, in the style of redis-rs.

use std::fmt;

use crate::failure::{ProjectionFailure, ReducerFailure};
use crate::projection::SourceError;

/// A result whose error is the sandbox's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A `.wasm` file that cannot be a Streamfold plugin (or not of the kind asked
    /// for): not a component, another world, an incompatible contract version, too
    /// large, nonsense in its `info`.
    InvalidPlugin,
    /// A reducer failed in a session: its own typed error, a trap, a limit it hit,
    /// or output the contract forbids. [`Error::reducer_failure`] has the details.
    Reducer,
    /// The engine could not be set up or a task running a reducer died: not the
    /// reducer's fault.
    Engine,
    /// A projection failed on a batch: its own typed error, a trap, a limit it hit
    /// (time, memory, or a bound on its read-model writes), or output the contract
    /// forbids. [`Error::projection_failure`] has the details.
    Projection,
    /// The [`DocumentSource`](crate::DocumentSource) a projection's batch read from
    /// failed (Redis down, say): not the projection's fault, worth retrying. The
    /// source's own error is this error's [`source`](std::error::Error::source).
    ReadModel,
}

/// Everything that can go wrong loading or running a reducer or a projection.
pub struct Error(Box<Repr>);

enum Repr {
    InvalidPlugin {
        name: Option<String>,
        reason: String,
    },
    Reducer(ReducerFailure),
    Engine(anyhow::Error),
    Projection(ProjectionFailure),
    ReadModel {
        context: String,
        source: SourceError,
    },
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &*self.0 {
            Repr::InvalidPlugin { .. } => ErrorKind::InvalidPlugin,
            Repr::Reducer(_) => ErrorKind::Reducer,
            Repr::Engine(_) => ErrorKind::Engine,
            Repr::Projection(_) => ErrorKind::Projection,
            Repr::ReadModel { .. } => ErrorKind::ReadModel,
        }
    }

    /// A projection failed (its own error, a trap, or a limit).
    pub fn is_projection_failure(&self) -> bool {
        self.kind() == ErrorKind::Projection
    }

    /// The projection failure behind this error, if it is one.
    pub fn projection_failure(&self) -> Option<&ProjectionFailure> {
        match &*self.0 {
            Repr::Projection(f) => Some(f),
            _ => None,
        }
    }

    /// Reading the read model failed (see [`ErrorKind::ReadModel`]).
    pub fn is_read_model(&self) -> bool {
        self.kind() == ErrorKind::ReadModel
    }

    /// `context` is the host's own text (which projection, which key, bounded).
    pub(crate) fn read_model(context: String, source: SourceError) -> Self {
        Error(Box::new(Repr::ReadModel { context, source }))
    }

    /// A plugin file was refused.
    pub fn is_invalid_plugin(&self) -> bool {
        self.kind() == ErrorKind::InvalidPlugin
    }

    /// A reducer failed (its own error, a trap, or a limit).
    pub fn is_reducer_failure(&self) -> bool {
        self.kind() == ErrorKind::Reducer
    }

    /// The reducer failure behind this error, if it is one.
    pub fn reducer_failure(&self) -> Option<&ReducerFailure> {
        match &*self.0 {
            Repr::Reducer(f) => Some(f),
            _ => None,
        }
    }

    /// A failure of the engine or of the task that ran a reducer, not of the reducer
    /// itself.
    pub fn engine(e: impl Into<anyhow::Error>) -> Self {
        Error(Box::new(Repr::Engine(e.into())))
    }

    /// `reason` is the host's own text; a plugin's name, when known, is untrusted and
    /// shown escaped.
    pub(crate) fn plugin(name: Option<&str>, reason: impl fmt::Display) -> Self {
        Error(Box::new(Repr::InvalidPlugin {
            name: name.map(|n| crate::text::shown(n, 128)),
            reason: reason.to_string(),
        }))
    }
}

impl From<ProjectionFailure> for Error {
    fn from(f: ProjectionFailure) -> Self {
        Error(Box::new(Repr::Projection(f)))
    }
}

impl From<ReducerFailure> for Error {
    fn from(f: ReducerFailure) -> Self {
        Error(Box::new(Repr::Reducer(f)))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind())
            .field("message", &self.to_string())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Repr::InvalidPlugin { name, reason } => match name {
                Some(n) => write!(f, "invalid plugin {n}: {reason}"),
                None => write!(f, "invalid plugin: {reason}"),
            },
            Repr::Reducer(failure) => failure.fmt(f),
            Repr::Engine(e) => write!(f, "wasm engine: {e:#}"),
            Repr::Projection(failure) => failure.fmt(f),
            Repr::ReadModel { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            // Shown as this error itself (its message is this message).
            Repr::Reducer(_) | Repr::Projection(_) => None,
            Repr::Engine(e) => e.chain().nth(1),
            Repr::ReadModel { source, .. } => Some(source.as_ref()),
            Repr::InvalidPlugin { .. } => None,
        }
    }
}
