//! Appending events: validation in Rust, then one Lua script that checks the expected
//! revision and writes the whole batch to the aggregate and category streams.
//!
//! **Group commit.** Appends to aggregates of one category partition (whose keys
//! share a hash slot) go out in script calls, a few at once ([`MAX_IN_FLIGHT`]); an
//! append that comes while they are all in flight queues, and the next call commits
//! everything queued, each append still on its own (its expected revision, retry
//! detection and reply). A lone append goes out at once, so it waits for nothing;
//! under load, many appends share one call, which saves Redis the cost of a call
//! (about as much as an append's own commands). See [`Queues`].
//!
//! How a retried append is recognised is described under "Retry safety" in the
//! [store module](crate#retry-safety); the details are in `append.lua`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::Utc;
use redis::Value;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use crate::config::{Durability, Layout};
use crate::error::{Error, Result};

use super::EventStore;
use super::keys::{aggregate_keys, holds_key};
use super::model::{AppendResult, ExpectedRevision, NewEvent, check_json, format_timestamp};

/// The append script, loaded once per Redis and called by SHA (`EVALSHA`); the redis
/// crate loads it again by itself after `NOSCRIPT` (a `SCRIPT FLUSH` or a restart).
pub(crate) static APPEND_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("holds.lua"),
        include_str!("append.lua")
    ))
});

/// How many entries back the script looks for an exact-revision retry that was not the
/// last batch. Also the largest batch one append accepts.
pub const RETRY_SCAN_LIMIT: u64 = 10_000;

/// Largest batch one append accepts (one script call holds Redis while it runs).
pub const MAX_BATCH: usize = RETRY_SCAN_LIMIT as usize;

/// A batch checked and filled in, ready for the script.
#[derive(Debug)]
struct PreparedEvent {
    id: Uuid,
    event_type: String,
    data: String,
    timestamp: String,
    version: String,
}

fn prepare(events: Vec<NewEvent>) -> Result<Vec<PreparedEvent>> {
    if events.is_empty() {
        return Err(Error::invalid("an append needs at least one event"));
    }
    if events.len() > MAX_BATCH {
        return Err(Error::invalid(format!(
            "a batch of {} events is larger than the limit of {MAX_BATCH}; split it",
            events.len()
        )));
    }
    // Events without their own time get the batch's, formatted once.
    let now = format_timestamp(Utc::now());
    let mut seen = HashSet::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        if e.event_type.is_empty() {
            return Err(Error::invalid(format!(
                "event {i} of the batch has an empty event type"
            )));
        }
        if let Err(err) = check_json(&e.data) {
            return Err(Error::invalid(format!(
                "event {i} ({}) of the batch: data is not valid JSON: {err}",
                e.event_type
            )));
        }
        let version = e.version.unwrap_or_else(|| "1".to_owned());
        if version.is_empty() {
            return Err(Error::invalid(format!(
                "event {i} ({}) has an empty version",
                e.event_type
            )));
        }
        let id = e.event_id.unwrap_or_else(Uuid::new_v4);
        if id.is_nil() {
            return Err(Error::invalid(format!(
                "event {i} ({}) has the nil UUID as its id",
                e.event_type
            )));
        }
        if !seen.insert(id) {
            return Err(Error::invalid(format!(
                "event id {id} appears twice in the batch"
            )));
        }
        out.push(PreparedEvent {
            id,
            event_type: e.event_type,
            data: e.data,
            timestamp: e.timestamp.map_or_else(|| now.clone(), format_timestamp),
            version,
        });
    }
    Ok(out)
}

/// How group commit has gone in this process: the append script calls an
/// [`EventStore`] (and its clones) made, and the appends they held. Their ratio is
/// how many appends a call held on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendCalls {
    /// Script calls made (a call retried after a lost connection counts once).
    pub calls: u64,
    /// Appends those calls held.
    pub appends: u64,
}

/// Most appends one script call commits.
const MAX_GROUP: usize = 64;

/// Script calls in flight at once per partition. More than one, so that Redis runs
/// the next call while the replies to the last ones travel and their writers make
/// their next appends; each call holds what queued meanwhile. With 16 writers on one
/// partition, one call at a time was slower by nearly a third; 8 measured best, but
/// within a tenth of 2, 4 and 16 (`streamfold-bench --profile append16`).
const MAX_IN_FLIGHT: usize = 8;

/// Most events one script call writes, unless a single append has more (a call holds
/// Redis while it runs).
const MAX_GROUP_EVENTS: usize = 1_000;

/// One append, checked and ready for the script.
#[derive(Debug)]
struct Append {
    stream: String,
    revision: String,
    category: String,
    /// The partition's trim holds (default layout).
    holds: Option<String>,
    aggregate_type: String,
    aggregate_id: String,
    expected: ExpectedRevision,
    batch: Vec<PreparedEvent>,
}

/// An append waiting for its call, and where its reply goes.
struct Waiting {
    append: Append,
    reply: oneshot::Sender<Result<Value>>,
}

/// The appends waiting for a script call, per category partition (the keys of its
/// aggregates share a hash slot, so one call can hold them on a Redis Cluster too).
/// At most one task per partition makes the calls (a few at once): it starts with the
/// first append that finds nothing under way and ends when nothing waits.
#[derive(Default)]
pub(crate) struct Queues {
    partitions: Mutex<HashMap<String, Queue>>,
    /// Script calls made, and the appends they held (see [`AppendCalls`]).
    calls: AtomicU64,
    appends: AtomicU64,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queues")
    }
}

impl Queues {
    /// Queues `append` for its partition. If no task makes that partition's calls,
    /// `start` is given the partition and the waker to run [`Queues::drain`] with.
    /// Returns where the append's reply comes.
    fn enqueue(
        &self,
        append: Append,
        start: impl FnOnce(String, Arc<Notify>),
    ) -> oneshot::Receiver<Result<Value>> {
        let (reply, replied) = oneshot::channel();
        let partition = append.category.clone();
        let (first, arrived) = {
            let mut queues = self.partitions.lock().expect("append queues poisoned");
            let q = queues.entry(partition.clone()).or_default();
            q.waiting.push_back(Waiting { append, reply });
            (!std::mem::replace(&mut q.draining, true), q.arrived.clone())
        };
        if first {
            start(partition, arrived);
        } else {
            // A permit if the task is not waiting yet: it looks again before it waits.
            arrived.notify_one();
        }
        replied
    }

    /// A partition's task: `call`s for what waits, at most [`MAX_IN_FLIGHT`] at once
    /// (so Redis never waits for a round trip), until nothing waits. With room for a
    /// call, an append that comes goes out at once; without, appends queue until a
    /// call ends, and the next call holds them (see [`next_group`]).
    async fn drain<F>(
        &self,
        partition: String,
        arrived: Arc<Notify>,
        call: impl Fn(Vec<Waiting>) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut guard = Draining {
            queues: self,
            partition: &partition,
            armed: true,
        };
        // Dropped with this task (its runtime shutting down): the calls end too, and
        // their appends answer that they were dropped.
        let mut calls = tokio::task::JoinSet::new();
        loop {
            let group = {
                let mut queues = self.partitions.lock().expect("append queues poisoned");
                let Some(q) = queues.get_mut(&partition) else {
                    guard.armed = false;
                    return;
                };
                let group = if calls.len() < MAX_IN_FLIGHT {
                    next_group(&mut q.waiting)
                } else {
                    Vec::new()
                };
                if group.is_empty() && calls.is_empty() {
                    queues.remove(&partition);
                    guard.armed = false;
                    return;
                }
                group
            };
            if !group.is_empty() {
                self.calls.fetch_add(1, Ordering::Relaxed);
                self.appends
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                calls.spawn(call(group));
            } else if calls.len() < MAX_IN_FLIGHT {
                tokio::select! {
                    _ = calls.join_next() => {}
                    () = arrived.notified() => {
                        // Let the writers a reply just woke queue their next appends
                        // first, so that they share the call.
                        tokio::task::yield_now().await;
                    }
                }
            } else {
                // Room comes when a call ends; appends queue meanwhile.
                calls.join_next().await;
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// A task is making calls for this partition.
    draining: bool,
    /// Wakes that task when an append comes while it has room for another call.
    arrived: Arc<Notify>,
}

/// The next call's appends, in the order they came: at most [`MAX_GROUP`] and
/// [`MAX_GROUP_EVENTS`] (at least one). Two appends to one aggregate share a call
/// only if the earlier is an exact-revision append: a call retried after a lost
/// connection finds an exact append it committed by its revisions wherever it lies
/// (a scan back), but any other only as its aggregate's last batch. So competing
/// writers of one aggregate get their answers (one commit, conflicts for the rest)
/// from one call. An append left out keeps its place for the next call.
fn next_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut group: Vec<Waiting> = Vec::new();
    // Per aggregate in the group: whether another append to it may follow.
    let mut streams: HashMap<String, bool> = HashMap::new();
    let mut later = Vec::new();
    let mut events = 0;
    while let Some(w) = waiting.pop_front() {
        let n = w.append.batch.len();
        if !group.is_empty() && (group.len() == MAX_GROUP || events + n > MAX_GROUP_EVENTS) {
            waiting.push_front(w);
            break;
        }
        let exact = matches!(
            w.append.expected,
            ExpectedRevision::Exact(_) | ExpectedRevision::NoStream
        );
        match streams.get_mut(w.append.stream.as_str()) {
            Some(may_follow) if !*may_follow => {
                later.push(w);
                continue;
            }
            Some(may_follow) => *may_follow = exact,
            None => {
                streams.insert(w.append.stream.clone(), exact);
            }
        }
        events += n;
        group.push(w);
    }
    for w in later.into_iter().rev() {
        waiting.push_front(w);
    }
    group
}

/// Ends a partition's task: marks it stopped if the task ends some other way than
/// by finding nothing to do (its runtime shut down), so the next append starts one.
struct Draining<'a> {
    queues: &'a Queues,
    partition: &'a str,
    armed: bool,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut queues) = self.queues.partitions.lock()
            && let Some(q) = queues.get_mut(self.partition)
        {
            q.draining = false;
        }
    }
}

impl EventStore {
    /// Appends a batch of events to an aggregate, atomically, if its revision is what
    /// `expected` says.
    ///
    /// Every event goes to the aggregate's stream and its type's category stream in one
    /// Lua script: either the whole batch is written or nothing is. A mismatch is
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) with the actual revision; bad input (empty type, id or event
    /// type, data that is not JSON, an empty batch) is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput). A retry
    /// of an append that already succeeded returns the original result with
    /// `already_appended` set (see [retry safety](crate#retry-safety)).
    pub async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: Vec<NewEvent>,
        expected: ExpectedRevision,
    ) -> Result<AppendResult> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        let batch = prepare(events)?;
        self.check_partitions(aggregate_type, true).await?;
        let event_ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
        let reply = self
            .commit(Append {
                stream: keys.stream.clone(),
                revision: keys.revision.clone(),
                category: keys.category.clone(),
                holds: holds_key(self.config(), aggregate_type, keys.partition),
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                expected,
                batch,
            })
            .await?;
        let result = parse_reply(
            reply,
            &keys.revision,
            aggregate_type,
            aggregate_id,
            expected,
            event_ids,
        )?;
        // A retry that finds the batch already there waits too: the first attempt may
        // have failed exactly here.
        self.wait_for_replicas(&keys.stream).await?;
        Ok(result)
    }

    /// Queues an append for its partition's next script call, starting the
    /// partition's task if none runs, and waits for the script's reply to it.
    async fn commit(&self, append: Append) -> Result<Value> {
        let replied = self.inner.appends.enqueue(append, |partition, arrived| {
            let store = self.clone();
            tokio::spawn(async move {
                let call = |group| {
                    let store = store.clone();
                    async move { store.answer(group).await }
                };
                store.inner.appends.drain(partition, arrived, call).await;
            });
        });
        replied.await.map_err(|_| {
            Error::unreachable(
                self.url(),
                "the append was dropped before it was sent: the runtime is shutting down",
            )
        })?
    }

    /// How many append script calls this store (and its clones) made, and how many
    /// appends they held: see [`AppendCalls`].
    pub fn append_calls(&self) -> AppendCalls {
        let q = &self.inner.appends;
        AppendCalls {
            calls: q.calls.load(Ordering::Relaxed),
            appends: q.appends.load(Ordering::Relaxed),
        }
    }

    /// Makes the script call for `group` and sends each append its reply.
    async fn answer(&self, group: Vec<Waiting>) {
        match self.call(&group).await {
            Ok(replies) => {
                for (w, reply) in group.into_iter().zip(replies) {
                    let _ = w.reply.send(Ok(reply));
                }
            }
            Err(e) => {
                for w in group {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One script call for `group`: its replies, one per append, in order.
    async fn call(&self, group: &[Waiting]) -> Result<Vec<Value>> {
        let mut inv = APPEND_SCRIPT.prepare_invoke();
        inv.arg(group.len());
        let mut id = Uuid::encode_buffer();
        for w in group {
            let a = &w.append;
            let (kind, number) = match a.expected {
                ExpectedRevision::Any => ("any", 0),
                ExpectedRevision::Exists => ("exists", 0),
                ExpectedRevision::NoStream => ("exact", 0),
                ExpectedRevision::Exact(n) => ("exact", n),
            };
            inv.key(&a.stream)
                .key(&a.revision)
                .key(&a.category)
                .arg(kind)
                .arg(number)
                .arg(self.config().category_max_len)
                .arg(&a.aggregate_type)
                .arg(&a.aggregate_id)
                .arg(RETRY_SCAN_LIMIT)
                .arg(a.batch.len());
            for e in &a.batch {
                inv.arg(e.id.hyphenated().encode_lower(&mut id).as_bytes())
                    .arg(&e.event_type)
                    .arg(&e.data)
                    .arg(&e.timestamp)
                    .arg(&e.version);
            }
        }
        // Every append of a call goes to one category partition: one holds key.
        if let Some(holds) = &group[0].append.holds {
            inv.key(holds);
        }
        let inv = &inv;
        let key = &group[0].append.stream;
        let reply: Value = self
            .with_reconnect(key, move |mut con| async move {
                inv.invoke_async::<Value>(&mut con).await
            })
            .await?;
        match reply {
            Value::Array(replies) if replies.len() == group.len() => Ok(replies),
            _ => Err(Error::corrupt(
                &group[0].append.revision,
                "the append script gave an unexpected reply",
            )),
        }
    }

    /// With [`Durability::Replicas`], waits until enough replicas hold what this
    /// connection wrote (`WAIT` on the node that serves `key`).
    async fn wait_for_replicas(&self, key: &str) -> Result<()> {
        let Durability::Replicas { count, timeout } = self.config().durability else {
            return Ok(());
        };
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(count).arg(timeout.as_millis().max(1) as u64);
        let cmd = &cmd;
        let confirmed: u64 = self
            .with_reconnect(
                key,
                move |mut con| async move { con.query_at(key, cmd).await },
            )
            .await?;
        if confirmed < u64::from(count) {
            return Err(Error::unreachable(
                self.url(),
                format!(
                    "the append is stored on the primary, but only {confirmed} of the {count} \
                     replicas required confirmed it within {timeout:?}: it may not survive a \
                     failover (retrying it with the same event ids is safe)"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a type's partition count against the one recorded in Redis (the first
    /// writer records it; `record` says whether this caller may), once per type and
    /// store. Two hosts with different counts would write one aggregate's history under
    /// two keys, so a store configured otherwise than the record is refused.
    pub(crate) async fn check_partitions(&self, aggregate_type: &str, record: bool) -> Result<()> {
        if self.config().layout != Layout::Default
            || self
                .inner
                .partitions_checked
                .lock()
                .expect("partition checks poisoned")
                .contains(aggregate_type)
        {
            return Ok(());
        }
        let key = format!("{}:partitions", self.config().prefix);
        let configured = self.config().partitions_of(aggregate_type);
        let mut pipe = redis::pipe();
        if record {
            pipe.cmd("HSETNX")
                .arg(&key)
                .arg(aggregate_type)
                .arg(configured)
                .ignore();
        }
        pipe.cmd("HGET").arg(&key).arg(aggregate_type);
        let pipe = &pipe;
        let (recorded,): (Option<String>,) = self
            .with_reconnect(&key, move |mut con| async move {
                pipe.query_async(&mut con).await
            })
            .await?;
        // Nothing recorded on a read: nothing written since Streamfold records counts.
        let recorded = match recorded {
            None => configured,
            Some(r) => r.parse::<u32>().map_err(|_| {
                Error::corrupt(
                    &key,
                    format!("the partition count of {aggregate_type:?} is {r:?}"),
                )
            })?,
        };
        if recorded != configured {
            return Err(Error::invalid(format!(
                "type {aggregate_type:?} was first written with {recorded} partition(s) (recorded \
                 in {key}), but this store is configured with {configured}: its aggregates \
                 would be read and written under other keys. Configure {recorded} for it \
                 (StoreConfig::partitions_for)"
            )));
        }
        self.inner
            .partitions_checked
            .lock()
            .expect("partition checks poisoned")
            .insert(aggregate_type.to_owned());
        Ok(())
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Double(d) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
        other => text(other)?.parse().ok(),
    }
}

fn parse_reply(
    reply: Value,
    counter_key: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    expected: ExpectedRevision,
    event_ids: Vec<Uuid>,
) -> Result<AppendResult> {
    let unexpected = || Error::corrupt(counter_key, "the append script gave an unexpected reply");
    let Value::Array(items) = reply else {
        return Err(unexpected());
    };
    let status = items.first().and_then(text).ok_or_else(unexpected)?;
    match status.as_str() {
        "ok" | "dup" => {
            let first_revision = items.get(1).and_then(int).ok_or_else(unexpected)?;
            let last_revision = items.get(2).and_then(int).ok_or_else(unexpected)?;
            let positions = match items.get(3) {
                Some(Value::Array(p)) => p
                    .iter()
                    .map(text)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(unexpected)?,
                _ => return Err(unexpected()),
            };
            if positions.len() != event_ids.len() {
                return Err(unexpected());
            }
            Ok(AppendResult {
                first_revision,
                last_revision,
                positions,
                event_ids,
                already_appended: status == "dup",
            })
        }
        "conflict" => {
            let actual = items.get(1).and_then(int).ok_or_else(unexpected)?;
            Err(Error::conflict_at(
                format!("{aggregate_type}/{aggregate_id}"),
                expected,
                actual,
            ))
        }
        "error" => {
            // A command the script ran was refused (out of memory, say): as if the
            // client had sent it.
            let message = items.get(1).and_then(text).unwrap_or_default();
            let (code, detail) = message.split_once(' ').unwrap_or((&message, ""));
            Err(Error::from(redis::make_extension_error(
                code.to_owned(),
                Some(detail.to_owned()),
            )))
        }
        "corrupt" => {
            let key = items
                .get(1)
                .and_then(text)
                .unwrap_or_else(|| counter_key.to_owned());
            let reason = items.get(2).and_then(text).unwrap_or_default();
            Err(Error::corrupt(key, reason))
        }
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_rejects_bad_batches() {
        assert!(prepare(vec![]).unwrap_err().is_invalid_input());
        let bad_json = NewEvent {
            event_id: None,
            event_type: "X".into(),
            data: "{oops".into(),
            timestamp: None,
            version: None,
        };
        assert!(prepare(vec![bad_json]).unwrap_err().is_invalid_input());
        let no_type = NewEvent::new("", &serde_json::json!({}));
        assert!(prepare(vec![no_type]).unwrap_err().is_invalid_input());
        let id = Uuid::new_v4();
        let twice = vec![
            NewEvent::new("X", &serde_json::json!({})).with_id(id),
            NewEvent::new("X", &serde_json::json!({})).with_id(id),
        ];
        assert!(prepare(twice).unwrap_err().is_invalid_input());
        let empty_version = NewEvent::new("X", &serde_json::json!({})).with_version("");
        assert!(prepare(vec![empty_version]).unwrap_err().is_invalid_input());
    }

    fn waiting(stream: &str, expected: ExpectedRevision) -> Waiting {
        Waiting {
            append: Append {
                stream: stream.into(),
                revision: format!("{stream}:rev"),
                category: "cat".into(),
                holds: None,
                aggregate_type: "t".into(),
                aggregate_id: stream.into(),
                expected,
                batch: prepare(vec![NewEvent::new("X", &serde_json::json!({}))]).unwrap(),
            },
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_group_holds_more_appends_to_one_aggregate_only_after_exact_ones() {
        use ExpectedRevision::{Any, Exact, Exists, NoStream};
        let order = [
            ("a", NoStream),
            ("a", Exact(0)),
            ("b", Any),
            ("a", Exists),
            ("b", Exact(3)),
            ("a", Exact(1)),
            ("c", Exact(1)),
        ];
        let mut queue: VecDeque<Waiting> = order.iter().map(|(s, e)| waiting(s, *e)).collect();
        let shown = |g: &[Waiting]| -> Vec<(String, ExpectedRevision)> {
            g.iter()
                .map(|w| (w.append.stream.clone(), w.append.expected))
                .collect()
        };
        let first = next_group(&mut queue);
        // `a` takes two exact appends and the `exists` one after them; `b`'s `any`
        // append is its last in the call; what follows them waits, in order.
        assert_eq!(
            shown(&first),
            vec![
                ("a".into(), NoStream),
                ("a".into(), Exact(0)),
                ("b".into(), Any),
                ("a".into(), Exists),
                ("c".into(), Exact(1)),
            ]
        );
        let second = next_group(&mut queue);
        assert_eq!(
            shown(&second),
            vec![("b".into(), Exact(3)), ("a".into(), Exact(1))]
        );
        assert!(queue.is_empty());
    }

    /// Calls that stay in flight until the test lets them end: each reports its
    /// appends' streams, then waits for a permit.
    struct HeldCalls {
        started: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
        report: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
        end: Arc<tokio::sync::Semaphore>,
    }

    impl HeldCalls {
        fn new() -> Self {
            let (report, started) = tokio::sync::mpsc::unbounded_channel();
            let end = Arc::new(tokio::sync::Semaphore::new(0));
            HeldCalls {
                started,
                report,
                end,
            }
        }

        /// Queues an append to `stream` on `queues`, starting its task with these calls.
        fn append(&self, queues: &Arc<Queues>, stream: &str) -> oneshot::Receiver<Result<Value>> {
            let w = waiting(stream, ExpectedRevision::Any);
            let (report, end, task_queues) =
                (self.report.clone(), self.end.clone(), queues.clone());
            queues.enqueue(w.append, move |partition, arrived| {
                tokio::spawn(async move {
                    task_queues
                        .drain(partition, arrived, move |group| {
                            let (report, end) = (report.clone(), end.clone());
                            async move {
                                let streams =
                                    group.iter().map(|w| w.append.stream.clone()).collect();
                                let _ = report.send(streams);
                                end.acquire().await.expect("open").forget();
                                for w in group {
                                    let _ = w.reply.send(Ok(Value::Nil));
                                }
                            }
                        })
                        .await;
                });
            })
        }

        /// The streams of the next call to start (waits for it, within a minute).
        async fn next(&mut self) -> Vec<String> {
            tokio::time::timeout(std::time::Duration::from_secs(60), self.started.recv())
                .await
                .expect("a call starts")
                .expect("calls go on")
        }
    }

    #[tokio::test]
    async fn an_append_goes_out_at_once_while_calls_are_in_flight_if_there_is_room() {
        let queues = Arc::new(Queues::default());
        let mut calls = HeldCalls::new();
        let mut replies = Vec::new();
        // Each append gets a call of its own while none of the calls before it ended.
        for i in 0..MAX_IN_FLIGHT {
            replies.push(calls.append(&queues, &format!("s{i}")));
            assert_eq!(calls.next().await, vec![format!("s{i}")]);
        }
        // No room: what comes now waits for a call to end, then goes in one call.
        for i in 0..3 {
            replies.push(calls.append(&queues, &format!("late{i}")));
        }
        tokio::task::yield_now().await;
        assert!(
            calls.started.try_recv().is_err(),
            "no call starts without room"
        );
        calls.end.add_permits(1);
        assert_eq!(calls.next().await, vec!["late0", "late1", "late2"]);
        calls.end.add_permits(MAX_IN_FLIGHT);
        for r in replies {
            assert!(r.await.expect("replied").is_ok());
        }
        // With nothing left, the task ends and the partition's queue goes.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !queues.partitions.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the task ends");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn prepare_fills_defaults() {
        let p = prepare(vec![NewEvent::new("X", &serde_json::json!({"a": 1}))]).unwrap();
        assert_eq!(p[0].version, "1");
        assert_eq!(p[0].id.get_version_num(), 4);
        assert!(p[0].timestamp.ends_with('Z'));
    }

    #[test]
    fn parses_conflict_and_garbage() {
        let ids = vec![Uuid::new_v4()];
        let conflict = Value::Array(vec![Value::BulkString(b"conflict".to_vec()), Value::Int(3)]);
        match parse_reply(
            conflict,
            "k",
            "user",
            "1",
            ExpectedRevision::Exact(1),
            ids.clone(),
        ) {
            Err(e) if e.is_conflict() => {
                let c = e.conflict().expect("a conflict has its details");
                assert_eq!(c.aggregate, "user/1");
                assert_eq!(c.expected, ExpectedRevision::Exact(1));
                assert_eq!(c.actual, 3);
            }
            other => panic!("{other:?}"),
        }
        for garbage in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Nil]),
        ] {
            assert!(matches!(
                parse_reply(garbage, "k", "t", "i", ExpectedRevision::Any, ids.clone()),
                Err(e) if e.is_corrupt()
            ));
        }
    }
}
