//! Projections: what a projection runner needs from Redis (see the crate docs, under
//! "Projections", for the guarantees and the keys).
//!
//! A projection folds the category feeds of its source types into a read model of
//! JSON documents. This module keeps, per projection *version* ([`ProjectionVersion`]),
//! the read model, the checkpoint (one position per source partition stream), a lease
//! with a fencing token, the dead letters, a capped change stream and counters, all
//! under one hash tag, and changes them with one Lua script (`projections.lua`) per
//! step: atomic, one slot on a Redis Cluster. Beside them, per projection, a small
//! registry: which versions exist, which one serves reads, which one is active.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use crate::reply::{id_order, int, items, text};
use serde::Serialize;

use crate::EventStore;
use crate::config::Layout;
use crate::error::{Error, Result};
use crate::keys::{ProjectionKeys, projection_keys, projection_registry_key, type_char_allowed};
use crate::model::{RecordedEvent, check_json, validate_position};
use crate::read::CategoryReadOptions;
use crate::wire::{Dedicated, Frame};

/// The projections script, loaded once per Redis and called by SHA (reloaded by the
/// client after `NOSCRIPT`: a `SCRIPT FLUSH` or a restart).
static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("projections.lua")));

/// Compare-and-set of one field of one registry hash (one key: any slot).
static POINTER_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return {'conflict', cur} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return {'ok', cur}
",
    )
});

/// Longest projection name, in characters.
pub const MAX_PROJECTION_NAME_CHARS: usize = 128;
/// Longest version id, in characters (`[0-9A-Za-z._-]`: a digest, say).
pub const MAX_VERSION_ID_CHARS: usize = 128;
/// Longest lease holder name, in characters.
pub const MAX_HOLDER_CHARS: usize = 256;
/// Longest document key, in bytes.
pub const MAX_DOC_KEY_BYTES: usize = 1_024;
/// Largest document, in bytes of JSON text.
pub const MAX_DOC_BYTES: usize = 1 << 20;
/// The most document writes one commit takes.
pub const MAX_COMMIT_WRITES: usize = 10_000;
/// The most dead letters one commit takes.
pub const MAX_COMMIT_DEAD_LETTERS: usize = 1_000;
/// The most bytes of documents, keys, positions and dead letters one commit sends.
/// Redis takes script arguments of many MB, but one script holds Redis for as long as
/// it runs. Measured here (Redis 7.0, a shared 2-core machine, `SLOWLOG` times): 1,000
/// writes of 200 bytes about 4 ms, 10,000 of them 40-55 ms, 15 MB in 10,000 writes
/// 75-125 ms, 15 MB in 1,000 writes 40-55 ms. At the limits Redis stalls for about
/// 0.1 s, so a runner aims far below them (a few hundred writes per batch) and
/// merges writes of one key within a batch.
pub const MAX_COMMIT_BYTES: usize = 16 << 20;
/// The most source partition streams a checkpoint holds.
pub const MAX_CHECKPOINT_STREAMS: usize = 4_096;
/// Longest error text (of a dead letter or a failure), in characters.
pub const MAX_ERROR_CHARS: usize = 4_096;
/// Longest version metadata, in bytes.
pub const MAX_VERSION_META_BYTES: usize = 64 << 10;
/// The most documents one page holds.
pub const MAX_DOC_PAGE: usize = 1_000;
/// The most changes or dead letters one read returns.
pub const MAX_CHANGES_PAGE: usize = 1_000;
/// The longest lease.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(600);
/// How many entries a version's change stream keeps when a commit does not say: once
/// it holds a tenth more, the oldest are trimmed (exactly, remembering the last one
/// trimmed, so that a reader behind it is told it [missed](ChangesPage::missed)
/// changes).
pub const DEFAULT_CHANGES_MAX_LEN: u64 = 10_000;

/// A checkpoint: for each source partition stream (its key, as
/// [`SourceStream::key`] gives it), the position of the last event applied. A stream
/// not in it has had nothing applied: read it from its start.
pub type Checkpoint = BTreeMap<String, String>;

/// The lease of one projection version, held by one runner, from
/// [`ProjectionVersion::acquire_lease`]. Its `token` only ever grows: a commit with
/// a token that is not the current lease's is [fenced](crate::ErrorKind::Fenced).
///
/// The holder renews it well within its time ([`ProjectionVersion::renew_lease`],
/// say every third of it) and stops working the moment a renewal says it was lost or
/// a commit is fenced. When a holder dies, another host acquires the lease once it
/// has expired. The commit checks the lease in Redis, so a holder that misses a
/// renewal (paused, partitioned) cannot commit afterwards, whatever its clock says;
/// what it can still do is read, which is harmless. After a Redis restart from a
/// snapshot or a failover to a replica that had not seen the last tokens, a token
/// could be handed out again, but the lease also names its holder: give every runner
/// process a holder name of its own (host and process id, or a random suffix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The projection.
    pub name: String,
    /// The version.
    pub vid: String,
    /// Who holds it (the name given to `acquire_lease`).
    pub holder: String,
    /// The fencing token.
    pub token: u64,
}

/// Who holds a version's lease, for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseHolder {
    /// The holder's name.
    pub holder: String,
    /// Its fencing token.
    pub token: u64,
    /// How long the lease lasts unless renewed, ms.
    pub ttl_ms: u64,
}

/// One document write of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocWrite {
    /// The document's key (1 to [`MAX_DOC_KEY_BYTES`] bytes, any text).
    pub key: String,
    /// The new document (JSON text, at most [`MAX_DOC_BYTES`]); `None` deletes it.
    pub doc: Option<String>,
    /// The position of the source event that made the write, for the change stream.
    pub position: String,
}

impl DocWrite {
    /// Puts `doc` (JSON text) at `key`, because of the event at `position`.
    pub fn put(
        key: impl Into<String>,
        doc: impl Into<String>,
        position: impl Into<String>,
    ) -> Self {
        DocWrite {
            key: key.into(),
            doc: Some(doc.into()),
            position: position.into(),
        }
    }

    /// Deletes the document at `key`, because of the event at `position`.
    pub fn delete(key: impl Into<String>, position: impl Into<String>) -> Self {
        DocWrite {
            key: key.into(),
            doc: None,
            position: position.into(),
        }
    }
}

/// An event the projection failed on and skipped, with the error, kept in the
/// version's dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The source partition stream the event came from.
    pub stream: String,
    /// The event (its `position` is its stream id there).
    pub event: RecordedEvent,
    /// Why the projection failed on it (at most [`MAX_ERROR_CHARS`]).
    pub error: String,
}

/// A dead letter as stored, from [`ProjectionVersion::dead_letters`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDeadLetter {
    /// Its id in the dead-letter stream (its millisecond is when it was committed).
    pub id: String,
    /// The letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Where a projection stopped: the event it failed on, which aggregate, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionFailure {
    /// The source partition stream of the event.
    pub stream: String,
    /// The event's position there.
    pub position: String,
    /// The event's id.
    pub event_id: String,
    /// Its aggregate's type.
    pub aggregate_type: String,
    /// Its aggregate's id.
    pub aggregate_id: String,
    /// The event's type.
    pub event_type: String,
    /// Why (at most [`MAX_ERROR_CHARS`]).
    pub error: String,
    /// When it was recorded, Unix ms (Redis' clock; ignored when recording).
    pub at_ms: u64,
}

impl ProjectionFailure {
    /// The failure of the projection on `event` from `stream`.
    pub fn on(stream: impl Into<String>, event: &RecordedEvent, error: impl Into<String>) -> Self {
        ProjectionFailure {
            stream: stream.into(),
            position: event.position.clone(),
            event_id: event.event_id.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            event_type: event.event_type.clone(),
            error: error.into(),
            at_ms: 0,
        }
    }
}

/// One atomic step of a projection runner ([`ProjectionVersion::commit`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// The checkpoint the batch starts from, all of it (as
    /// [`checkpoint`](ProjectionVersion::checkpoint) or the last commit gave it): the
    /// commit is refused if the stored one is another.
    pub expected: Checkpoint,
    /// The positions the batch moves to: only the streams it advanced, each past its
    /// expected position.
    pub advance: Checkpoint,
    /// How many source events the batch covers (for the `events` counter).
    pub events: u64,
    /// The document writes, applied in order (a later write of a key wins).
    pub writes: Vec<DocWrite>,
    /// Events skipped with their errors.
    pub dead_letters: Vec<DeadLetter>,
    /// The failure to record (the projection stops at that event). A commit that
    /// advances the checkpoint without one clears a recorded failure.
    pub failure: Option<ProjectionFailure>,
    /// How many entries the change stream keeps (default
    /// [`DEFAULT_CHANGES_MAX_LEN`]; at least 1; trimmed once it holds a tenth more).
    pub changes_max_len: Option<u64>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitOutcome {
    /// The checkpoint now (the expected one with the advanced positions).
    pub checkpoint: Checkpoint,
    /// Documents that changed (writes of an equal document or deletes of a missing
    /// one change nothing and add no change entry).
    pub changed: u64,
    /// The id of the last change entry written, if any.
    pub last_change: Option<String>,
    /// The commit had gone through already: this was a retry (the connection broke
    /// before the reply came) and nothing was written again.
    pub already_committed: bool,
}

/// A page of documents in key order, from [`ProjectionVersion::page`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocPage {
    /// `(key, JSON)` pairs.
    pub docs: Vec<(String, String)>,
    /// The key to pass as `after` for the next page; `None` after the last page.
    pub next_after: Option<String>,
    /// The version's change head when the page was read (see
    /// [`ProjectionVersion::head`]), read in the same step: an ETag for the page.
    pub head: Option<String>,
}

/// What a change entry says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeOp {
    /// The document was written.
    Put,
    /// The document was deleted.
    Delete,
    /// The version was reset for a rebuild: every document is gone; start over.
    Reset,
}

/// One entry of a version's change stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Its id in the change stream: the position to resume after.
    pub id: String,
    /// The document key (empty for a reset).
    pub key: String,
    /// What happened.
    pub op: ChangeOp,
    /// The position of the source event that caused it (empty for a reset).
    pub position: String,
}

/// Changes after a position, from [`ProjectionVersion::changes`] or a
/// [`ChangeFeed`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ChangesPage {
    /// The changes, oldest first.
    pub changes: Vec<Change>,
    /// Where to resume: the last change's id (the position asked for if none came).
    pub next: Option<String>,
    /// Changes after the position asked for were trimmed away (the change stream is
    /// capped) or dropped by a reset: the reader missed some and must read the model
    /// again.
    pub missed: bool,
}

/// A version's status and lag, from [`ProjectionVersion::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// The version.
    pub vid: String,
    /// The positions applied.
    pub checkpoint: Checkpoint,
    /// Source events applied (dead-lettered ones included).
    pub events: u64,
    /// Commits.
    pub commits: u64,
    /// When the last commit was, Unix ms (Redis' clock).
    pub last_commit_ms: Option<u64>,
    /// The recorded failure: the projection stopped at that event.
    pub failure: Option<ProjectionFailure>,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// Dead letters ever committed (since the last reset).
    pub dead_letters_total: u64,
    /// Who holds the lease.
    pub lease: Option<LeaseHolder>,
    /// The change head (see [`ProjectionVersion::head`]).
    pub head: Option<String>,
}

/// One source partition stream of a projection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SourceStream {
    /// The source aggregate type.
    pub aggregate_type: String,
    /// Its category partition.
    pub partition: u32,
    /// The partition's category stream key: the checkpoint's key for it.
    pub key: String,
}

/// An event read from a source partition ([`EventStore::read_projection_sources`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceEvent {
    /// The partition stream key (the checkpoint's key).
    pub stream: String,
    /// The event; its `position` is its id in that stream.
    pub event: RecordedEvent,
}

/// How far a projection is behind one source stream, from
/// [`EventStore::projection_lag`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLag {
    /// The source partition stream key.
    pub stream: String,
    /// The checkpoint's position in it (`None`: nothing applied yet).
    pub position: Option<String>,
    /// Its last entry (`None`: it has none).
    pub head: Option<String>,
    /// Whether everything in it has been applied.
    pub caught_up: bool,
    /// How much older the applied position is than the head, by the milliseconds
    /// of their stream ids (when Redis stored them); 0 when caught up.
    pub behind_ms: u64,
    /// Entries ever added to the stream (`XINFO STREAM`'s `entries-added`).
    pub added: u64,
    /// Entries in it now.
    pub length: u64,
}

/// The two per-projection pointers of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pointer {
    /// The version reads follow.
    Serving,
    /// The version hosts should run (build, keep up to date).
    Active,
}

impl Pointer {
    fn key(self) -> &'static str {
        match self {
            Pointer::Serving => "serving",
            Pointer::Active => "active",
        }
    }
}

/// A projection as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionInfo {
    /// Its name.
    pub name: String,
    /// Its versions: version id -> the metadata given at registration.
    pub versions: BTreeMap<String, String>,
    /// The version reads follow.
    pub serving: Option<String>,
    /// The version hosts should run.
    pub active: Option<String>,
}

/// Checks a projection name: the characters of a type (it goes into a hash tag),
/// 1 to [`MAX_PROJECTION_NAME_CHARS`].
pub fn validate_projection_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("the projection name is empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !type_char_allowed(Layout::Default, *c))
    {
        return Err(Error::invalid(format!(
            "the projection name {name:?} contains {c:?} (whitespace, control characters and braces are not allowed)"
        )));
    }
    let n = name.chars().count();
    if n > MAX_PROJECTION_NAME_CHARS {
        return Err(Error::invalid(format!(
            "the projection name is {n} characters long; at most {MAX_PROJECTION_NAME_CHARS} are allowed"
        )));
    }
    Ok(())
}

/// Checks a version id: 1 to [`MAX_VERSION_ID_CHARS`] of `0-9 A-Z a-z . _ -`.
pub fn validate_version_id(vid: &str) -> Result<()> {
    if vid.is_empty() || vid.len() > MAX_VERSION_ID_CHARS {
        return Err(Error::invalid(format!(
            "a projection version id has 1 to {MAX_VERSION_ID_CHARS} characters, not {}",
            vid.chars().count()
        )));
    }
    if let Some(c) = vid
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid(format!(
            "the projection version id {vid:?} contains {c:?} (only 0-9, A-Z, a-z, '.', '_' and '-' are allowed)"
        )));
    }
    Ok(())
}

fn validate_holder(holder: &str) -> Result<()> {
    let n = holder.chars().count();
    if n == 0 || n > MAX_HOLDER_CHARS {
        return Err(Error::invalid(format!(
            "a lease holder name has 1 to {MAX_HOLDER_CHARS} characters, not {n}"
        )));
    }
    if holder.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(format!(
            "the lease holder name {holder:?} contains whitespace or control characters"
        )));
    }
    Ok(())
}

fn ttl_ms(ttl: Duration) -> Result<u64> {
    if ttl < Duration::from_millis(1) || ttl > MAX_LEASE_TTL {
        return Err(Error::invalid(format!(
            "a lease lasts 1 ms to {MAX_LEASE_TTL:?}, not {ttl:?}"
        )));
    }
    Ok(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

fn validate_stream_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > MAX_DOC_KEY_BYTES
        || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "{key:?} is not a source stream key (1 to {MAX_DOC_KEY_BYTES} bytes, no whitespace)"
        )));
    }
    Ok(())
}

fn validate_doc_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_DOC_KEY_BYTES {
        return Err(Error::invalid(format!(
            "a document key has 1 to {MAX_DOC_KEY_BYTES} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

fn validate_error_text(error: &str) -> Result<()> {
    let n = error.chars().count();
    if n > MAX_ERROR_CHARS {
        return Err(Error::invalid(format!(
            "an error text is {n} characters long; at most {MAX_ERROR_CHARS} are allowed"
        )));
    }
    Ok(())
}

fn validate_checkpoint(what: &str, c: &Checkpoint) -> Result<()> {
    if c.len() > MAX_CHECKPOINT_STREAMS {
        return Err(Error::invalid(format!(
            "the {what} checkpoint names {} streams; at most {MAX_CHECKPOINT_STREAMS} are allowed",
            c.len()
        )));
    }
    for (stream, position) in c {
        validate_stream_key(stream)?;
        validate_position(position)?;
    }
    Ok(())
}

/// A flat name/value array as pairs of texts.
fn pairs(v: &Value) -> Vec<(String, String)> {
    items(v)
        .chunks(2)
        .filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
        .collect()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A change stream entry `[id, [field, value, ...]]`.
fn change_of(entry: &Value) -> Option<Change> {
    let e = items(entry);
    let id = text(e.first()?)?;
    let fields: BTreeMap<String, String> = pairs(e.get(1)?).into_iter().collect();
    let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
    Some(Change {
        op: match get("op").as_str() {
            "put" => ChangeOp::Put,
            "delete" => ChangeOp::Delete,
            _ => ChangeOp::Reset,
        },
        key: get("key"),
        position: get("position"),
        id,
    })
}

/// The `<token> <holder>` text of a lease key.
fn parse_lease(value: &str) -> Option<(u64, String)> {
    let (token, holder) = value.split_once(' ')?;
    Some((token.parse().ok()?, holder.to_owned()))
}

/// One version of one projection: its read model, checkpoint, lease, dead letters,
/// change stream and status, from [`EventStore::projection`]. Cheap to clone.
///
/// # Keys
///
/// Every key of a version shares the hash tag `{name:vid}` (so every step is one
/// script on one slot, on a cluster too); with the default prefix `sf`, projection
/// `orders`, version `v1`:
///
/// | key | what |
/// |-----|------|
/// | `sf:pj:{orders:v1}:docs`    | hash: document key → JSON |
/// | `sf:pj:{orders:v1}:keys`    | sorted set: every document key, score 0 (pages by `ZRANGEBYLEX`) |
/// | `sf:pj:{orders:v1}:ckpt`    | hash: source partition stream key → last position applied |
/// | `sf:pj:{orders:v1}:stat`    | hash: `events`, `commits`, `last_commit_ms`, `dead`, the failure (`f:*`), the last commit's id |
/// | `sf:pj:{orders:v1}:lease`   | string `<token> <holder>`, expiring (`PX`) |
/// | `sf:pj:{orders:v1}:fence`   | counter: the last token handed out |
/// | `sf:pj:{orders:v1}:dead`    | stream: dead letters (the event, its stream, the error) |
/// | `sf:pj:{orders:v1}:changes` | stream, capped: `key`, `op` (`put`/`delete`/`reset`), `position` |
///
/// # Guarantees
///
/// - **Effectively once.** [`commit`](Self::commit) checks the lease's token and the
///   expected checkpoint, then writes the documents, the key index, the change
///   entries, the dead letters, the failure, the counters and the new positions, in
///   one script: all or nothing. A commit whose reply was lost is retried once by
///   the store with the same commit id, which the script recognises (nothing is
///   written twice). A runner that crashed before its commit re-reads from the
///   checkpoint, which is exactly where the read model is.
/// - **One runner.** [`acquire_lease`](Self::acquire_lease) hands out a fencing token
///   larger than any before it; a commit with another token, or after the lease
///   expired, is [`Fenced`](crate::ErrorKind::Fenced). A paused former holder can
///   never commit again; a new holder takes over once the lease has expired.
/// - **Rebuilds.** [`reset`](Self::reset) drops the read model, the checkpoint, the
///   counters and the dead letters and takes the lease away, in one step: the
///   holder's next commit is fenced, and it (or another host) starts from position 0.
#[derive(Debug, Clone)]
pub struct ProjectionVersion {
    store: EventStore,
    name: String,
    vid: String,
    keys: ProjectionKeys,
}

impl EventStore {
    /// Version `vid` of projection `name` (names checked; nothing is asked of Redis).
    pub fn projection(&self, name: &str, vid: &str) -> Result<ProjectionVersion> {
        validate_projection_name(name)?;
        validate_version_id(vid)?;
        Ok(ProjectionVersion {
            keys: projection_keys(self.config(), name, vid),
            store: self.clone(),
            name: name.to_owned(),
            vid: vid.to_owned(),
        })
    }

    async fn small_cmd<T: redis::FromRedisValue + Send>(
        &self,
        key: &str,
        cmd: redis::Cmd,
    ) -> Result<T> {
        let cmd = &cmd;
        self.with_reconnect(key, move |mut con| async move {
            cmd.query_async(&mut con).await
        })
        .await
    }

    /// Registers version `vid` of projection `name` with the caller's metadata (what
    /// the runtime needs to run it: its component digest, its source types; at most
    /// [`MAX_VERSION_META_BYTES`]). True if it was new; registering it again with the
    /// same metadata changes nothing, with other metadata it is a
    /// [conflict](crate::ErrorKind::Conflict).
    ///
    /// Registry keys (not hash-tagged, one key per command): `prefix:pj:versions:NAME`
    /// (hash: version id → metadata), `prefix:pj:names` (set), `prefix:pj:serving`
    /// and `prefix:pj:active` (hashes: name → version id).
    pub async fn register_projection_version(
        &self,
        name: &str,
        vid: &str,
        meta: &str,
    ) -> Result<bool> {
        self.projection(name, vid)?;
        if meta.len() > MAX_VERSION_META_BYTES {
            return Err(Error::invalid(format!(
                "version metadata is {} bytes; at most {MAX_VERSION_META_BYTES} are allowed",
                meta.len()
            )));
        }
        let key = projection_registry_key(self.config(), &format!("versions:{name}"));
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(&key).arg(vid).arg(meta);
        let created: bool = self.small_cmd(&key, cmd).await?;
        if !created {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&key).arg(vid);
            let stored: Option<String> = self.small_cmd(&key, cmd).await?;
            if stored.as_deref().is_some_and(|s| s != meta) {
                return Err(Error::refused(format!(
                    "version {vid:?} of projection {name:?} is registered with other metadata"
                )));
            }
        }
        // The name last: listed only once a version is there.
        let names = projection_registry_key(self.config(), "names");
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&names).arg(name);
        self.small_cmd::<u64>(&names, cmd).await?;
        Ok(created)
    }

    /// A projection's versions and pointers; [not found](crate::ErrorKind::NotFound)
    /// if it has no version.
    pub async fn projection_info(&self, name: &str) -> Result<ProjectionInfo> {
        validate_projection_name(name)?;
        let key = projection_registry_key(self.config(), &format!("versions:{name}"));
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let versions: BTreeMap<String, String> = self.small_cmd(&key, cmd).await?;
        let serving = self.projection_pointer(name, Pointer::Serving).await?;
        let active = self.projection_pointer(name, Pointer::Active).await?;
        if versions.is_empty() && serving.is_none() && active.is_none() {
            return Err(Error::not_found(format!("no projection {name:?}")));
        }
        Ok(ProjectionInfo {
            name: name.to_owned(),
            versions,
            serving,
            active,
        })
    }

    /// Every projection with a version, sorted by name.
    pub async fn list_projections(&self) -> Result<Vec<ProjectionInfo>> {
        let names = projection_registry_key(self.config(), "names");
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(&names);
        let mut all: Vec<String> = self.small_cmd(&names, cmd).await?;
        all.sort();
        let mut out = Vec::new();
        for name in all {
            match self.projection_info(&name).await {
                Ok(info) => out.push(info),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A projection's serving or active version.
    pub async fn projection_pointer(&self, name: &str, which: Pointer) -> Result<Option<String>> {
        validate_projection_name(name)?;
        let key = projection_registry_key(self.config(), which.key());
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&key).arg(name);
        self.small_cmd(&key, cmd).await
    }

    /// Moves a projection's serving or active pointer from `expected` (`None`: no
    /// pointer yet) to `to` (`None` clears it), atomically: if it is not at
    /// `expected`, nothing changes and it is a [conflict](crate::ErrorKind::Conflict)
    /// naming where it is. `to` must be a registered version
    /// ([not found](crate::ErrorKind::NotFound) otherwise). Switching reads to a new
    /// version is `set_projection_pointer(name, Serving, Some(old), Some(new))`;
    /// pointing back at the old one is the rollback.
    pub async fn set_projection_pointer(
        &self,
        name: &str,
        which: Pointer,
        expected: Option<&str>,
        to: Option<&str>,
    ) -> Result<()> {
        validate_projection_name(name)?;
        for vid in expected.iter().chain(to.iter()) {
            validate_version_id(vid)?;
        }
        if let Some(vid) = to {
            let key = projection_registry_key(self.config(), &format!("versions:{name}"));
            let mut cmd = redis::cmd("HEXISTS");
            cmd.arg(&key).arg(vid);
            if !self.small_cmd::<bool>(&key, cmd).await? {
                return Err(Error::not_found(format!(
                    "projection {name:?} has no version {vid:?}"
                )));
            }
        }
        let key = projection_registry_key(self.config(), which.key());
        let mut inv = POINTER_SCRIPT.prepare_invoke();
        inv.key(&key)
            .arg(name)
            .arg(expected.unwrap_or(""))
            .arg(to.unwrap_or(""));
        let inv = &inv;
        let reply: Value = self
            .with_reconnect(&key, move |mut con| async move {
                inv.invoke_async::<Value>(&mut con).await
            })
            .await?;
        let r = items(&reply);
        match r.first().and_then(text).as_deref() {
            Some("ok") => Ok(()),
            Some("conflict") => {
                let actual = r.get(1).and_then(text).unwrap_or_default();
                // A retry after a lost reply finds its own change done.
                if actual == to.unwrap_or("") {
                    return Ok(());
                }
                Err(Error::refused(format!(
                    "the {} version of projection {name:?} is {}, not {}",
                    which.key(),
                    if actual.is_empty() {
                        "unset".to_owned()
                    } else {
                        format!("{actual:?}")
                    },
                    expected.map_or_else(|| "unset".to_owned(), |e| format!("{e:?}")),
                )))
            }
            _ => Err(Error::corrupt(
                key,
                "the pointer script gave an unexpected reply",
            )),
        }
    }

    /// Removes a version: its keys (see [`ProjectionVersion::drop_version`]) and its
    /// registration. Refused ([conflict](crate::ErrorKind::Conflict)) while the
    /// serving or active pointer names it. A removal that failed half-way is finished
    /// by removing again.
    pub async fn remove_projection_version(&self, name: &str, vid: &str) -> Result<()> {
        let version = self.projection(name, vid)?;
        for which in [Pointer::Serving, Pointer::Active] {
            if self.projection_pointer(name, which).await?.as_deref() == Some(vid) {
                return Err(Error::refused(format!(
                    "version {vid:?} of projection {name:?} is the {} one; point elsewhere first",
                    which.key()
                )));
            }
        }
        version.drop_version().await?;
        let key = projection_registry_key(self.config(), &format!("versions:{name}"));
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(&key).arg(vid);
        self.small_cmd::<u64>(&key, cmd).await?;
        let mut cmd = redis::cmd("HLEN");
        cmd.arg(&key);
        if self.small_cmd::<u64>(&key, cmd).await? == 0 {
            let names = projection_registry_key(self.config(), "names");
            let mut cmd = redis::cmd("SREM");
            cmd.arg(&names).arg(name);
            self.small_cmd::<u64>(&names, cmd).await?;
        }
        Ok(())
    }

    /// Every category partition stream of the source types, in type then partition
    /// order: what a projection's checkpoint holds positions for. Checks each type's
    /// recorded partition count.
    pub async fn projection_sources(&self, aggregate_types: &[&str]) -> Result<Vec<SourceStream>> {
        let mut out = Vec::new();
        for t in aggregate_types {
            self.check_partitions(t, false).await?;
            for p in 0..self.config().partitions_of(t) {
                out.push(SourceStream {
                    aggregate_type: (*t).to_owned(),
                    partition: p,
                    key: self.category_key(t, p)?,
                });
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Reads up to `count` events (at most
    /// [`MAX_CATEGORY_COUNT`](crate::MAX_CATEGORY_COUNT)) of the source streams after
    /// the checkpoint's positions (a stream not in it from its start), merged by
    /// stream id: each partition's events (so each aggregate's) in order. A runner
    /// applies them, then commits with `advance` set to the last position it applied
    /// per stream. One `XRANGE` per partition, in parallel (the lean reads of
    /// [`read_category`](Self::read_category)).
    pub async fn read_projection_sources(
        &self,
        sources: &[SourceStream],
        checkpoint: &Checkpoint,
        count: usize,
    ) -> Result<Vec<SourceEvent>> {
        let count = count.min(crate::MAX_CATEGORY_COUNT);
        if count == 0 {
            return Ok(Vec::new());
        }
        let reads = sources.iter().map(|s| {
            let mut opts = CategoryReadOptions::new()
                .partition(s.partition)
                .count(count);
            if let Some(after) = checkpoint.get(&s.key) {
                opts = opts.after(after.clone());
            }
            async move {
                let events = self.read_category(&s.aggregate_type, opts).await?;
                Ok::<_, Error>(events.into_iter().map(|event| SourceEvent {
                    stream: s.key.clone(),
                    event,
                }))
            }
        });
        let mut all: Vec<(usize, SourceEvent)> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .enumerate()
            .flat_map(|(i, events)| events.map(move |e| (i, e)))
            .collect();
        // Stable: within a stream, its order; across, by id then source.
        all.sort_by_key(|(i, e)| (id_order(&e.event.position), *i));
        all.truncate(count);
        Ok(all.into_iter().map(|(_, e)| e).collect())
    }

    /// The source streams from which entries after the checkpoint's position (from
    /// the start for a stream not in it) may have been trimmed away before being
    /// applied (the category trim,
    /// [`StoreConfig::category_max_len`](crate::StoreConfig::category_max_len)): a
    /// projection reading on would skip events. A runner checks before it reads on
    /// from a checkpoint (and a rebuild before it starts from 0), and stops with a
    /// failure rather than skip silently.
    ///
    /// One `XINFO STREAM` per stream. Category streams are trimmed from their head
    /// only, so a stream is reported when it ever lost entries and the checkpoint's
    /// position is before its first entry left (exact, except that a position that
    /// is precisely the last entry trimmed is reported too: Redis 7.0 does not say
    /// which entry that was, `max-deleted-entry-id` ignores trims).
    pub async fn trimmed_projection_sources(
        &self,
        sources: &[SourceStream],
        checkpoint: &Checkpoint,
    ) -> Result<Vec<SourceStream>> {
        let checks = sources.iter().map(|s| async move {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("STREAM").arg(&s.key);
            let cmd = &cmd;
            let info: Result<Value> = self
                .with_reconnect(&s.key, move |mut con| async move {
                    cmd.query_async(&mut con).await
                })
                .await;
            let info = match info {
                Ok(v) => v,
                // No such stream: nothing was ever trimmed from it.
                Err(e) if e.to_string().contains("no such key") => return Ok(None),
                Err(e) => return Err(e),
            };
            let num = |name: &str| info_field(&info, name).and_then(|v| v.parse::<u64>().ok());
            let (Some(added), Some(len)) = (num("entries-added"), num("length")) else {
                return Err(Error::corrupt(&s.key, "XINFO STREAM without entries-added"));
            };
            if added <= len {
                return Ok(None); // nothing ever removed
            }
            let after = checkpoint.get(&s.key).map_or((0, 0), |p| id_order(p));
            let first =
                info_value(&info, "first-entry").and_then(|e| items(e).first().and_then(text));
            let behind = match first {
                Some(first) => after < id_order(&first),
                // Empty: everything up to the last id was removed.
                None => {
                    after < id_order(&info_field(&info, "last-generated-id").unwrap_or_default())
                }
            };
            Ok(behind.then(|| s.clone()))
        });
        Ok(futures::future::try_join_all(checks)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}

impl EventStore {
    /// How far the checkpoint is behind each source stream: its last entry against
    /// the position applied (one `XREVRANGE … COUNT 1` per stream).
    pub async fn projection_lag(
        &self,
        sources: &[SourceStream],
        checkpoint: &Checkpoint,
    ) -> Result<Vec<SourceLag>> {
        futures::future::try_join_all(sources.iter().map(|s| async move {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("STREAM").arg(&s.key);
            let cmd = &cmd;
            let info: Result<Value> = self
                .with_reconnect(&s.key, move |mut con| async move {
                    cmd.query_async(&mut con).await
                })
                .await;
            let info = match info {
                Ok(v) => Some(v),
                // No such stream: nothing was ever appended to it.
                Err(e) if e.to_string().contains("no such key") => None,
                Err(e) => return Err(e),
            };
            let num = |name: &str| {
                info.as_ref()
                    .and_then(|i| info_field(i, name))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let head = info
                .as_ref()
                .and_then(|i| info_value(i, "last-entry"))
                .and_then(|e| items(e).first().and_then(text));
            let position = checkpoint.get(&s.key).cloned();
            let at = position.as_deref().map_or((0, 0), id_order);
            let caught_up = head.as_deref().is_none_or(|h| id_order(h) <= at);
            Ok(SourceLag {
                stream: s.key.clone(),
                behind_ms: match &head {
                    Some(h) if !caught_up => id_order(h).0.saturating_sub(at.0),
                    _ => 0,
                },
                position,
                head,
                caught_up,
                added: num("entries-added"),
                length: num("length"),
            })
        }))
        .await
    }
}

/// A field of an `XINFO` reply (a flat array or a map).
fn info_value<'a>(info: &'a Value, name: &str) -> Option<&'a Value> {
    match info {
        Value::Map(m) => m
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        other => items(other)
            .chunks(2)
            .find(|c| c.first().and_then(text).as_deref() == Some(name))
            .and_then(|c| c.get(1)),
    }
}

/// A text field of an `XINFO` reply.
fn info_field(info: &Value, name: &str) -> Option<String> {
    info_value(info, name).and_then(text)
}

impl ProjectionVersion {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version id.
    pub fn vid(&self) -> &str {
        &self.vid
    }

    /// Runs one operation of the projections script on this version.
    async fn script(&self, args: &[&str]) -> Result<Vec<Value>> {
        let mut inv = SCRIPT.prepare_invoke();
        for k in self.keys.all() {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        let inv = &inv;
        let reply: Value = self
            .store
            .with_reconnect(&self.keys.docs, move |mut con| async move {
                inv.invoke_async::<Value>(&mut con).await
            })
            .await?;
        match reply {
            Value::Array(items) if !items.is_empty() => Ok(items),
            _ => Err(self.corrupt("the projections script gave an unexpected reply")),
        }
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::corrupt(&self.keys.stat, reason)
    }

    fn check_lease(&self, lease: &Lease) -> Result<()> {
        if lease.name != self.name || lease.vid != self.vid {
            return Err(Error::invalid(format!(
                "the lease is for version {:?} of projection {:?}, not {:?} of {:?}",
                lease.vid, lease.name, self.vid, self.name
            )));
        }
        Ok(())
    }

    /// Takes the lease for `holder` for `ttl` (1 ms to [`MAX_LEASE_TTL`]) if nobody
    /// else holds it: `None` while another holder does. Taken again by the same
    /// holder, it comes with a new token (which fences an older process that used the
    /// same name: give each process a name of its own). Tokens only grow, also across
    /// a reset or a drop of the version.
    pub async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        validate_holder(holder)?;
        let ttl = ttl_ms(ttl)?.to_string();
        let r = self.script(&["acquire", holder, &ttl]).await?;
        if text(&r[0]).as_deref() != Some("ok") {
            return Ok(None); // 'held' by another
        }
        let token = r
            .get(1)
            .and_then(int)
            .ok_or_else(|| self.corrupt("a lease token is not a number"))?;
        Ok(Some(Lease {
            name: self.name.clone(),
            vid: self.vid.clone(),
            holder: holder.to_owned(),
            token,
        }))
    }

    /// Extends the lease to `ttl` from now, if it is still this one (same token and
    /// holder): false when it was lost (expired, taken, reset).
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        self.check_lease(lease)?;
        let ttl = ttl_ms(ttl)?.to_string();
        let token = lease.token.to_string();
        let r = self.script(&["renew", &token, &lease.holder, &ttl]).await?;
        Ok(text(&r[0]).as_deref() == Some("ok"))
    }

    /// Gives the lease up (another host may take it at once), if it is still this
    /// one: false when it was lost already.
    pub async fn release_lease(&self, lease: &Lease) -> Result<bool> {
        self.check_lease(lease)?;
        let token = lease.token.to_string();
        let r = self.script(&["release", &token, &lease.holder]).await?;
        Ok(text(&r[0]).as_deref() == Some("ok"))
    }

    /// Commits one batch (see [`CommitBatch`]) in one script, if `lease` is still the
    /// version's lease and its checkpoint is `batch.expected`; all or nothing.
    ///
    /// Refused, with nothing written, as
    /// - [`Fenced`](crate::ErrorKind::Fenced) when the lease is no longer this one
    ///   (expired, taken by another holder, or the version was reset): stop, acquire
    ///   the lease again, read the checkpoint again;
    /// - [`Conflict`](crate::ErrorKind::Conflict) when the checkpoint is not the one
    ///   expected;
    /// - [`InvalidInput`](crate::ErrorKind::InvalidInput) for a batch out of bounds
    ///   ([`MAX_COMMIT_WRITES`], [`MAX_COMMIT_DEAD_LETTERS`], [`MAX_COMMIT_BYTES`],
    ///   [`MAX_DOC_BYTES`], [`MAX_DOC_KEY_BYTES`], [`MAX_CHECKPOINT_STREAMS`],
    ///   [`MAX_ERROR_CHARS`]), a document that is not JSON, a bad position, or an
    ///   advance that does not move past the expected position.
    ///
    /// If the connection breaks before the reply, the store sends the commit again
    /// with the same commit id; the script recognises it and writes nothing
    /// (`already_committed`).
    pub async fn commit(&self, lease: &Lease, batch: &CommitBatch) -> Result<CommitOutcome> {
        self.check_lease(lease)?;
        validate_checkpoint("expected", &batch.expected)?;
        validate_checkpoint("advanced", &batch.advance)?;
        for (stream, to) in &batch.advance {
            if let Some(from) = batch.expected.get(stream)
                && id_order(to) <= id_order(from)
            {
                return Err(Error::invalid(format!(
                    "the checkpoint of {stream} would go from {from} to {to}: not forward"
                )));
            }
        }
        let mut target = batch.expected.clone();
        target.extend(batch.advance.clone());
        if target.len() > MAX_CHECKPOINT_STREAMS {
            return Err(Error::invalid(format!(
                "the checkpoint would name {} streams; at most {MAX_CHECKPOINT_STREAMS} are allowed",
                target.len()
            )));
        }
        if batch.writes.len() > MAX_COMMIT_WRITES {
            return Err(Error::invalid(format!(
                "{} document writes in one commit; at most {MAX_COMMIT_WRITES} are allowed",
                batch.writes.len()
            )));
        }
        if batch.dead_letters.len() > MAX_COMMIT_DEAD_LETTERS {
            return Err(Error::invalid(format!(
                "{} dead letters in one commit; at most {MAX_COMMIT_DEAD_LETTERS} are allowed",
                batch.dead_letters.len()
            )));
        }
        if batch.events > u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "a commit covers at most {} events, not {}",
                u32::MAX,
                batch.events
            )));
        }
        let cap = batch.changes_max_len.unwrap_or(DEFAULT_CHANGES_MAX_LEN);
        if cap == 0 {
            return Err(Error::invalid(
                "the change stream must keep at least 1 entry",
            ));
        }
        let mut bytes = 0usize;
        for w in &batch.writes {
            validate_doc_key(&w.key)?;
            validate_position(&w.position)?;
            if let Some(doc) = &w.doc {
                if doc.len() > MAX_DOC_BYTES {
                    return Err(Error::invalid(format!(
                        "the document at {:?} is {} bytes; at most {MAX_DOC_BYTES} are allowed",
                        w.key,
                        doc.len()
                    )));
                }
                check_json(doc).map_err(|e| {
                    Error::invalid(format!("the document at {:?} is not JSON: {e}", w.key))
                })?;
                bytes += doc.len();
            }
            bytes += w.key.len() + w.position.len();
        }
        let mut dead_args: Vec<String> = Vec::with_capacity(batch.dead_letters.len() * 11);
        for d in &batch.dead_letters {
            validate_stream_key(&d.stream)?;
            validate_position(&d.event.position)?;
            validate_error_text(&d.error)?;
            let e = &d.event;
            dead_args.extend([
                d.stream.clone(),
                e.position.clone(),
                e.event_id.clone(),
                e.aggregate_type.clone(),
                e.aggregate_id.clone(),
                e.event_type.clone(),
                e.data.clone(),
                e.timestamp.clone(),
                e.version.clone(),
                e.revision.to_string(),
                d.error.clone(),
            ]);
        }
        bytes += dead_args.iter().map(String::len).sum::<usize>();
        if let Some(f) = &batch.failure {
            validate_error_text(&f.error)?;
            bytes += f.stream.len()
                + f.position.len()
                + f.event_id.len()
                + f.aggregate_type.len()
                + f.aggregate_id.len()
                + f.event_type.len()
                + f.error.len();
        }
        if bytes > MAX_COMMIT_BYTES {
            return Err(Error::invalid(format!(
                "the commit holds {bytes} bytes; at most {MAX_COMMIT_BYTES} are allowed (commit smaller batches)"
            )));
        }

        let commit_id = uuid::Uuid::new_v4().to_string();
        let token = lease.token.to_string();
        let mut args: Vec<&str> = vec!["commit", &token, &lease.holder, &commit_id];
        let n_expected = batch.expected.len().to_string();
        args.push(&n_expected);
        for (s, p) in &batch.expected {
            args.extend([s.as_str(), p.as_str()]);
        }
        let n_advance = batch.advance.len().to_string();
        args.push(&n_advance);
        for (s, p) in &batch.advance {
            args.extend([s.as_str(), p.as_str()]);
        }
        let events = batch.events.to_string();
        args.push(&events);
        let n_writes = batch.writes.len().to_string();
        args.push(&n_writes);
        for w in &batch.writes {
            match &w.doc {
                Some(doc) => args.extend(["p", w.key.as_str(), doc.as_str()]),
                None => args.extend(["d", w.key.as_str(), ""]),
            }
            args.push(&w.position);
        }
        let n_dead = batch.dead_letters.len().to_string();
        args.push(&n_dead);
        args.extend(dead_args.iter().map(String::as_str));
        match &batch.failure {
            Some(f) => args.extend([
                "1",
                f.stream.as_str(),
                f.position.as_str(),
                f.event_id.as_str(),
                f.aggregate_type.as_str(),
                f.aggregate_id.as_str(),
                f.event_type.as_str(),
                f.error.as_str(),
            ]),
            None => args.push("0"),
        }
        let cap = cap.to_string();
        args.push(&cap);

        let r = self.script(&args).await?;
        match text(&r[0]).as_deref() {
            Some(outcome @ ("ok" | "again")) => Ok(CommitOutcome {
                checkpoint: target,
                changed: r.get(1).and_then(int).unwrap_or(0),
                last_change: r.get(2).and_then(text).and_then(non_empty),
                already_committed: outcome == "again",
            }),
            Some("fenced") => {
                let now = r.get(1).and_then(text).unwrap_or_default();
                let now = match parse_lease(&now) {
                    Some((t, h)) => format!("the lease is {h}'s with token {t}"),
                    None => "nobody holds the lease".to_owned(),
                };
                Err(Error::fenced(format!(
                    "version {:?} of projection {:?}: the lease of {} with token {} is lost \
                     ({now}); nothing was committed",
                    self.vid, self.name, lease.holder, lease.token
                )))
            }
            Some("moved") => {
                let found: Checkpoint = r
                    .get(1)
                    .map(pairs)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                Err(Error::refused(format!(
                    "version {:?} of projection {:?}: the checkpoint is {found:?}, not the \
                     {:?} the batch expected; nothing was committed",
                    self.vid, self.name, batch.expected
                )))
            }
            Some("corrupt") => Err(Error::corrupt(
                r.get(1).and_then(text).unwrap_or_default(),
                format!(
                    "holds a {}, not what Streamfold writes there; nothing was committed",
                    r.get(2).and_then(text).unwrap_or_default()
                ),
            )),
            _ => Err(self.corrupt("the projections script gave an unexpected reply")),
        }
    }

    /// The checkpoint: the last position applied per source stream.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&self.keys.ckpt);
        self.store.small_cmd(&self.keys.ckpt, cmd).await
    }

    /// The document at `key`, `None` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        validate_doc_key(key)?;
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&self.keys.docs).arg(key);
        self.store.small_cmd(&self.keys.docs, cmd).await
    }

    /// Up to `limit` documents (1 to [`MAX_DOC_PAGE`]) whose keys start with `prefix`
    /// (empty: all), after key `after` (exclusive), in key order (bytes), with the
    /// change head read in the same step. Keys and documents are read together: a
    /// page never names a deleted document.
    pub async fn page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<DocPage> {
        if !(1..=MAX_DOC_PAGE).contains(&limit) {
            return Err(Error::invalid(format!(
                "a page holds 1 to {MAX_DOC_PAGE} documents, not {limit}"
            )));
        }
        if prefix.len() > MAX_DOC_KEY_BYTES {
            return Err(Error::invalid("the key prefix is longer than a key may be"));
        }
        let min = match after {
            Some(a) => {
                validate_doc_key(a)?;
                if a.as_bytes() >= prefix.as_bytes() {
                    format!("({a}")
                } else {
                    format!("[{prefix}")
                }
            }
            None => format!("[{prefix}"),
        };
        let limit_text = limit.to_string();
        let r = self.script(&["page", prefix, &min, &limit_text]).await?;
        let docs = pairs(r.get(1).unwrap_or(&Value::Nil));
        let more = r.get(2).and_then(int) == Some(1);
        Ok(DocPage {
            next_after: if more {
                docs.last().map(|(k, _)| k.clone())
            } else {
                None
            },
            docs,
            head: r.get(3).and_then(text).and_then(non_empty),
        })
    }

    /// The id of the version's last change entry (`None` before the first): it moves
    /// with every commit that changes a document, and with a reset, and with nothing
    /// else, so `"{vid}:{head}"` is an ETag for the whole read model (and a page of
    /// it). For one document, its text is its own ETag (hash it). One status call.
    pub async fn head(&self) -> Result<Option<String>> {
        Ok(self.status().await?.head)
    }

    /// Up to `count` changes (1 to [`MAX_CHANGES_PAGE`]) after change id `after`
    /// (from the oldest kept by default), with `missed` set when changes after
    /// `after` are gone (trimmed, or dropped by a reset).
    pub async fn changes(&self, after: Option<&str>, count: usize) -> Result<ChangesPage> {
        if !(1..=MAX_CHANGES_PAGE).contains(&count) {
            return Err(Error::invalid(format!(
                "a read takes 1 to {MAX_CHANGES_PAGE} changes, not {count}"
            )));
        }
        if let Some(a) = after {
            validate_position(a)?;
        }
        let count_text = count.to_string();
        let r = self
            .script(&["changes", after.unwrap_or(""), &count_text])
            .await?;
        let changes: Vec<Change> = r
            .get(1)
            .map(items)
            .unwrap_or_default()
            .iter()
            .filter_map(change_of)
            .collect();
        // The last change trimmed away (or dropped by a reset): a reader before it
        // missed some.
        let trimmed = r.get(3).and_then(text).unwrap_or_default();
        let from = after.map_or((0, 0), id_order);
        let missed = !trimmed.is_empty() && id_order(&trimmed) > from;
        Ok(ChangesPage {
            next: changes
                .last()
                .map(|c| c.id.clone())
                .or_else(|| after.map(str::to_owned)),
            changes,
            missed,
        })
    }

    /// Follows the change stream after change id `after` (from the oldest kept by
    /// default): see [`ChangeFeed`].
    pub fn watch_changes(
        &self,
        after: Option<&str>,
        count: usize,
        block: Duration,
    ) -> Result<ChangeFeed> {
        if !(1..=MAX_CHANGES_PAGE).contains(&count) {
            return Err(Error::invalid(format!(
                "a read takes 1 to {MAX_CHANGES_PAGE} changes, not {count}"
            )));
        }
        if block.is_zero() {
            return Err(Error::invalid("the block timeout must be at least 1 ms"));
        }
        if let Some(a) = after {
            validate_position(a)?;
        }
        Ok(ChangeFeed {
            version: self.clone(),
            last: after.map(str::to_owned),
            count,
            block,
            conn: None,
        })
    }

    /// Up to `count` dead letters (1 to [`MAX_CHANGES_PAGE`]) after dead-letter id
    /// `after`, oldest first.
    pub async fn dead_letters(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredDeadLetter>> {
        if !(1..=MAX_CHANGES_PAGE).contains(&count) {
            return Err(Error::invalid(format!(
                "a read takes 1 to {MAX_CHANGES_PAGE} dead letters, not {count}"
            )));
        }
        let start = match after {
            Some(a) => {
                validate_position(a)?;
                format!("({a}")
            }
            None => "-".to_owned(),
        };
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.keys.dead)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(count);
        let reply: Value = self.store.small_cmd(&self.keys.dead, cmd).await?;
        Ok(items(&reply)
            .iter()
            .filter_map(|entry| {
                let e = items(entry);
                let id = text(e.first()?)?;
                let f: BTreeMap<String, String> = pairs(e.get(1)?).into_iter().collect();
                let get = |n: &str| f.get(n).cloned().unwrap_or_default();
                Some(StoredDeadLetter {
                    id,
                    letter: DeadLetter {
                        stream: get("stream"),
                        error: get("error"),
                        event: RecordedEvent {
                            event_id: get("event_id"),
                            aggregate_type: get("aggregate_type"),
                            aggregate_id: get("aggregate_id"),
                            event_type: get("event_type"),
                            data: get("data"),
                            timestamp: get("timestamp"),
                            version: get("version"),
                            revision: get("revision").parse().unwrap_or(0),
                            position: get("position"),
                        },
                    },
                })
            })
            .collect())
    }

    /// The version's status and lag figures (one script call, consistent).
    pub async fn status(&self) -> Result<ProjectionStatus> {
        let r = self.script(&["status"]).await?;
        let checkpoint: Checkpoint = r
            .get(1)
            .map(pairs)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let stat: BTreeMap<String, String> = r
            .get(2)
            .map(pairs)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let num = |n: &str| stat.get(n).and_then(|v| v.parse::<u64>().ok());
        let get = |n: &str| stat.get(n).cloned().unwrap_or_default();
        let failure = stat.contains_key("f:error").then(|| ProjectionFailure {
            stream: get("f:stream"),
            position: get("f:position"),
            event_id: get("f:event_id"),
            aggregate_type: get("f:aggregate_type"),
            aggregate_id: get("f:aggregate_id"),
            event_type: get("f:event_type"),
            error: get("f:error"),
            at_ms: num("f:at_ms").unwrap_or(0),
        });
        let lease = r
            .get(3)
            .and_then(text)
            .and_then(|v| parse_lease(&v))
            .map(|(token, holder)| LeaseHolder {
                holder,
                token,
                ttl_ms: r.get(4).and_then(int).unwrap_or(0),
            });
        Ok(ProjectionStatus {
            name: self.name.clone(),
            vid: self.vid.clone(),
            checkpoint,
            events: num("events").unwrap_or(0),
            commits: num("commits").unwrap_or(0),
            last_commit_ms: num("last_commit_ms"),
            failure,
            dead_letters: r.get(5).and_then(int).unwrap_or(0),
            dead_letters_total: num("dead").unwrap_or(0),
            lease,
            head: r.get(6).and_then(text).and_then(non_empty),
        })
    }

    /// Rebuild from position 0: drops the documents, the checkpoint, the counters,
    /// the failure and the dead letters, and takes the lease away (its holder's next
    /// commit is [fenced](crate::ErrorKind::Fenced); whoever acquires it next starts
    /// from an empty checkpoint), in one step. The fence stays, so tokens keep growing.
    /// The change stream is emptied and gets one [`ChangeOp::Reset`] entry; readers
    /// resuming after an older change see `missed`. Returns the reset entry's id.
    pub async fn reset(&self) -> Result<String> {
        let r = self.script(&["reset"]).await?;
        r.get(1)
            .and_then(text)
            .ok_or_else(|| self.corrupt("the projections script gave an unexpected reply"))
    }

    /// Deletes every key of the version (`UNLINK`, one command: the keys share a
    /// slot), lease and fence included. The registry is left alone (see
    /// [`EventStore::remove_projection_version`]). Should the version be made again,
    /// its fence starts from the Redis clock, above any token handed out before. The
    /// lease goes too, so a runner of the version is fenced at its next commit; one
    /// that acquires the lease again would write under these keys anew, so stop the
    /// runners first (point `active` elsewhere).
    pub async fn drop_version(&self) -> Result<()> {
        let mut cmd = redis::cmd("UNLINK");
        for k in self.keys.all() {
            cmd.arg(k);
        }
        self.store.small_cmd::<u64>(&self.keys.docs, cmd).await?;
        Ok(())
    }
}

/// A live read of a version's change stream, from
/// [`ProjectionVersion::watch_changes`]: call [`next`](Self::next) in a loop.
///
/// Each call reads what follows the last change handed out with the script (which
/// also says whether changes were `missed`: trimmed, or dropped by a reset); when
/// there is nothing, it waits with `XREAD BLOCK` on a connection of the feed's own
/// (up to the block timeout, then returns an empty page) and reads again. Its
/// [`position`](Self::position) resumes exactly: a new feed after it misses and
/// repeats nothing. After an error the feed may be called again; it reconnects.
pub struct ChangeFeed {
    version: ProjectionVersion,
    last: Option<String>,
    count: usize,
    block: Duration,
    conn: Option<Dedicated>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("name", &self.version.name)
            .field("vid", &self.version.vid)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// The id of the last change handed out (the start position before any).
    pub fn position(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// The next changes: at once if there are any, else after waiting up to the
    /// block timeout (then possibly none).
    pub async fn next(&mut self) -> Result<ChangesPage> {
        let page = self.read().await?;
        if !page.changes.is_empty() || page.missed {
            return Ok(page);
        }
        self.wait().await?;
        self.read().await
    }

    async fn read(&mut self) -> Result<ChangesPage> {
        let page = self
            .version
            .changes(self.last.as_deref(), self.count)
            .await?;
        if let Some(last) = page.changes.last() {
            self.last = Some(last.id.clone());
        }
        Ok(page)
    }

    /// `XREAD COUNT 1 BLOCK ms STREAMS changes last`: returns when a change follows
    /// the last one handed out, or at the block timeout.
    async fn wait(&mut self) -> Result<()> {
        let store = &self.version.store;
        let key = self.version.keys.changes.as_str();
        if self.conn.is_none() {
            let c = store
                .inner
                .reader
                .dedicated(key)
                .await
                .map_err(|e| store.map_lean_error(e, key))?;
            self.conn = Some(c);
        }
        let after = self.last.as_deref().unwrap_or("0-0");
        let block = self.block.as_millis().max(1).to_string();
        let args: [&[u8]; 8] = [
            b"XREAD",
            b"COUNT",
            b"1",
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            key.as_bytes(),
            after.as_bytes(),
        ];
        let timeout = self.block + store.config().response_timeout;
        let conn = self.conn.as_mut().expect("connected just above");
        let done = conn
            .request(&args, timeout, |mut reply: Frame<'_>| {
                reply.skip().map_err(|e| Error::corrupt(key, e))
            })
            .await;
        if done.is_err() {
            self.conn = None; // its replies may be out of step now
        }
        done.map_err(|e| store.map_lean_error(e, key))
    }
}

impl EventStore {
    /// A lean connection's error mapped as the crate's reads map them.
    fn map_lean_error(&self, e: Error, key: &str) -> Error {
        match e.into_redis() {
            Ok(e) => self.map_err(e, key),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_projection_name("orders:by-customer").is_ok());
        for bad in ["", "a b", "a{b", "a}b", &"p".repeat(129)] {
            assert!(validate_projection_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_version_id("sha256-0a1B.x_y").is_ok());
        for bad in ["", "a:b", "a b", "a{", &"v".repeat(129)] {
            assert!(validate_version_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_holder("host-1/pid-2").is_ok());
        assert!(validate_holder("a b").is_err());
    }

    #[test]
    fn keys_share_one_tag() {
        let keys = projection_keys(&crate::StoreConfig::default(), "orders", "v1");
        assert_eq!(keys.docs, "sf:pj:{orders:v1}:docs");
        for k in keys.all() {
            assert_eq!(crate::hash_slot(k), crate::hash_slot(&keys.docs), "{k}");
        }
    }

    #[test]
    fn leases_parse() {
        assert_eq!(parse_lease("12 h-1"), Some((12, "h-1".to_owned())));
        assert_eq!(parse_lease("x h"), None);
    }
}
