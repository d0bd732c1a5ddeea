//! The store's error type, in the style of redis-rs: one opaque [`Error`] with a
//! [`kind`](Error::kind) and `is_*` checks, so a caller never parses a message.

use std::fmt;
use std::time::Duration;

use crate::model::ExpectedRevision;

/// A result whose error is the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: what a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The aggregate was not at the revision the append expected. Nothing was
    /// written; [`Error::conflict`] has the details. Also: a durable subscription
    /// group created again with other settings (then [`Error::conflict`] is `None`).
    Conflict,
    /// Something named does not exist (a durable subscription group).
    NotFound,
    /// The caller passed something unusable (bad JSON, an empty id, a bad key
    /// character, a configuration out of range). Nothing was written.
    InvalidInput,
    /// Redis could not be reached, or did not answer in time: worth retrying. An
    /// append that failed this way is retry-safe (same event ids).
    ///
    /// A failed TLS handshake (a server certificate the CA does not vouch for, a
    /// server that wants a client certificate) is of this kind too, with a message
    /// that starts with `TLS` and gives rustls's reason: nothing was sent, the
    /// connection is unusable like a refused one, and the same failure can begin at
    /// any reconnect of a running host (a server certificate renewed by another CA, or
    /// expired), where callers already treat an unusable Redis this way (`/readyz`
    /// 503, retries). TLS settings that cannot even be read (a file that is not PEM, a
    /// key without its certificate) are [`InvalidInput`](Self::InvalidInput).
    Unavailable,
    /// Data in Redis does not have the shape Streamfold writes (a hand-edited entry,
    /// a key of another application under our prefix).
    Corrupt,
    /// Redis answered a command with an error.
    Redis,
    /// A projection runner's lease is no longer its own (it expired, another host
    /// took it, or the version was rebuilt): its commit was refused and nothing was
    /// written. The runner must stop, acquire the lease again and reload the
    /// checkpoint; unlike a [`Conflict`](Self::Conflict) (the checkpoint was not the
    /// one expected), retrying with the same lease can never succeed.
    Fenced,
}

/// An append's expected revision did not match (see [`ErrorKind::Conflict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `type/id` of the aggregate.
    pub aggregate: String,
    /// What the caller expected.
    pub expected: ExpectedRevision,
    /// The aggregate's revision when the append was tried (0: no stream).
    pub actual: u64,
}

/// Everything that can go wrong in the event store. Messages never include a
/// password: URLs are kept with their credentials removed.
#[derive(Clone)]
pub struct Error(Box<Repr>);

#[derive(Debug, Clone)]
enum Repr {
    Conflict(Conflict),
    Refused(String),
    NotFound(String),
    InvalidInput(String),
    Unreachable { url: String, reason: String },
    Tls { url: String, reason: String },
    Timeout(Duration),
    Redis(redis::RedisError),
    Corrupt { key: String, reason: String },
    Fenced(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &*self.0 {
            Repr::Conflict(_) | Repr::Refused(_) => ErrorKind::Conflict,
            Repr::NotFound(_) => ErrorKind::NotFound,
            Repr::InvalidInput(_) => ErrorKind::InvalidInput,
            Repr::Unreachable { .. } | Repr::Tls { .. } | Repr::Timeout(_) => {
                ErrorKind::Unavailable
            }
            Repr::Redis(e) if is_unavailable(e) => ErrorKind::Unavailable,
            Repr::Redis(_) => ErrorKind::Redis,
            Repr::Corrupt { .. } => ErrorKind::Corrupt,
            Repr::Fenced(_) => ErrorKind::Fenced,
        }
    }

    /// The append's expected revision did not match.
    pub fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }

    /// Something named does not exist.
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

    /// A projection's lease was lost: see [`ErrorKind::Fenced`].
    pub fn is_fenced(&self) -> bool {
        self.kind() == ErrorKind::Fenced
    }

    /// The expected and actual revisions of a [conflict](ErrorKind::Conflict).
    pub fn conflict(&self) -> Option<&Conflict> {
        match &*self.0 {
            Repr::Conflict(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn conflict_at(aggregate: String, expected: ExpectedRevision, actual: u64) -> Self {
        Repr::Conflict(Conflict {
            aggregate,
            expected,
            actual,
        })
        .into()
    }

    /// A [conflict](ErrorKind::Conflict) that is not about a revision.
    pub(crate) fn refused(msg: impl fmt::Display) -> Self {
        Repr::Refused(msg.to_string()).into()
    }

    pub(crate) fn fenced(msg: impl fmt::Display) -> Self {
        Repr::Fenced(msg.to_string()).into()
    }

    pub(crate) fn not_found(msg: impl fmt::Display) -> Self {
        Repr::NotFound(msg.to_string()).into()
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

    /// `url` must already be redacted ([`redact_url`]).
    pub(crate) fn unreachable(url: impl Into<String>, reason: impl fmt::Display) -> Self {
        Repr::Unreachable {
            url: url.into(),
            reason: reason.to_string(),
        }
        .into()
    }

    /// A TLS failure talking to `url` (already redacted): rustls's reason.
    pub(crate) fn tls(url: impl Into<String>, reason: impl fmt::Display) -> Self {
        Repr::Tls {
            url: url.into(),
            reason: reason.to_string(),
        }
        .into()
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Repr::Timeout(after).into()
    }

    /// The client's error, unmapped, if this is one (for callers that map it with
    /// the key at hand).
    pub(crate) fn into_redis(self) -> std::result::Result<redis::RedisError, Self> {
        match *self.0 {
            Repr::Redis(e) => Ok(e),
            other => Err(Error(Box::new(other))),
        }
    }
}

/// The connection is gone or the reply is late: the caller may retry.
///
/// A cluster's transient answers are of this kind too: `CLUSTERDOWN` (slots without a
/// master, e.g. during a failover), `TRYAGAIN` and `MOVED`/`ASK` (slots moving),
/// `MASTERDOWN` and `READONLY` (a node that is, or just stopped being, a replica), and
/// `LOADING` (a node reading its data after a restart). The command did not run.
fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some(
                "CLUSTERDOWN"
                    | "TRYAGAIN"
                    | "MOVED"
                    | "ASK"
                    | "MASTERDOWN"
                    | "READONLY"
                    | "LOADING"
            )
        )
}

impl From<Repr> for Error {
    fn from(r: Repr) -> Self {
        Error(Box::new(r))
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Repr::Redis(e).into()
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
            Repr::Conflict(c) => {
                write!(
                    f,
                    "wrong expected revision for {}: expected {}, actual ",
                    c.aggregate, c.expected
                )?;
                if c.actual == 0 {
                    f.write_str("no stream (revision 0)")
                } else {
                    write!(f, "{}", c.actual)
                }
            }
            Repr::Refused(msg) => write!(f, "conflict: {msg}"),
            Repr::NotFound(msg) => write!(f, "not found: {msg}"),
            Repr::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Repr::Unreachable { url, reason } => write!(f, "cannot reach Redis at {url}: {reason}"),
            Repr::Tls { url, reason } => {
                write!(f, "TLS connection to Redis at {url} failed: {reason}")
            }
            Repr::Timeout(d) => write!(f, "Redis did not answer within {d:?}"),
            Repr::Redis(e) => write!(f, "Redis error: {e}"),
            Repr::Corrupt { key, reason } => write!(f, "corrupt data in {key}: {reason}"),
            Repr::Fenced(msg) => write!(f, "fenced: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Repr::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// Removes the password (and user) from a Redis URL, for messages.
pub(crate) fn redact_url(url: &str) -> String {
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

    #[test]
    fn kinds_follow_the_cause() {
        let c = Error::conflict_at("user/1".into(), ExpectedRevision::Exact(1), 3);
        assert!(c.is_conflict());
        assert_eq!(c.conflict().map(|c| c.actual), Some(3));
        assert_eq!(
            c.to_string(),
            "wrong expected revision for user/1: expected 1, actual 3"
        );
        assert!(Error::timeout(Duration::from_secs(1)).is_unavailable());
        assert!(Error::unreachable("redis://h", "refused").is_unavailable());
        assert!(Error::corrupt("k", "bad").is_corrupt());
        assert_eq!(Error::invalid("x").kind(), ErrorKind::InvalidInput);
    }
}
