//! A reducer's or projection's deliberate failures: [`Rejection`] (what `apply`
//! returns) and [`ReducerError`] / [`ProjectionError`] (what the host receives).

use std::fmt;

/// Why a reducer or a projection refused to go on. Mirrors the WIT `error-kind`s of
/// both contracts: a kind one contract lacks is sent as `invalid-data` there
/// (`InvalidSnapshot` from a projection, `InvalidDocument` from a reducer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An event's data is not what the reducer expects: bad JSON, a missing or
    /// mistyped field.
    InvalidData,
    /// The snapshot handed to `restore` cannot be read.
    InvalidSnapshot,
    /// The event is well formed but breaks a rule of the aggregate, e.g. removing an
    /// item that was never added.
    RuleViolation,
    /// A projection read a document from its read model that is not what it expects.
    InvalidDocument,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidData => "invalid data",
            ErrorKind::InvalidSnapshot => "invalid snapshot",
            ErrorKind::RuleViolation => "rule violation",
            ErrorKind::InvalidDocument => "invalid document",
        })
    }
}

/// A reducer's refusal of one event: the error [`Reducer::apply`](crate::Reducer::apply)
/// returns.
///
/// The SDK turns it into the WIT `reducer-error`, adding the event's index in its
/// batch. A rejection is a value the host reports with the plugin, the aggregate and
/// the event; a panic is a trap, which the host reports as a crash.
///
/// `?` on a [`serde_json::Error`] gives an [`invalid_data`](Rejection::invalid_data)
/// rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: ErrorKind,
    message: String,
}

impl Rejection {
    /// The event's data is not what the reducer expects, e.g. `field "email" is missing`.
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Rejection {
            kind: ErrorKind::InvalidData,
            message: message.into(),
        }
    }

    /// The event is well formed but breaks a rule of the aggregate, e.g.
    /// `cannot add items to a cart that is checked out`.
    pub fn rule(message: impl Into<String>) -> Self {
        Rejection {
            kind: ErrorKind::RuleViolation,
            message: message.into(),
        }
    }

    /// A document a projection read from its read model is not what it expects, e.g.
    /// `domain/example.com: missing field "users"`.
    pub fn invalid_document(message: impl Into<String>) -> Self {
        Rejection {
            kind: ErrorKind::InvalidDocument,
            message: message.into(),
        }
    }

    /// [`ErrorKind::InvalidData`], [`ErrorKind::RuleViolation`] or
    /// [`ErrorKind::InvalidDocument`].
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error the host receives when this rejection names the event at `index` in
    /// its batch.
    pub fn at(self, index: u32) -> ReducerError {
        ReducerError {
            kind: self.kind,
            event_index: Some(index),
            message: self.message,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<serde_json::Error> for Rejection {
    fn from(err: serde_json::Error) -> Self {
        Rejection::invalid_data(err.to_string())
    }
}

/// A reducer's failure as the host receives it: the WIT `reducer-error` (and, as
/// [`ProjectionError`], a projection's `projection-error`, the same record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReducerError {
    /// Why the reducer refused to go on.
    pub kind: ErrorKind,
    /// The failing event's index in its batch (0-based); `None` for failures not tied
    /// to one event (`restore`, `state`).
    pub event_index: Option<u32>,
    /// A human explanation.
    pub message: String,
}

impl ReducerError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ReducerError {
            kind,
            event_index: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ReducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_index {
            Some(index) => write!(
                f,
                "{} (event {index} of the batch): {}",
                self.kind, self.message
            ),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for ReducerError {}

/// A projection's failure as the host receives it: the WIT `projection-error`
/// (kind, the failing event's index in its batch, message). The same record as a
/// reducer's.
pub type ProjectionError = ReducerError;
