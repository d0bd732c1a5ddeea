//! Durable subscriptions: named consumer groups over a type's category partitions,
//! with acknowledgements, redelivery, parking and lag (see the crate docs, under
//! "Durable subscriptions", for the guarantees and the keys).
//!
//! Every operation on a partition is one call of `groups.lua`, whose keys share the
//! partition's hash tag: atomic, and one slot on a Redis Cluster. Handing out a free
//! partition's new entries takes two: `fetch` says the partition is free, the store
//! reads the entries and chooses the batch, and `deliver` hands them out only if the
//! partition is still as `fetch` left it (entries carried through Lua cost more than
//! the extra round trip).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Value;

use crate::reply::{id_order, int, items, text};
use serde::{Deserialize, Serialize};

use crate::EventStore;
use crate::config::Layout;
use crate::error::{Error, Result};
use crate::keys::{GroupKeys, group_keys, groups_registry_key, type_char_allowed, validate_type};
use crate::model::{RecordedEvent, digits};
use crate::read::{category_position, category_positions};
use crate::wire::Frame;

/// The groups script, loaded once per Redis and called by SHA like the append script.
static GROUPS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("holds.lua"),
        include_str!("groups.lua")
    ))
});

/// Where the next fetch starts among a type's partitions: turns at every fetch, so
/// that consumers polling at once spread over the partitions instead of all asking
/// the first one.
static ROTATION: AtomicUsize = AtomicUsize::new(0);

/// The ack timeout of a group created without one.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;
/// The longest ack timeout a group may have (a day).
pub const MAX_ACK_TIMEOUT_MS: u64 = 86_400_000;
/// How often an event is delivered at most, for a group created without a limit;
/// then it is parked.
pub const DEFAULT_MAX_DELIVERIES: u32 = 10;
/// The largest `max_deliveries` a group may have.
pub const MAX_MAX_DELIVERIES: u32 = 1_000;
/// Longest group or consumer name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 128;
/// The most deliveries one fetch hands out.
pub const MAX_FETCH: usize = 1_000;
/// The most delivery tokens one ack or nack takes.
pub const MAX_SETTLE: usize = 10_000;
/// Longest nack reason, in characters.
pub const MAX_REASON_CHARS: usize = 4_096;
/// The most parked entries one [`EventStore::parked`] call returns.
pub const MAX_PARKED_PAGE: usize = 1_000;
/// How often a waiting [`EventStore::fetch_wait`] asks again when nothing woke it.
pub const REPOLL: Duration = Duration::from_millis(250);
/// Entries a fetch reads first from a free partition while choosing its batch (the
/// first time; then one more than the partition's last batch, at least
/// [`MIN_CANDIDATES`]); each further read takes twice as many.
const CANDIDATES: usize = 32;
const MIN_CANDIDATES: usize = 8;
/// The size of the last batch each group handed out on each partition (in this
/// process), `store category-key group` -> entries: a hint for the first read.
static BATCH_HINTS: LazyLock<std::sync::Mutex<HashMap<String, usize>>> =
    LazyLock::new(Default::default);
/// Hints kept at most (then they start over).
const MAX_BATCH_HINTS: usize = 10_000;
/// The partitions (`store category-key group`) whose new entries a fetch of this process is
/// reading and handing out.
static TAKING: LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    LazyLock::new(Default::default);

/// A partition in [`TAKING`] while it lives.
struct Taking(String);

impl Taking {
    /// `None` if another fetch is taking the partition.
    fn new(key: &str) -> Option<Self> {
        TAKING
            .lock()
            .expect("taking poisoned")
            .insert(key.to_owned())
            .then(|| Taking(key.to_owned()))
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        TAKING.lock().expect("taking poisoned").remove(&self.0);
    }
}
/// Parked entries one replay script call moves (a bounded time holding Redis).
const REPLAY_STEP: usize = 500;

/// Where a new group starts reading its category.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupStart {
    /// Every event still in the category (`"beginning"`).
    #[default]
    Beginning,
    /// Only events appended after the group is created (`"end"`).
    End,
    /// After a whole-category position (one stream position per partition,
    /// comma-separated, empty for "from its beginning"), as
    /// [`EventStore::read_category_merged`] gives it.
    After(String),
}

impl fmt::Display for GroupStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupStart::Beginning => f.write_str("beginning"),
            GroupStart::End => f.write_str("end"),
            GroupStart::After(p) => f.write_str(p),
        }
    }
}

impl FromStr for GroupStart {
    type Err = Error;

    /// `beginning`, `end`, or a position (checked against the type when the group is
    /// created).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "beginning" => GroupStart::Beginning,
            "end" => GroupStart::End,
            p if !p.is_empty() && p.split(',').all(|q| q.is_empty() || is_stream_id(q)) => {
                GroupStart::After(p.to_owned())
            }
            _ => {
                return Err(Error::invalid(format!(
                    "group start {s:?} is not \"beginning\", \"end\" or a category position"
                )));
            }
        })
    }
}

impl Serialize for GroupStart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A group's settings. Creating a group again with equal settings changes nothing;
/// with other settings it is a [conflict](crate::ErrorKind::Conflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Where the group starts.
    pub start: GroupStart,
    /// How long a delivery may stay unacknowledged before the event is delivered
    /// again (to whichever consumer fetches its partition next).
    pub ack_timeout_ms: u64,
    /// How often an event is delivered at most; then it is parked.
    pub max_deliveries: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            start: GroupStart::Beginning,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }
}

impl GroupSettings {
    /// From the beginning, the default ack timeout and max deliveries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets where the group starts.
    pub fn start(mut self, start: GroupStart) -> Self {
        self.start = start;
        self
    }

    /// Sets the ack timeout.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Sets how often an event is delivered at most.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }
}

/// A group as created: its type, name, settings and creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// The aggregate type whose category the group follows.
    pub aggregate_type: String,
    /// The group's name.
    pub group: String,
    /// Its settings.
    pub settings: GroupSettings,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: u64,
}

/// What [`EventStore::create_group`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupCreated {
    /// The group (the existing one's creation time if it was there already).
    pub info: GroupInfo,
    /// False if the group existed already with these settings.
    pub created: bool,
}

/// One event handed to a consumer by [`EventStore::fetch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The token to [ack](EventStore::ack) or [nack](EventStore::nack) it with:
    /// `partition/stream id`.
    pub delivery: String,
    /// The category partition it came from.
    pub partition: u32,
    /// How often it has been delivered, this time included (1 the first time).
    pub delivery_count: u64,
    /// The event; its `position` is its stream id in the category partition.
    pub event: RecordedEvent,
}

/// What to do with events a worker could not handle ([`EventStore::nack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver again after this delay (zero: at the next fetch of its partition). The
    /// event stays pending meanwhile, so its partition waits for it: the order per
    /// aggregate holds. The delay may not exceed the group's ack timeout.
    Retry(Duration),
    /// Move it to the group's parked events now.
    Park,
    /// Drop it: acknowledge it without handling it.
    Skip,
}

/// The outcome of an ack or nack.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Settled {
    /// How many deliveries the action applied to.
    pub done: usize,
    /// The tokens of deliveries that are not pending (already acknowledged, parked,
    /// or never delivered): harmless, nothing was done for them.
    pub unknown: Vec<String>,
}

/// Why an event was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParkReason {
    /// It was delivered `max_deliveries` times without being acknowledged.
    MaxDeliveries,
    /// A worker nacked it with [`NackAction::Park`].
    Nacked,
    /// The category trim removed it before it was acknowledged (the event itself is
    /// gone; the record says which one it was).
    Trimmed,
}

/// A parked event, from [`EventStore::parked`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedEvent {
    /// The category partition.
    pub partition: u32,
    /// Its id in the partition's parked stream.
    pub parked_id: String,
    /// Its position (stream id) in the category partition.
    pub position: String,
    /// Why it was parked.
    pub reason: ParkReason,
    /// The last reason a worker gave when it nacked it, if any.
    pub last_error: Option<String>,
    /// How often it had been delivered.
    pub delivery_count: u64,
    /// The event; `None` when it was parked because the trim had removed it.
    pub event: Option<RecordedEvent>,
}

/// A page of parked events, oldest parked first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedPage {
    /// The events.
    pub events: Vec<ParkedEvent>,
    /// The cursor for the next page: `Some` while more may follow, `None` after the
    /// last page.
    pub next: Option<String>,
}

/// What [`EventStore::replay_parked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Replayed {
    /// Parked events put back in front of the group.
    pub replayed: u64,
    /// Parked events left parked: the category trim removed them, they cannot be
    /// delivered again.
    pub kept: u64,
}

/// A group's health: its settings, what it has not handled yet, its consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// The group.
    pub info: GroupInfo,
    /// Events not delivered yet (lag), all partitions; `None` when Redis cannot tell
    /// for some partition (a group started at a position, until it catches up).
    pub undelivered: Option<u64>,
    /// Events delivered and not acknowledged.
    pub pending: u64,
    /// How long the oldest unacknowledged delivery has waited, in ms.
    pub oldest_pending_ms: Option<u64>,
    /// Parked events.
    pub parked: u64,
    /// Replayed parked events waiting to be delivered again.
    pub replaying: u64,
    /// Category entries kept beyond the configured length because this group has not
    /// acknowledged them yet (the trim is held back; the streams grow until it
    /// catches up). 0 when the trim is not held back by this group.
    pub trim_held_back: u64,
    /// The same per partition.
    pub partitions: Vec<PartitionStatus>,
    /// Consumers that have polled, most recent first.
    pub consumers: Vec<ConsumerStatus>,
}

/// One partition of a [`GroupStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u32,
    /// Events not delivered yet (`None`: Redis cannot tell yet).
    pub undelivered: Option<u64>,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Age of the oldest unacknowledged delivery, ms.
    pub oldest_pending_ms: Option<u64>,
    /// Parked events.
    pub parked: u64,
    /// Replayed events waiting.
    pub replaying: u64,
    /// Entries the category trim kept on this partition for this group.
    pub trim_held_back: u64,
    /// The stream id of the last new entry handed out.
    pub last_delivered: String,
}

/// A consumer of a [`GroupStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// When it last fetched, Unix ms (Redis' clock).
    pub last_poll_ms: u64,
    /// How long ago that was, ms.
    pub idle_ms: u64,
    /// Deliveries it holds unacknowledged.
    pub pending: u64,
}

/// The settings as the registry hash keeps them.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    start: String,
    ack_timeout_ms: u64,
    max_deliveries: u32,
    created_at_ms: u64,
}

/// Checks a group or consumer name: non-empty, at most [`MAX_GROUP_NAME_CHARS`]
/// characters, no whitespace, control characters or braces (names end up in keys and
/// in the space-separated fields of the group registry).
pub fn validate_group_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("the {what} name is empty")));
    }
    // A group name goes into hash tags as a type does: the same characters.
    if let Some(c) = name
        .chars()
        .find(|c| !type_char_allowed(Layout::Default, *c))
    {
        return Err(Error::invalid(format!(
            "the {what} name {name:?} contains {c:?} (whitespace, control characters and braces are not allowed)"
        )));
    }
    let n = name.chars().count();
    if n > MAX_GROUP_NAME_CHARS {
        return Err(Error::invalid(format!(
            "the {what} name is {n} characters long; at most {MAX_GROUP_NAME_CHARS} are allowed"
        )));
    }
    Ok(())
}

/// `ms-seq`, each 1 to 19 digits: a full stream id.
fn is_stream_id(s: &str) -> bool {
    s.split_once('-')
        .is_some_and(|(ms, seq)| digits(ms, 19) && digits(seq, 19))
        || digits(s, 19)
}

/// A delivery token's partition and entry id; anything else is invalid input.
fn parse_token(token: &str, partitions: u32) -> Result<(u32, &str)> {
    let bad = || {
        Error::invalid(format!(
            "{token:?} is not a delivery token (expected <partition>/<ms>-<seq>, as a fetch gives it)"
        ))
    };
    let (p, id) = token.split_once('/').ok_or_else(bad)?;
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    if !digits(p, 10) || !digits(ms, 19) || !digits(seq, 19) {
        return Err(bad());
    }
    let p: u32 = p.parse().map_err(|_| bad())?;
    if p >= partitions {
        return Err(Error::invalid(format!(
            "delivery token {token:?} names partition {p}, and the type has {partitions}"
        )));
    }
    Ok((p, id))
}

/// A flat name/value array as pairs of texts (values that are not text are skipped).
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    items(v)
        .chunks(2)
        .filter_map(|c| Some((text(c.first()?)?, c.get(1)?)))
        .collect()
}

fn lookup<'a>(flat: &'a [(String, &'a Value)], name: &str) -> Option<&'a Value> {
    flat.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// A category entry's fields as an event at `position`. Lenient: a field that is
/// missing is empty (revision 0, version "1"), text that is not UTF-8 is replaced,
/// and of a repeated field the first counts, because a strict decoder would wedge
/// the partition on one hand-written entry; the worker sees it and can skip or park
/// it. (History pages are read strictly instead: `page::decode_page`.)
fn lenient_event<'a>(
    position: String,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> RecordedEvent {
    let mut at: [Option<&[u8]>; 8] = [None; 8];
    for (name, value) in fields {
        if let Some(i) = ENTRY_FIELDS.iter().position(|f| f.as_bytes() == name) {
            at[i].get_or_insert(value);
        }
    }
    let [
        event_id,
        aggregate_type,
        aggregate_id,
        event_type,
        data,
        timestamp,
        version,
        revision,
    ] = at.map(|b| b.map(|b| String::from_utf8_lossy(b).into_owned()));
    RecordedEvent {
        event_id: event_id.unwrap_or_default(),
        aggregate_type: aggregate_type.unwrap_or_default(),
        aggregate_id: aggregate_id.unwrap_or_default(),
        event_type: event_type.unwrap_or_default(),
        data: data.unwrap_or_default(),
        timestamp: timestamp.unwrap_or_default(),
        version: version.unwrap_or_else(|| "1".to_owned()),
        revision: revision.and_then(|r| r.parse().ok()).unwrap_or(0),
        position,
    }
}

/// [`lenient_event`] of an entry's field list as the `redis` crate parsed it.
fn event_of(position: &str, fields: &Value) -> RecordedEvent {
    fn bytes(v: &Value) -> Option<&[u8]> {
        match v {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    let flat = items(fields)
        .chunks_exact(2)
        .filter_map(|c| Some((bytes(&c[0])?, bytes(&c[1])?)));
    lenient_event(position.to_owned(), flat)
}

/// An `XRANGE` reply as events, each read by [`lenient_event`].
fn entries_of(mut frame: Frame<'_>, key: &str) -> Result<Vec<RecordedEvent>> {
    let corrupt = |reason: String| Error::corrupt(key, reason);
    let n = frame.array().map_err(corrupt)?.unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    let mut fields = Vec::with_capacity(ENTRY_FIELDS.len());
    for _ in 0..n {
        if frame.array().map_err(corrupt)? != Some(2) {
            return Err(corrupt("a stream entry is not [id, fields]".to_owned()));
        }
        let id = frame
            .bulk()
            .map_err(corrupt)?
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let count = frame.array().map_err(corrupt)?.unwrap_or(0);
        fields.clear();
        for _ in 0..count / 2 {
            let name = frame.bulk().map_err(corrupt)?;
            let value = frame.bulk().map_err(corrupt)?;
            if let (Some(name), Some(value)) = (name, value) {
                fields.push((name, value));
            }
        }
        if count % 2 == 1 {
            frame.bulk().map_err(corrupt)?;
        }
        out.push(lenient_event(id, fields.drain(..)));
    }
    Ok(out)
}

/// The fields of a category entry an event is made of, in [`lenient_event`]'s order.
const ENTRY_FIELDS: [&str; 8] = [
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "event_type",
    "data",
    "timestamp",
    "version",
    "revision",
];

impl EventStore {
    /// The keys of a group on one partition, after checking the layout and names.
    fn group_keys(&self, aggregate_type: &str, group: &str, partition: u32) -> Result<GroupKeys> {
        group_keys(self.config(), aggregate_type, group, partition)
    }

    /// Checks what every group operation needs: the default layout, a valid type and
    /// group name, and the type's recorded partition count; returns that count.
    async fn group_checks(&self, aggregate_type: &str, group: &str, record: bool) -> Result<u32> {
        if self.config().layout != Layout::Default {
            return Err(Error::invalid(
                "durable subscriptions need the default key layout (the seed layout has no \
                 hash tags to keep a group's keys beside its partition)",
            ));
        }
        validate_type(self.config().layout, aggregate_type)?;
        validate_group_name("group", group)?;
        self.check_partitions(aggregate_type, record).await?;
        Ok(self.config().partitions_of(aggregate_type))
    }

    /// Runs one operation of the groups script on one partition.
    async fn group_script(
        &self,
        aggregate_type: &str,
        group: &str,
        partition: u32,
        op: &str,
        args: &[&str],
    ) -> Result<Vec<Value>> {
        let keys = self.group_keys(aggregate_type, group, partition)?;
        let mut inv = GROUPS_SCRIPT.prepare_invoke();
        inv.key(&keys.category)
            .key(&keys.state)
            .key(&keys.parked)
            .key(&keys.replay)
            .key(&keys.holds)
            .arg(op)
            .arg(group);
        for a in args {
            inv.arg(*a);
        }
        let inv = &inv;
        let reply: Value = self
            .with_reconnect(&keys.category, move |mut con| async move {
                inv.invoke_async::<Value>(&mut con).await
            })
            .await?;
        let Value::Array(items) = reply else {
            return Err(Error::corrupt(
                keys.state,
                "the groups script gave an unexpected reply",
            ));
        };
        match items.first().and_then(text).as_deref() {
            Some("nogroup") => Err(Error::not_found(format!(
                "type {aggregate_type:?} has no group {group:?}"
            ))),
            Some(_) => Ok(items),
            None => Err(Error::corrupt(
                keys.state,
                "the groups script gave an unexpected reply",
            )),
        }
    }

    /// Runs a small command on the group registry hash.
    async fn registry<T: redis::FromRedisValue + Send>(&self, cmd: redis::Cmd) -> Result<T> {
        let key = groups_registry_key(self.config());
        let cmd = &cmd;
        self.with_reconnect(&key, move |mut con| async move {
            cmd.query_async(&mut con).await
        })
        .await
    }

    fn parse_record(&self, aggregate_type: &str, group: &str, json: &str) -> Result<GroupInfo> {
        let key = groups_registry_key(self.config());
        let r: Record = serde_json::from_str(json)
            .map_err(|e| Error::corrupt(&key, format!("group {aggregate_type} {group}: {e}")))?;
        Ok(GroupInfo {
            aggregate_type: aggregate_type.to_owned(),
            group: group.to_owned(),
            settings: GroupSettings {
                start: r
                    .start
                    .parse()
                    .map_err(|e| Error::corrupt(&key, format!("group {group}: {e}")))?,
                ack_timeout_ms: r.ack_timeout_ms,
                max_deliveries: r.max_deliveries,
            },
            created_at_ms: r.created_at_ms,
        })
    }

    /// Creates durable subscription group `group` on the category of `aggregate_type`:
    /// a Redis consumer group of that name on every partition, starting where
    /// `settings.start` says.
    ///
    /// Idempotent: if the group exists with equal settings, nothing changes
    /// (`created` is false); with other settings it is a
    /// [conflict](crate::ErrorKind::Conflict). A consumer group of that name that
    /// Streamfold did not make is a conflict too. A create that failed half-way is
    /// completed by creating it again.
    pub async fn create_group(
        &self,
        aggregate_type: &str,
        group: &str,
        settings: GroupSettings,
    ) -> Result<GroupCreated> {
        let partitions = self.group_checks(aggregate_type, group, true).await?;
        if !(1..=MAX_ACK_TIMEOUT_MS).contains(&settings.ack_timeout_ms) {
            return Err(Error::invalid(format!(
                "the ack timeout must be 1 to {MAX_ACK_TIMEOUT_MS} ms, not {}",
                settings.ack_timeout_ms
            )));
        }
        if !(1..=MAX_MAX_DELIVERIES).contains(&settings.max_deliveries) {
            return Err(Error::invalid(format!(
                "max_deliveries must be 1 to {MAX_MAX_DELIVERIES}, not {}",
                settings.max_deliveries
            )));
        }
        let starts: Vec<String> = match &settings.start {
            GroupStart::Beginning => vec!["0".to_owned(); partitions as usize],
            GroupStart::End => vec!["$".to_owned(); partitions as usize],
            GroupStart::After(p) => category_positions(self.config(), aggregate_type, Some(p))?
                .into_iter()
                .map(|p| p.unwrap_or_else(|| "0".to_owned()))
                .collect(),
        };
        let start_text = settings.start.to_string();
        let field = format!("{aggregate_type} {group}");
        let record = Record {
            start: start_text.clone(),
            ack_timeout_ms: settings.ack_timeout_ms,
            max_deliveries: settings.max_deliveries,
            created_at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
        };
        let json = serde_json::to_string(&record).expect("a record serializes");
        let key = groups_registry_key(self.config());
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(&key).arg(&field).arg(&json);
        let created = self.registry::<bool>(cmd).await?;
        let info = if created {
            self.parse_record(aggregate_type, group, &json)?
        } else {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&key).arg(&field);
            let stored: Option<String> = self.registry(cmd).await?;
            // Deleted in between: the caller may try again.
            let stored = stored.ok_or_else(|| {
                Error::refused(format!(
                    "group {group:?} was being deleted; create it again"
                ))
            })?;
            let info = self.parse_record(aggregate_type, group, &stored)?;
            if info.settings != settings {
                return Err(Error::refused(format!(
                    "group {group:?} of type {aggregate_type:?} exists with other settings \
                     (start {}, ack_timeout_ms {}, max_deliveries {})",
                    info.settings.start, info.settings.ack_timeout_ms, info.settings.max_deliveries
                )));
            }
            info
        };
        let (ack, maxd, created_ms) = (
            settings.ack_timeout_ms.to_string(),
            settings.max_deliveries.to_string(),
            info.created_at_ms.to_string(),
        );
        let (start_text, ack, maxd) = (&start_text, &ack, &maxd);
        let created_ms = &created_ms;
        let made = futures::future::join_all(starts.iter().enumerate().map(|(p, start)| {
            let args = [start.as_str(), start_text, ack, maxd, created_ms];
            async move {
                let reply = self
                    .group_script(aggregate_type, group, p as u32, "create", &args)
                    .await?;
                match reply.first().and_then(text).as_deref() {
                    Some("foreign") => Err(Error::refused(format!(
                        "partition {p} of type {aggregate_type:?} has a consumer group named \
                         {group:?} that Streamfold did not create"
                    ))),
                    Some("exists") => {
                        let same = reply.get(1).and_then(text).as_ref() == Some(start_text)
                            && reply.get(2).and_then(text).as_ref() == Some(ack)
                            && reply.get(3).and_then(text).as_ref() == Some(maxd);
                        if same {
                            Ok(())
                        } else {
                            Err(Error::refused(format!(
                                "partition {p} of type {aggregate_type:?} holds group {group:?} \
                                 with other settings (delete the group first)"
                            )))
                        }
                    }
                    _ => Ok(()),
                }
            }
        }))
        .await;
        if let Some(e) = made.into_iter().find_map(Result::err) {
            if created {
                // Leave nothing half made behind what this call created.
                let _ = self.delete_group(aggregate_type, group).await;
            }
            return Err(e);
        }
        Ok(GroupCreated { info, created })
    }

    /// A group's settings; [not found](crate::ErrorKind::NotFound) if it does not
    /// exist.
    pub async fn group(&self, aggregate_type: &str, group: &str) -> Result<GroupInfo> {
        self.group_checks(aggregate_type, group, false).await?;
        let mut cmd = redis::cmd("HGET");
        cmd.arg(groups_registry_key(self.config()))
            .arg(format!("{aggregate_type} {group}"));
        match self.registry::<Option<String>>(cmd).await? {
            Some(json) => self.parse_record(aggregate_type, group, &json),
            None => Err(Error::not_found(format!(
                "type {aggregate_type:?} has no group {group:?}"
            ))),
        }
    }

    /// Every group, of one type or of all, sorted by type and name (one `HGETALL` of
    /// the group registry).
    pub async fn list_groups(&self, aggregate_type: Option<&str>) -> Result<Vec<GroupInfo>> {
        if let Some(t) = aggregate_type {
            validate_type(self.config().layout, t)?;
        }
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(groups_registry_key(self.config()));
        let all: BTreeMap<String, String> = self.registry(cmd).await?;
        let mut out = Vec::new();
        for (field, json) in all {
            let Some((t, g)) = field.split_once(' ') else {
                continue;
            };
            if aggregate_type.is_none_or(|want| want == t) {
                out.push(self.parse_record(t, g, &json)?);
            }
        }
        Ok(out)
    }

    /// Deletes a group and everything it holds in Redis: its consumer group on every
    /// partition (with the pending entries), its state, parked and replay keys, its
    /// registry entry, and a category stream its creation made that never got an
    /// event. [Not found](crate::ErrorKind::NotFound) if it does not exist.
    pub async fn delete_group(&self, aggregate_type: &str, group: &str) -> Result<()> {
        let partitions = self.group_checks(aggregate_type, group, false).await?;
        let key = groups_registry_key(self.config());
        let field = format!("{aggregate_type} {group}");
        let mut cmd = redis::cmd("HEXISTS");
        cmd.arg(&key).arg(&field);
        if !self.registry::<bool>(cmd).await? {
            return Err(Error::not_found(format!(
                "type {aggregate_type:?} has no group {group:?}"
            )));
        }
        // The partitions first: if this fails half-way, the registry entry is still
        // there and deleting again finishes the work.
        futures::future::try_join_all(
            (0..partitions).map(|p| self.group_script(aggregate_type, group, p, "destroy", &[])),
        )
        .await?;
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(&key).arg(&field);
        self.registry::<u64>(cmd).await?;
        Ok(())
    }

    /// Hands `consumer` up to `max` events of the group, at once (empty when none is
    /// available; see [`fetch_wait`](Self::fetch_wait) to wait for some).
    ///
    /// A partition hands out events only when the group has none pending on it, a
    /// batch of its next entries that stops before an aggregate's second event: no
    /// two events of one aggregate are ever in flight, and each aggregate's events
    /// come in order. A partition's pending events idle past the ack timeout are
    /// handed out again (to this consumer, `delivery_count` raised), or parked once
    /// delivered `max_deliveries` times. The fetch visits the partitions starting at
    /// a rotating one until it has `max`, so that consumers share the partitions; a
    /// consumer that stops polling stops taking partitions, and its unacknowledged
    /// events go to others after the ack timeout.
    pub async fn fetch(
        &self,
        aggregate_type: &str,
        group: &str,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        let partitions = self.group_checks(aggregate_type, group, false).await?;
        validate_group_name("consumer", consumer)?;
        if !(1..=MAX_FETCH).contains(&max) {
            return Err(Error::invalid(format!(
                "a fetch takes 1 to {MAX_FETCH} events, not {max}"
            )));
        }
        let first = ROTATION.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        for i in 0..partitions as usize {
            if out.len() >= max {
                break;
            }
            let p = ((first + i) % partitions as usize) as u32;
            let left = (max - out.len()).to_string();
            let reply = self
                .group_script(aggregate_type, group, p, "fetch", &[consumer, &left])
                .await?;
            if reply.first().and_then(text).as_deref() == Some("free") {
                let last = reply.get(1).and_then(text).unwrap_or_default();
                let want = max - out.len();
                self.fetch_new(aggregate_type, group, consumer, p, &last, want, &mut out)
                    .await?;
                continue;
            }
            for entry in reply.get(1).map(items).unwrap_or_default() {
                let e = items(entry);
                let (Some(id), Some(count), Some(fields)) =
                    (e.first().and_then(text), e.get(1).and_then(int), e.get(2))
                else {
                    return Err(Error::corrupt(
                        self.category_key(aggregate_type, p)?,
                        "the groups script gave an unexpected delivery",
                    ));
                };
                out.push(Delivery {
                    delivery: format!("{p}/{id}"),
                    partition: p,
                    delivery_count: count,
                    event: event_of(&id, fields),
                });
            }
        }
        Ok(out)
    }

    /// The new entries of a free partition (the fetch said so, and gave the group's
    /// last delivered id there): reads up to `want` entries after `last`, a chunk at a
    /// time, stops before the first whose aggregate the batch already holds, and has
    /// the script hand them out to `consumer` (if the partition is still as the fetch
    /// left it; else another consumer took it first and this fetch leaves it).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_new(
        &self,
        aggregate_type: &str,
        group: &str,
        consumer: &str,
        p: u32,
        last: &str,
        want: usize,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        let key = self.category_key(aggregate_type, p)?;
        // Per store (tests run several in one process, on different servers).
        let hint_key = format!("{:p} {key} {group}", Arc::as_ptr(&self.inner));
        // Another fetch of this process is taking the partition's new entries: it will
        // have them (or the partition is busy by then); reading them too is wasted.
        let Some(_taking) = Taking::new(&hint_key) else {
            return Ok(());
        };
        let mut chosen: Vec<RecordedEvent> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut from = format!("({last}");
        // The last batch's size on this partition, plus one: usually one read.
        let mut step = BATCH_HINTS
            .lock()
            .expect("batch hints poisoned")
            .get(&hint_key)
            .map_or(CANDIDATES, |k| (k + 1).max(MIN_CANDIDATES));
        loop {
            let ask = step.min(want - chosen.len());
            let chunk = self
                .xrange(&key, &from, "+", ask, |frame| entries_of(frame, &key))
                .await?;
            let n = chunk.len();
            let mut full = false;
            for e in chunk {
                if !seen.insert(e.aggregate_id.clone()) {
                    full = true;
                    break;
                }
                chosen.push(e);
            }
            if full || n < ask || chosen.len() >= want {
                break;
            }
            from = format!("({}", chosen[chosen.len() - 1].position);
            step *= 2;
        }
        let Some(tail) = chosen.last() else {
            return Ok(());
        };
        {
            let mut hints = BATCH_HINTS.lock().expect("batch hints poisoned");
            if hints.len() >= MAX_BATCH_HINTS && !hints.contains_key(&hint_key) {
                hints.clear();
            }
            hints.insert(hint_key.clone(), chosen.len());
        }
        let mut args = vec![consumer, last];
        args.extend(chosen.iter().map(|e| e.position.as_str()));
        let reply = self
            .group_script(aggregate_type, group, p, "deliver", &args)
            .await?;
        if reply.first().and_then(text).as_deref() != Some("ok") {
            return Ok(()); // moved: another consumer took the partition
        }
        let first = reply.get(1).and_then(text).unwrap_or_default();
        let end = reply.get(2).and_then(text).unwrap_or_default();
        let n = reply.get(3).and_then(int).unwrap_or(0) as usize;
        if n == 0 {
            return Ok(());
        }
        if n != chosen.len() || first != chosen[0].position || end != tail.position {
            // Not the entries read (an entry deleted in between): hand out the ones
            // the group holds now.
            chosen = self
                .xrange(&key, &first, &end, n, |frame| entries_of(frame, &key))
                .await?;
        }
        out.extend(chosen.into_iter().map(|event| Delivery {
            delivery: format!("{p}/{}", event.position),
            partition: p,
            delivery_count: 1,
            event,
        }));
        Ok(())
    }

    /// [`fetch`](Self::fetch), asked again until it hands out events or `wait` has
    /// passed: a long poll. Between attempts it waits for a new entry on one of the
    /// type's partitions, or an ack or nack in this process (see the `wake` module),
    /// and at most [`REPOLL`] (for what it cannot see: another host's acks, an ack
    /// timeout or a retry delay passing).
    pub async fn fetch_wait(
        &self,
        aggregate_type: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let started = Instant::now();
        self.group_checks(aggregate_type, group, false).await?;
        let mut watch = self.watch_category(aggregate_type)?;
        loop {
            // Seen before the fetch: whatever changes after it wakes the wait below.
            watch.mark_seen();
            let got = self.fetch(aggregate_type, group, consumer, max).await?;
            let left = wait.saturating_sub(started.elapsed());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            watch.changed(left.min(REPOLL)).await;
        }
    }

    /// Acknowledges deliveries (tokens from [`fetch`](Self::fetch)): they are done.
    /// Tokens of deliveries no longer pending are harmless and listed in `unknown`;
    /// a token that is not one is [invalid](crate::ErrorKind::InvalidInput) and then
    /// nothing is acknowledged.
    pub async fn ack<S: AsRef<str>>(
        &self,
        aggregate_type: &str,
        group: &str,
        deliveries: &[S],
    ) -> Result<Settled> {
        self.settle(aggregate_type, group, deliveries, "ack", 0, None)
            .await
    }

    /// Gives deliveries back with an action (see [`NackAction`]) and a reason, which
    /// is kept as the event's last error (shown if it is parked). Tokens as for
    /// [`ack`](Self::ack). Park and skip are atomic per partition.
    pub async fn nack<S: AsRef<str>>(
        &self,
        aggregate_type: &str,
        group: &str,
        deliveries: &[S],
        action: NackAction,
        reason: Option<&str>,
    ) -> Result<Settled> {
        if let Some(r) = reason {
            let n = r.chars().count();
            if n > MAX_REASON_CHARS {
                return Err(Error::invalid(format!(
                    "the reason is {n} characters long; at most {MAX_REASON_CHARS} are allowed"
                )));
            }
        }
        let (op, delay) = match action {
            NackAction::Retry(d) => ("retry", u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            NackAction::Park => ("park", 0),
            NackAction::Skip => ("skip", 0),
        };
        self.settle(aggregate_type, group, deliveries, op, delay, reason)
            .await
    }

    async fn settle<S: AsRef<str>>(
        &self,
        aggregate_type: &str,
        group: &str,
        deliveries: &[S],
        action: &str,
        delay_ms: u64,
        reason: Option<&str>,
    ) -> Result<Settled> {
        let partitions = self.group_checks(aggregate_type, group, false).await?;
        if deliveries.len() > MAX_SETTLE {
            return Err(Error::invalid(format!(
                "{} delivery tokens in one call; at most {MAX_SETTLE} are allowed",
                deliveries.len()
            )));
        }
        // Every token is checked before anything is done; repeats count once.
        let mut by_partition: BTreeMap<u32, Vec<(&str, &str)>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for token in deliveries {
            let token = token.as_ref();
            let (p, id) = parse_token(token, partitions)?;
            if seen.insert(token) {
                by_partition.entry(p).or_default().push((token, id));
            }
        }
        let delay = delay_ms.to_string();
        let reason = reason.unwrap_or("");
        let replies = futures::future::try_join_all(by_partition.iter().map(|(p, tokens)| {
            let mut args = vec![action, delay.as_str(), reason];
            args.extend(tokens.iter().map(|(_, id)| *id));
            async move {
                self.group_script(aggregate_type, group, *p, "settle", &args)
                    .await
            }
        }))
        .await?;
        // Settled deliveries may free their partitions for the next batch.
        for p in by_partition.keys() {
            self.wake_partition(&self.category_key(aggregate_type, *p)?);
        }
        let mut settled = Settled::default();
        for (reply, tokens) in replies.iter().zip(by_partition.values()) {
            if reply.first().and_then(text).as_deref() == Some("delay") {
                let ack = reply.get(1).and_then(int).unwrap_or(0);
                return Err(Error::invalid(format!(
                    "a retry delay of {delay_ms} ms is longer than the group's ack timeout \
                     ({ack} ms)"
                )));
            }
            let done = reply.get(1).map(items).unwrap_or_default();
            for (i, (token, _)) in tokens.iter().enumerate() {
                if done.get(i).and_then(int) == Some(1) {
                    settled.done += 1;
                } else {
                    settled.unknown.push((*token).to_owned());
                }
            }
        }
        Ok(settled)
    }

    /// A group's status: settings, events not delivered yet (lag), pending (delivered,
    /// unacknowledged) and the oldest pending age, parked and replaying events, per
    /// partition and in total, and the consumers with their last poll.
    pub async fn group_status(&self, aggregate_type: &str, group: &str) -> Result<GroupStatus> {
        let info = self.group(aggregate_type, group).await?;
        let partitions = self.config().partitions_of(aggregate_type);
        let replies = futures::future::try_join_all(
            (0..partitions).map(|p| self.group_script(aggregate_type, group, p, "status", &[])),
        )
        .await?;
        let mut status = GroupStatus {
            info,
            undelivered: Some(0),
            pending: 0,
            oldest_pending_ms: None,
            parked: 0,
            replaying: 0,
            trim_held_back: 0,
            partitions: Vec::new(),
            consumers: Vec::new(),
        };
        // Consumer -> (last poll, its Redis' now at that partition, pending).
        let mut consumers: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for (p, r) in replies.iter().enumerate() {
            let num = |i: usize| r.get(i).and_then(int).unwrap_or(0);
            let now = num(1);
            let ginfo = r.get(2).map(pairs).unwrap_or_default();
            let pending = num(3);
            let oldest = (pending > 0).then(|| num(4));
            let part = PartitionStatus {
                partition: p as u32,
                undelivered: r.get(10).and_then(int),
                pending,
                oldest_pending_ms: oldest,
                parked: num(5),
                replaying: num(6),
                trim_held_back: num(9),
                last_delivered: lookup(&ginfo, "last-delivered-id")
                    .and_then(text)
                    .unwrap_or_default(),
            };
            for (field, value) in r.get(7).map(pairs).unwrap_or_default() {
                if let (Some(name), Some(ms)) = (field.strip_prefix("c:"), int(value)) {
                    let c = consumers.entry(name.to_owned()).or_default();
                    if ms > c.0 {
                        (c.0, c.1) = (ms, now);
                    }
                }
            }
            for pair in r.get(8).map(items).unwrap_or_default() {
                let pair = items(pair);
                if let (Some(name), Some(n)) =
                    (pair.first().and_then(text), pair.get(1).and_then(int))
                {
                    consumers.entry(name).or_default().2 += n;
                }
            }
            status.undelivered = status.undelivered.zip(part.undelivered).map(|(a, b)| a + b);
            status.pending += part.pending;
            status.oldest_pending_ms = status.oldest_pending_ms.max(part.oldest_pending_ms);
            status.parked += part.parked;
            status.replaying += part.replaying;
            status.trim_held_back += part.trim_held_back;
            status.partitions.push(part);
        }
        status.consumers = consumers
            .into_iter()
            .map(|(name, (last, now, pending))| ConsumerStatus {
                name,
                last_poll_ms: last,
                idle_ms: now.saturating_sub(last),
                pending,
            })
            .collect();
        status.consumers.sort_by(|a, b| {
            b.last_poll_ms
                .cmp(&a.last_poll_ms)
                .then(a.name.cmp(&b.name))
        });
        Ok(status)
    }

    /// A page of a group's parked events, all partitions, in the order they were
    /// parked (by the parked streams' ids), at most `count` (capped at
    /// [`MAX_PARKED_PAGE`]), after `after` (a [`ParkedPage::next`]; from the first by
    /// default).
    pub async fn parked(
        &self,
        aggregate_type: &str,
        group: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<ParkedPage> {
        self.group(aggregate_type, group).await?;
        let mut positions = category_positions(self.config(), aggregate_type, after)?;
        let count = count.clamp(1, MAX_PARKED_PAGE);
        let reads = positions.iter().enumerate().map(|(p, after)| {
            let start = after
                .as_ref()
                .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
            async move {
                let key = self.group_keys(aggregate_type, group, p as u32)?.parked;
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&key).arg(&start).arg("+").arg("COUNT").arg(count);
                let cmd = &cmd;
                let reply: Value = self
                    .with_reconnect(&key, move |mut con| async move {
                        cmd.query_async(&mut con).await
                    })
                    .await?;
                Ok::<_, Error>((p as u32, reply))
            }
        });
        let pages = futures::future::try_join_all(reads).await?;
        let mut more = false;
        let mut all = Vec::new();
        for (p, reply) in &pages {
            let entries = items(reply);
            more |= entries.len() >= count;
            for entry in entries {
                let e = items(entry);
                let (Some(id), Some(fields)) = (e.first().and_then(text), e.get(1)) else {
                    continue;
                };
                let flat = pairs(fields);
                let get = |name: &str| lookup(&flat, name).and_then(text);
                let position = get("position").unwrap_or_default();
                all.push(ParkedEvent {
                    partition: *p,
                    parked_id: id,
                    reason: match get("reason").as_deref() {
                        Some("nacked") => ParkReason::Nacked,
                        Some("trimmed") => ParkReason::Trimmed,
                        _ => ParkReason::MaxDeliveries,
                    },
                    last_error: get("error"),
                    delivery_count: lookup(&flat, "deliveries").and_then(int).unwrap_or(0),
                    event: get("missing")
                        .is_none()
                        .then(|| event_of(&position, fields)),
                    position,
                });
            }
        }
        all.sort_by_key(|e| (id_order(&e.parked_id), e.partition));
        more |= all.len() > count;
        all.truncate(count);
        for e in &all {
            positions[e.partition as usize] = Some(e.parked_id.clone());
        }
        let next = if more {
            category_position(&positions)
        } else {
            None
        };
        Ok(ParkedPage { events: all, next })
    }

    /// Puts every parked event of the group back in front of it: each partition
    /// delivers its replayed events (again one per aggregate per batch) before new
    /// ones, with a fresh delivery count. They are not appended to the category again
    /// (which would hand them to every other group too); they come before events of
    /// their aggregate delivered since, which is the point of a replay. Events the
    /// category trim removed stay parked (`kept`).
    pub async fn replay_parked(&self, aggregate_type: &str, group: &str) -> Result<Replayed> {
        let partitions = self.group_checks(aggregate_type, group, false).await?;
        let step = REPLAY_STEP.to_string();
        let done = futures::future::try_join_all((0..partitions).map(|p| {
            let step = &step;
            async move {
                let mut total = Replayed::default();
                let mut start = "-".to_owned();
                loop {
                    let r = self
                        .group_script(aggregate_type, group, p, "replay", &[&start, step])
                        .await?;
                    total.replayed += r.get(1).and_then(int).unwrap_or(0);
                    total.kept += r.get(2).and_then(int).unwrap_or(0);
                    let last = r.get(3).and_then(text).unwrap_or_default();
                    if r.get(4).and_then(int).unwrap_or(0) < REPLAY_STEP as u64 || last.is_empty() {
                        return Ok::<_, Error>(total);
                    }
                    start = format!("({last}");
                }
            }
        }))
        .await?;
        Ok(done.into_iter().fold(Replayed::default(), |a, b| Replayed {
            replayed: a.replayed + b.replayed,
            kept: a.kept + b.kept,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_strictly() {
        assert_eq!(parse_token("3/17-2", 4).unwrap(), (3, "17-2"));
        for bad in [
            "", "3", "3/", "/1-0", "3/17", "3/17-", "a/1-0", "3/1-0/x", "4/1-0", "-1/1-0",
            "3/1-0 ", "03 /1-0",
        ] {
            assert!(
                parse_token(bad, 4).unwrap_err().is_invalid_input(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_group_name("group", "mailer-1:eu").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "a\nb", &"g".repeat(129)] {
            assert!(validate_group_name("group", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn starts_round_trip_as_text() {
        for s in ["beginning", "end", "1-0", "1-0,,2-5"] {
            assert_eq!(s.parse::<GroupStart>().unwrap().to_string(), s);
        }
        for bad in ["", "now", "1-0,x", "(1-0"] {
            assert!(bad.parse::<GroupStart>().is_err(), "{bad:?}");
        }
    }
}
