//! The library's error type: one opaque [`Error`] with a [`kind`](Error::kind) and
//! `is_*` checks, in the style of redis-rs. It wraps the event store's and the
//! sandbox's errors without exposing them as variants: a caller asks what kind of
//! failure it is, never which crate it came from.

use std::fmt;

use streamfold_sandbox::ReducerFailure;
use streamfold_store::Conflict;

/// A result whose error is the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: what a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The aggregate was not at the revision the append expected. Nothing was
    /// written; [`Error::conflict`] has the expected and the actual revision.
    Conflict,
    /// An aggregate with no events, a plugin that is not registered, a type with no
    /// active reducer, a revision past the end of a history.
    NotFound,
    /// The caller passed something unusable (bad JSON, an empty id, a bad key
    /// character, a reducer of another type). Nothing was written.
    InvalidInput,
    /// Redis could not be reached or did not answer in time: worth retrying.
    Unavailable,
    /// Data in Redis does not have the shape Streamfold writes.
    Corrupt,
    /// Redis answered a command with an error.
    Redis,
    /// A `.wasm` file that cannot be a Streamfold reducer.
    InvalidPlugin,
    /// A reducer failed during a replay: its own typed error, a trap, or a limit.
    /// Stored events are untouched. [`Error::reducer_failure`] has the details.
    Reducer,
    /// The engine, or a task running a reducer, failed: not the reducer's fault.
    Engine,
    /// A projection failed on a batch: its own typed error, a trap, or a limit
    /// (time, memory, read-model writes). [`Error::projection_failure`] has the
    /// details. (A projection runner records it in the version's status.)
    Projection,
}

/// Everything that can go wrong in Streamfold. Messages never include a password.
pub struct Error(Box<Repr>);

enum Repr {
    Store(streamfold_store::Error),
    Sandbox(streamfold_sandbox::Error),
    NotFound(String),
    InvalidInput(String),
    Corrupt { key: String, reason: String },
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use streamfold_sandbox::ErrorKind as Sandbox;
        use streamfold_store::ErrorKind as Store;
        match &*self.0 {
            Repr::Store(e) => match e.kind() {
                Store::Conflict => ErrorKind::Conflict,
                Store::InvalidInput => ErrorKind::InvalidInput,
                Store::Unavailable => ErrorKind::Unavailable,
                Store::Corrupt => ErrorKind::Corrupt,
                Store::NotFound => ErrorKind::NotFound,
                // A projection runner that lost its lease: someone else runs it now.
                Store::Fenced => ErrorKind::Conflict,
                _ => ErrorKind::Redis,
            },
            Repr::Sandbox(e) => match e.kind() {
                Sandbox::InvalidPlugin => ErrorKind::InvalidPlugin,
                Sandbox::Reducer => ErrorKind::Reducer,
                Sandbox::Projection => ErrorKind::Projection,
                // The read model a projection's batch read from (Redis) failed:
                // not the projection's fault, worth retrying.
                Sandbox::ReadModel => ErrorKind::Unavailable,
                _ => ErrorKind::Engine,
            },
            Repr::NotFound(_) => ErrorKind::NotFound,
            Repr::InvalidInput(_) => ErrorKind::InvalidInput,
            Repr::Corrupt { .. } => ErrorKind::Corrupt,
        }
    }

    /// The append's expected revision did not match.
    pub fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }

    /// Something asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// The caller's input was rejected before anything was written.
    pub fn is_invalid_input(&self) -> bool {
        self.kind() == ErrorKind::InvalidInput
    }

    /// Redis is down or too slow: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// Data in Redis is not what Streamfold writes.
    pub fn is_corrupt(&self) -> bool {
        self.kind() == ErrorKind::Corrupt
    }

    /// A plugin file was refused.
    pub fn is_invalid_plugin(&self) -> bool {
        self.kind() == ErrorKind::InvalidPlugin
    }

    /// A reducer failed during a replay (its own error, a trap, or a limit).
    pub fn is_reducer_failure(&self) -> bool {
        self.kind() == ErrorKind::Reducer
    }

    /// A projection failed on a batch (its own error, a trap, or a limit).
    pub fn is_projection_failure(&self) -> bool {
        self.kind() == ErrorKind::Projection
    }

    /// The projection failure behind this error, if it is one.
    pub fn projection_failure(&self) -> Option<&streamfold_sandbox::ProjectionFailure> {
        match &*self.0 {
            Repr::Sandbox(e) => e.projection_failure(),
            _ => None,
        }
    }

    /// A projection runner lost its lease (a [conflict](ErrorKind::Conflict): another
    /// runner holds it now, or the version was reset); nothing was committed.
    pub fn is_fenced(&self) -> bool {
        match &*self.0 {
            Repr::Store(e) => e.is_fenced(),
            _ => false,
        }
    }

    /// The expected and actual revisions of a [conflict](ErrorKind::Conflict).
    pub fn conflict(&self) -> Option<&Conflict> {
        match &*self.0 {
            Repr::Store(e) => e.conflict(),
            _ => None,
        }
    }

    /// The reducer failure behind this error, if it is one.
    pub fn reducer_failure(&self) -> Option<&ReducerFailure> {
        match &*self.0 {
            Repr::Sandbox(e) => e.reducer_failure(),
            _ => None,
        }
    }

    /// Something asked for does not exist: `what` is named in the message
    /// (`"aggregate user/1 (no events)"` reads "aggregate user/1 (no events) not
    /// found").
    pub fn not_found(what: impl fmt::Display) -> Self {
        Repr::NotFound(what.to_string()).into()
    }

    pub(crate) fn invalid(msg: impl fmt::Display) -> Self {
        Repr::InvalidInput(msg.to_string()).into()
    }

    pub(crate) fn corrupt(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Repr::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
        .into()
    }

    /// A task that ran reducer work died (a panic in the host, or cancelled).
    pub(crate) fn task(what: &str, e: tokio::task::JoinError) -> Self {
        streamfold_sandbox::Error::engine(anyhow::anyhow!("{what} task failed: {e}")).into()
    }
}

impl From<Repr> for Error {
    fn from(r: Repr) -> Self {
        Error(Box::new(r))
    }
}

impl From<streamfold_store::Error> for Error {
    fn from(e: streamfold_store::Error) -> Self {
        Repr::Store(e).into()
    }
}

impl From<streamfold_sandbox::Error> for Error {
    fn from(e: streamfold_sandbox::Error) -> Self {
        Repr::Sandbox(e).into()
    }
}

/// The registry's own commands: classified as the store classifies its own.
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        streamfold_store::Error::from(e).into()
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
            Repr::Store(e) => e.fmt(f),
            Repr::Sandbox(e) => e.fmt(f),
            Repr::NotFound(what) => write!(f, "{what} not found"),
            Repr::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Repr::Corrupt { key, reason } => write!(f, "corrupt data in {key}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    /// The wrapped store and sandbox errors are shown as this error itself (their
    /// message is this message), so the chain goes on with their own sources.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Repr::Store(e) => e.source(),
            Repr::Sandbox(e) => e.source(),
            _ => None,
        }
    }
}
