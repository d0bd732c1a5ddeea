//! Reading: an aggregate's history in bounded pages, and the category feed.
//!
//! Every read is `XRANGE key start end COUNT page_size`, the next page starting after
//! the last id seen (`(id`): never one unbounded `XRANGE`, which would block Redis on a
//! long stream. Replies are walked once where they were read (see `wire`), copying each
//! field the event keeps into its string: no per-entry map, no intermediate values.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

use super::EventStore;
use super::keys::{aggregate_keys, category_key};
use super::model::{RecordedEvent, validate_position};
use super::page::{Page, decode_page};
use super::wire::Frame;

/// The most entries one [`EventStore::read_category`] call returns, whatever `count`
/// says: one reply stays bounded; read on with [`CategoryReadOptions::after`].
pub const MAX_CATEGORY_COUNT: usize = 10_000;

/// Which part of an aggregate's history to read. The default is all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    from_revision: Option<u64>,
    after: Option<(String, u64)>,
    from_entry: Option<(String, u64)>,
    to_revision: Option<u64>,
    as_of: Option<DateTime<Utc>>,
    page_size: Option<usize>,
    first_page_size: Option<usize>,
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

    /// Starts at the entry at `position` (inclusive), which is known to be at
    /// `revision`: the first page begins with that entry again, so a reader that
    /// holds what the history folds to up to there (in memory) can check that it is
    /// still in the stream, the same event, before it goes on after it. Replaces
    /// [`after`](Self::after).
    pub fn from_entry(mut self, position: impl Into<String>, revision: u64) -> Self {
        self.from_entry = Some((position.into(), revision));
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

    /// Entries in the first request only (default: the page size); later pages hold
    /// the page size. A small first page suits a read that may be thrown away (a
    /// replay reads the start of a history while it asks for a snapshot).
    pub fn first_page_size(mut self, n: usize) -> Self {
        self.first_page_size = Some(n);
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
    /// The size of the next page if it is the first (then `None`).
    first_page_size: Option<usize>,
    done: bool,
    /// The type's partition count was checked (before the first page).
    partitions_checked: bool,
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
        if page_size == 0 || opts.first_page_size == Some(0) {
            return Err(Error::invalid("the page size must be at least 1"));
        }
        let (start, next_revision) = match (opts.from_entry, opts.after) {
            (Some((position, revision)), _) => {
                validate_position(&position)?;
                (position, revision)
            }
            (None, Some((position, revision))) => {
                validate_position(&position)?;
                (format!("({position}"), revision.saturating_add(1))
            }
            (None, None) => ("-".to_owned(), 1),
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
            first_page_size: opts.first_page_size,
            done,
            partitions_checked: false,
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
            all.extend(page.iter().map(|e| e.to_event()));
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
        self.check_partitions(aggregate_type, false).await?;
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
        let page = self
            .xrange(&key, &start, "+", count, |reply| {
                decode_page(reply, &key, None)
            })
            .await?;
        Ok(page.to_events())
    }

    /// Reads up to `count` entries of a whole category, every partition, merged by
    /// stream id, after `after` (a position this method returned; from the start by
    /// default). Returns the entries and the position to pass next time.
    ///
    /// The position lists one stream position per partition, comma-separated (empty
    /// for a partition not read yet): with one partition it is just that partition's
    /// position, as [`read_category`](Self::read_category) gives it. Each
    /// aggregate's events keep their order (an aggregate lives in one partition);
    /// across partitions the order is the ids' millisecond clocks, which on a cluster
    /// are different nodes' clocks. A position made for another partition count is
    /// refused.
    pub async fn read_category_merged(
        &self,
        aggregate_type: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<(Vec<RecordedEvent>, String)> {
        let mut positions = category_positions(self.config(), aggregate_type, after)?;
        let count = count.min(MAX_CATEGORY_COUNT);
        let reads = positions.iter().enumerate().map(|(p, after)| {
            let mut opts = CategoryReadOptions::new().partition(p as u32).count(count);
            if let Some(after) = after {
                opts = opts.after(after.clone());
            }
            self.read_category(aggregate_type, opts)
        });
        let pages = futures::future::try_join_all(reads).await?;
        let mut merged: Vec<(StreamId, usize, RecordedEvent)> = pages
            .into_iter()
            .enumerate()
            .flat_map(|(p, events)| {
                events
                    .into_iter()
                    .map(move |e| (StreamId::parse(&e.position), p, e))
            })
            .collect();
        // Stable: within a partition, stream order; across, by id then partition.
        merged.sort_by_key(|(id, p, _)| (*id, *p));
        merged.truncate(count);
        let events: Vec<RecordedEvent> = merged
            .into_iter()
            .map(|(_, p, e)| {
                positions[p] = Some(e.position.clone());
                e
            })
            .collect();
        let next = category_position(&positions).unwrap_or_default();
        Ok((events, next))
    }

    /// One `XRANGE ... COUNT count` on a lean connection, its reply walked by `walk`.
    pub(crate) async fn xrange<T>(
        &self,
        key: &str,
        start: &str,
        end: &str,
        count: usize,
        walk: impl FnOnce(Frame<'_>) -> Result<T>,
    ) -> Result<T> {
        let count = count.to_string();
        let args: [&[u8]; 6] = [
            b"XRANGE",
            key.as_bytes(),
            start.as_bytes(),
            end.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ];
        self.inner
            .reader
            .request(key, &args, walk)
            .await
            .map_err(|e| match e.into_redis() {
                Ok(e) => self.map_err(e, key),
                Err(e) => e,
            })
    }

    /// Fetches one page of a stream without decoding it: how many entries, and the last
    /// one's position. The benchmarks' floor (the cost of the fetch alone).
    #[cfg(feature = "bench")]
    pub async fn fetch_page_undecoded(
        &self,
        key: &str,
        start: &str,
        count: usize,
    ) -> Result<(usize, Option<String>)> {
        self.xrange(key, start, "+", count, |mut frame| {
            let corrupt = |reason: String| Error::corrupt(key, reason);
            let n = frame.array().map_err(corrupt)?.unwrap_or(0);
            let mut last = None;
            for i in 0..n {
                frame.array().map_err(corrupt)?;
                let id = frame.bulk().map_err(corrupt)?;
                if i + 1 == n {
                    last = id.map(|id| String::from_utf8_lossy(id).into_owned());
                }
                frame.skip().map_err(corrupt)?;
            }
            Ok((n, last))
        })
        .await
    }
}

impl History {
    /// Whether the history is known to be exhausted: [`next_page`](Self::next_page)
    /// would give `None` without asking Redis (after a short last page, say).
    pub fn is_done(&self) -> bool {
        match &self.state {
            Ok(c) => c.done,
            Err(e) => e.is_none(),
        }
    }

    /// The next page of events, `None` when the history is exhausted.
    ///
    /// Pages hold at most the page size of events; fewer at the edges of a
    /// `from_revision`/`to_revision` range. Never empty.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        let cursor = match &mut self.state {
            Ok(c) => c,
            Err(e) => {
                return match e.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
        };
        if !cursor.partitions_checked {
            self.store
                .check_partitions(&cursor.aggregate_type, false)
                .await?;
            cursor.partitions_checked = true;
        }
        loop {
            if cursor.done {
                return Ok(None);
            }
            let defaults = (cursor.aggregate_type.as_str(), cursor.aggregate_id.as_str());
            let mut next_revision = cursor.next_revision;
            let count = cursor.first_page_size.take().unwrap_or(cursor.page_size);
            let mut page = self
                .store
                .xrange(&cursor.key, &cursor.start, &cursor.end, count, |reply| {
                    decode_page(reply, &cursor.key, Some((defaults, &mut next_revision)))
                })
                .await?;
            cursor.next_revision = next_revision;
            let read = page.len();
            if let Some(last) = page.last() {
                cursor.start = format!("({}", last.position);
            }
            let (from, to) = (cursor.from_revision, cursor.to_revision);
            let reached_end = to.is_some_and(|to| page.iter().any(|e| e.revision > to));
            page.retain_revisions(|r| r >= from && to.is_none_or(|to| r <= to));
            if read < count || reached_end || to.is_some_and(|to| next_revision > to) {
                cursor.done = true;
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
    }
}

/// The per-partition positions in a whole-category position (see
/// [`EventStore::read_category_merged`]): one stream position per partition,
/// comma-separated, empty for a partition not read yet; `None` is from the start.
pub(crate) fn category_positions(
    config: &crate::StoreConfig,
    aggregate_type: &str,
    after: Option<&str>,
) -> Result<Vec<Option<String>>> {
    let partitions = config.partitions_of(aggregate_type) as usize;
    let Some(text) = after else {
        return Ok(vec![None; partitions]);
    };
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() != partitions {
        return Err(Error::invalid(format!(
            "the category position {text:?} has {} part(s), but type {aggregate_type:?} has \
             {partitions} partition(s)",
            parts.len()
        )));
    }
    parts
        .into_iter()
        .map(|p| {
            if p.is_empty() {
                Ok(None)
            } else {
                validate_position(p).map(|()| Some(p.to_owned()))
            }
        })
        .collect()
}

/// The whole-category position of per-partition positions; `None` when no partition
/// has one.
pub(crate) fn category_position(positions: &[Option<String>]) -> Option<String> {
    if positions.iter().all(Option::is_none) {
        return None;
    }
    Some(
        positions
            .iter()
            .map(|p| p.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A stream id's two numbers, for ordering entries of different streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(position: &str) -> StreamId {
        let (ms, seq) = position.split_once('-').unwrap_or((position, "0"));
        StreamId(
            ms.parse().unwrap_or(u64::MAX),
            seq.parse().unwrap_or(u64::MAX),
        )
    }
}
