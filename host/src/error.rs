//! The one error type of the library.
//!
//! Every failure a caller can act on has its own variant and an `is_*` check, so a
//! caller never has to parse a message: retry on [`Error::is_conflict`], answer 404 on
//! [`Error::is_not_found`], show the plugin's complaint on [`Error::is_reducer_failure`].

use std::fmt;
use std::time::Duration;

use crate::store::ExpectedRevision;

/// A result whose error is the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Streamfold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The aggregate was not at the revision the append expected. Nothing was written.
    #[error(
        "wrong expected revision for {aggregate}: expected {expected}, actual {}",
        actual_text(*actual)
    )]
    Conflict {
        /// `type/id` of the aggregate.
        aggregate: String,
        /// What the caller expected.
        expected: ExpectedRevision,
        /// The aggregate's revision when the append was tried (0: no stream).
        actual: u64,
    },

    /// An aggregate with no events, a plugin that is not registered, a type with no
    /// active reducer, a snapshot that does not exist.
    #[error("{0} not found")]
    NotFound(String),

    /// The caller passed something unusable: bad JSON, an empty id, a bad key character.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Redis could not be reached. The URL never includes a password.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The server's address, password removed.
        url: String,
        /// What the client said.
        reason: String,
    },

    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),

    /// Redis answered with an error (or the connection broke mid-command).
    #[error("Redis error: {0}")]
    Redis(#[source] redis::RedisError),

    /// Data in Redis does not have the shape Streamfold writes (a hand-edited entry,
    /// a key of another application under our prefix).
    #[error("corrupt data in {key}: {reason}")]
    Corrupt {
        /// The Redis key holding the bad data.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A `.wasm` file that cannot be a Streamfold reducer: not a component, another
    /// world, an incompatible contract version, too large, nonsense in its `info`.
    #[error("invalid plugin{}: {reason}", name.as_deref().map(|n| format!(" {n}")).unwrap_or_default())]
    InvalidPlugin {
        /// The file or plugin name, when known.
        name: Option<String>,
        /// What is wrong with it.
        reason: String,
    },

    /// A reducer failed during a replay: its own typed error, a trap, or a limit it hit.
    /// Stored events are untouched; only this replay failed.
    #[error(transparent)]
    Reducer(Box<crate::runtime::ReducerFailure>),

    /// A local file could not be read or written (plugin files, the compiled-code cache).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// WebAssembly engine failure that is not a reducer's fault (engine set-up, cache).
    #[error("wasm engine: {0:#}")]
    Engine(anyhow::Error),
}

fn actual_text(actual: u64) -> String {
    if actual == 0 {
        "no stream (revision 0)".to_string()
    } else {
        actual.to_string()
    }
}

impl Error {
    /// The append's expected revision did not match.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Something asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// The caller's input was rejected before anything was written.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_))
    }

    /// Redis is down or too slow: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout(_) => true,
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()
            }
            _ => false,
        }
    }

    /// A plugin file was refused.
    pub fn is_invalid_plugin(&self) -> bool {
        matches!(self, Error::InvalidPlugin { .. })
    }

    /// A reducer failed during a replay (its own error, a trap, or a limit).
    pub fn is_reducer_failure(&self) -> bool {
        matches!(self, Error::Reducer(_))
    }

    /// The reducer failure behind this error, if it is one.
    pub fn reducer_failure(&self) -> Option<&crate::runtime::ReducerFailure> {
        match self {
            Error::Reducer(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl fmt::Display) -> Self {
        Error::InvalidInput(msg.to_string())
    }

    pub(crate) fn corrupt(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn plugin(name: Option<&str>, reason: impl fmt::Display) -> Self {
        Error::InvalidPlugin {
            name: name.map(str::to_owned),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(e)
    }
}

/// Removes the password (and user) from a Redis URL, for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redact_url("redis://u:p@h"), "redis://***@h");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
