//! Reading: an aggregate's history in bounded pages, and the category feed.
//!
//! Every read is `XRANGE key start end COUNT page_size`, the next page starting after
//! the last id seen (`(id`): never one unbounded `XRANGE`, which would block Redis on a
//! long stream. Replies are taken as raw [`redis::Value`]s and walked once, moving the
//! bytes into the event's strings (no per-entry map).

use chrono::{DateTime, Utc};
use redis::Value;

use crate::error::{Error, Result};

use super::EventStore;
use super::keys::{aggregate_keys, category_key};
use super::model::{RecordedEvent, validate_position};

/// The most entries one [`EventStore::read_category`] call returns, whatever `count`
/// says: one reply stays bounded; read on with [`CategoryReadOptions::after`].
pub const MAX_CATEGORY_COUNT: usize = 10_000;

/// Which part of an aggregate's history to read. The default is all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    from_revision: Option<u64>,
    after: Option<(String, u64)>,
    to_revision: Option<u64>,
    as_of: Option<DateTime<Utc>>,
    page_size: Option<usize>,
}

impl ReadOptions {
    /// The whole history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts at revision `n` (inclusive). Entries before it are still paged through
    /// (Redis cannot seek a stream by position), so prefer [`after`](Self::after) when
    /// the stream position is known, e.g. from a snapshot.
    pub fn from_revision(mut self, n: u64) -> Self {
        self.from_revision = Some(n);
        self
    }

    /// Starts right after the entry at `position` (a stream id), which is known to be
    /// at `revision`: used to continue from a snapshot without reading what it covers.
    pub fn after(mut self, position: impl Into<String>, revision: u64) -> Self {
        self.after = Some((position.into(), revision));
        self
    }

    /// Stops after revision `n` (inclusive): "the state at version N".
    pub fn to_revision(mut self, n: u64) -> Self {
        self.to_revision = Some(n);
        self
    }

    /// Only entries Redis stored at or before `t` (by their stream id's millisecond
    /// time): "the state as of time T".
    pub fn as_of(mut self, t: DateTime<Utc>) -> Self {
        self.as_of = Some(t);
        self
    }

    /// Entries per request (default: the store's page size).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }
}

/// Where to read a category stream from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryReadOptions {
    partition: u32,
    after: Option<String>,
    count: Option<usize>,
}

impl CategoryReadOptions {
    /// From the start of partition 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this partition of the category (default 0).
    pub fn partition(mut self, p: u32) -> Self {
        self.partition = p;
        self
    }

    /// Starts after this position (exclusive): the last position a subscriber has seen.
    pub fn after(mut self, position: impl Into<String>) -> Self {
        self.after = Some(position.into());
        self
    }

    /// How many entries to read at most (default: the store's page size; capped at
    /// [`MAX_CATEGORY_COUNT`]).
    pub fn count(mut self, n: usize) -> Self {
        self.count = Some(n);
        self
    }
}

/// A lazy, paged read of an aggregate's history, from [`EventStore::history`].
///
/// Each [`next_page`](Self::next_page) sends one bounded `XRANGE`. A failed call leaves
/// the cursor where it was, so it can be called again.
#[derive(Debug)]
pub struct History {
    store: EventStore,
    state: Result<Cursor, Option<Error>>,
}

#[derive(Debug)]
struct Cursor {
    key: String,
    aggregate_type: String,
    aggregate_id: String,
    /// `XRANGE` start bound of the next page: `-` or `(id`.
    start: String,
    /// `XRANGE` end bound: `+` or `<ms>`.
    end: String,
    /// Revision of the next entry if it carries none (entries the seed wrote).
    next_revision: u64,
    from_revision: u64,
    to_revision: Option<u64>,
    page_size: usize,
    done: bool,
}

impl EventStore {
    /// An aggregate's history (or part of it, see [`ReadOptions`]), read lazily in pages.
    ///
    /// Invalid arguments are reported by the first [`History::next_page`].
    pub fn history(&self, aggregate_type: &str, aggregate_id: &str, opts: ReadOptions) -> History {
        History {
            store: self.clone(),
            state: self
                .cursor(aggregate_type, aggregate_id, opts)
                .map_err(Some),
        }
    }

    fn cursor(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        opts: ReadOptions,
    ) -> Result<Cursor> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        let page_size = opts.page_size.unwrap_or(self.config().page_size);
        if page_size == 0 {
            return Err(Error::invalid("the page size must be at least 1"));
        }
        let (start, next_revision) = match opts.after {
            Some((position, revision)) => {
                validate_position(&position)?;
                (format!("({position}"), revision.saturating_add(1))
            }
            None => ("-".to_owned(), 1),
        };
        let mut done = false;
        let end = match opts.as_of {
            None => "+".to_owned(),
            Some(t) => match u64::try_from(t.timestamp_millis()) {
                // `<ms>` as an end bound includes every sequence number of that ms.
                Ok(ms) => ms.to_string(),
                Err(_) => {
                    done = true; // before 1970: no stream entry is that old
                    "0".to_owned()
                }
            },
        };
        if opts.to_revision.is_some_and(|to| to < next_revision) {
            done = true;
        }
        Ok(Cursor {
            key: keys.stream,
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            start,
            end,
            next_revision,
            from_revision: opts.from_revision.unwrap_or(0),
            to_revision: opts.to_revision,
            page_size,
            done,
        })
    }

    /// Reads a whole history (or the part `opts` selects) into memory, page by page.
    /// An aggregate with no events gives an empty list.
    pub async fn read_all(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        opts: ReadOptions,
    ) -> Result<Vec<RecordedEvent>> {
        let mut history = self.history(aggregate_type, aggregate_id, opts);
        let mut all = Vec::new();
        while let Some(page) = history.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Reads up to `count` entries of a category stream partition, after a position
    /// (from its start by default). To follow the feed, call again with
    /// [`CategoryReadOptions::after`] set to the last position returned.
    ///
    /// The category stream is trimmed, and entries the seed wrote carry no revision:
    /// those come back with revision 0.
    pub async fn read_category(
        &self,
        aggregate_type: &str,
        opts: CategoryReadOptions,
    ) -> Result<Vec<RecordedEvent>> {
        let key = category_key(self.config(), aggregate_type, opts.partition)?;
        let count = opts
            .count
            .unwrap_or(self.config().page_size)
            .min(MAX_CATEGORY_COUNT);
        if count == 0 {
            return Ok(Vec::new());
        }
        let start = match &opts.after {
            Some(p) => {
                validate_position(p)?;
                format!("({p}")
            }
            None => "-".to_owned(),
        };
        let reply = self.xrange(&key, &start, "+", count).await?;
        let mut out = Vec::new();
        decode_entries(reply, &key, None, &mut |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    async fn xrange(&self, key: &str, start: &str, end: &str, count: usize) -> Result<Value> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(key).arg(start).arg(end).arg("COUNT").arg(count);
        let cmd = &cmd;
        self.with_reconnect(key, move |mut con| async move {
            cmd.query_async::<Value>(&mut con).await
        })
        .await
    }
}

impl History {
    /// The next page of events, `None` when the history is exhausted.
    ///
    /// Pages hold at most the page size of events; fewer at the edges of a
    /// `from_revision`/`to_revision` range.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RecordedEvent>>> {
        let cursor = match &mut self.state {
            Ok(c) => c,
            Err(e) => {
                return match e.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
        };
        loop {
            if cursor.done {
                return Ok(None);
            }
            let reply = self
                .store
                .xrange(&cursor.key, &cursor.start, &cursor.end, cursor.page_size)
                .await?;
            let mut page = Vec::with_capacity(cursor.page_size.min(10_000));
            let defaults = (cursor.aggregate_type.as_str(), cursor.aggregate_id.as_str());
            let (from, to) = (cursor.from_revision, cursor.to_revision);
            let mut next_revision = cursor.next_revision;
            let mut reached_end = false;
            let (read, last_position) = decode_entries(
                reply,
                &cursor.key,
                Some((defaults, &mut next_revision)),
                &mut |e| {
                    if to.is_some_and(|to| e.revision > to) {
                        reached_end = true;
                    } else if e.revision >= from {
                        page.push(e);
                    }
                    Ok(())
                },
            )?;
            cursor.next_revision = next_revision;
            if let Some(p) = last_position {
                cursor.start = format!("({p}");
            }
            if read < cursor.page_size || reached_end || to.is_some_and(|to| next_revision > to) {
                cursor.done = true;
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
    }
}

/// Takes the bytes out of a bulk string.
fn into_string(v: Value, key: &str, what: &str) -> Result<String> {
    let bytes = match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => return Ok(s),
        Value::VerbatimString { text, .. } => return Ok(text),
        Value::Int(i) => return Ok(i.to_string()),
        _ => {
            return Err(Error::Corrupt {
                key: key.to_owned(),
                reason: format!("{what} is not a string"),
            });
        }
    };
    String::from_utf8(bytes).map_err(|_| Error::Corrupt {
        key: key.to_owned(),
        reason: format!("{what} is not UTF-8"),
    })
}

/// Walks an `XRANGE` reply, calling `sink` with each decoded event in order.
///
/// `aggregate`: when reading an aggregate stream, its type and id (the defaults for
/// entries that lack them) and the revision the next entry has if it carries none;
/// entries are never removed from an aggregate stream, so position gives the revision.
/// `None` for a category stream, where entries must name their aggregate.
///
/// Returns how many entries the reply held and the id of the last one (where the next
/// page starts, whether or not `sink` kept that entry).
fn decode_entries(
    reply: Value,
    key: &str,
    mut aggregate: Option<((&str, &str), &mut u64)>,
    sink: &mut dyn FnMut(RecordedEvent) -> Result<()>,
) -> Result<(usize, Option<String>)> {
    let corrupt = |reason: String| Error::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let entries = match reply {
        Value::Array(entries) => entries,
        Value::Nil => return Ok((0, None)),
        _ => return Err(corrupt("XRANGE did not answer with a list".to_owned())),
    };
    let count = entries.len();
    let mut last_position = None;
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Array(parts) = entry else {
            return Err(corrupt("a stream entry is not a list".to_owned()));
        };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            return Err(corrupt("a stream entry has no id or no fields".to_owned()));
        };
        let position = into_string(id, key, "an entry id")?;
        if i + 1 == count {
            last_position = Some(position.clone());
        }
        // RESP2 gives a flat [name, value, ...] list; RESP3 may give a map.
        let flat = match fields {
            Value::Array(flat) => flat,
            Value::Map(map) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Nil => Vec::new(),
            _ => return Err(corrupt(format!("entry {position}: fields are not a list"))),
        };
        let mut pairs = flat.into_iter();

        let mut event_id = None;
        let mut aggregate_type = None;
        let mut aggregate_id = None;
        let mut event_type = None;
        let mut data = None;
        let mut timestamp = None;
        let mut version = None;
        let mut revision = None;
        while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
            let slot = match &name {
                Value::BulkString(b) => match b.as_slice() {
                    b"event_id" => &mut event_id,
                    b"aggregate_type" => &mut aggregate_type,
                    b"aggregate_id" => &mut aggregate_id,
                    b"event_type" => &mut event_type,
                    b"data" => &mut data,
                    b"timestamp" => &mut timestamp,
                    b"version" => &mut version,
                    b"revision" => &mut revision,
                    _ => continue, // fields of other writers are ignored
                },
                _ => continue,
            };
            *slot = Some(into_string(value, key, "a field value")?);
        }

        let missing = |field: &str| corrupt(format!("entry {position} has no {field}"));
        let event_type = event_type.ok_or_else(|| missing("event_type"))?;
        let data = data.ok_or_else(|| missing("data"))?;
        let revision = match &revision {
            Some(r) => Some(r.parse::<u64>().map_err(|_| {
                corrupt(format!("entry {position}: revision {r:?} is not a number"))
            })?),
            None => None,
        };
        let (aggregate_type, aggregate_id, revision) = match &mut aggregate {
            Some(((t, i), next)) => {
                let rev = revision.unwrap_or(**next);
                **next = rev.saturating_add(1);
                (
                    aggregate_type.unwrap_or_else(|| (*t).to_owned()),
                    aggregate_id.unwrap_or_else(|| (*i).to_owned()),
                    rev,
                )
            }
            None => (
                aggregate_type.ok_or_else(|| missing("aggregate_type"))?,
                aggregate_id.ok_or_else(|| missing("aggregate_id"))?,
                revision.unwrap_or(0),
            ),
        };
        sink(RecordedEvent {
            event_id: event_id.unwrap_or_default(),
            aggregate_type,
            aggregate_id,
            event_type,
            data,
            timestamp: timestamp.unwrap_or_default(),
            version: version.unwrap_or_else(|| "1".to_owned()),
            revision,
            position,
        })?;
    }
    Ok((count, last_position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let mut flat = Vec::new();
        for (k, v) in fields {
            flat.push(bulk(k));
            flat.push(bulk(v));
        }
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    #[test]
    fn decodes_seed_entries_by_position() {
        let reply = Value::Array(vec![
            entry(
                "1-0",
                &[
                    ("event_id", "a"),
                    ("event_type", "T"),
                    ("data", "{}"),
                    ("other", "x"),
                ],
            ),
            entry(
                "2-0",
                &[("event_id", "b"), ("event_type", "T"), ("data", "[]")],
            ),
            entry(
                "3-0",
                &[
                    ("event_id", "c"),
                    ("event_type", "T"),
                    ("data", "1"),
                    ("revision", "3"),
                ],
            ),
        ]);
        let mut next = 1;
        let mut got = Vec::new();
        decode_entries(reply, "k", Some((("user", "1"), &mut next)), &mut |e| {
            got.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(next, 4);
        assert_eq!(got[0].aggregate_type, "user");
        assert_eq!(got[0].version, "1");
        assert_eq!(got[1].position, "2-0");
    }

    #[test]
    fn bad_entries_are_corrupt_not_panics() {
        let cases = vec![
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk("1-0")])]),
            Value::Array(vec![entry("1-0", &[("event_id", "a")])]),
            Value::Array(vec![entry(
                "1-0",
                &[("event_type", "T"), ("data", "{}"), ("revision", "x")],
            )]),
            Value::Array(vec![Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("data"), Value::BulkString(vec![0xff])]),
            ])]),
        ];
        for reply in cases {
            let r = decode_entries(reply, "k", None, &mut |_| Ok(()));
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
        }
        // A category entry must name its aggregate.
        let reply = Value::Array(vec![entry("1-0", &[("event_type", "T"), ("data", "{}")])]);
        assert!(decode_entries(reply, "k", None, &mut |_| Ok(())).is_err());
    }
}
