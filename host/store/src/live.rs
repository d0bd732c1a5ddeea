//! Live subscriptions: following a stream as events are appended (see
//! [`Subscription`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::EventStore;
use crate::error::{Error, Result};
use crate::keys::{aggregate_keys, category_key};
use crate::model::{RecordedEvent, validate_position};
use crate::page::{Page, decode_page};
use crate::read::{History, MAX_CATEGORY_COUNT, ReadOptions};
use crate::wire::{Dedicated, Frame};

/// How long one `XREAD` blocks by default before it is sent again.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(2);

/// How long a subscription keeps trying to reach Redis by default before it ends
/// with an [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(60);

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Pages the task may read ahead of the consumer.
const PAGES_AHEAD: usize = 2;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Live {
    /// An event stored after the start position (or after the last event delivered).
    Event(RecordedEvent),
    /// Everything stored when the subscription started has been delivered; the events
    /// that follow are live. Sent exactly once, between the two phases (an SSE server
    /// sends it as the event named `caught-up`).
    CaughtUp {
        /// The position of the last event delivered so far (the start position if
        /// none was; `None` if the subscription started at the beginning of a
        /// stream that had no events).
        position: Option<String>,
    },
}

/// Where a subscription starts, how it pages and how long it waits. The default: from
/// the beginning of the stream, the store's page size, 2 s blocks, give up after 60 s
/// without Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    start: SubscribeFrom,
    page_size: Option<usize>,
    block: Duration,
    give_up_after: Option<Duration>,
}

/// Where a subscription starts: see [`SubscribeOptions::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeFrom {
    /// The beginning of the stream (the default).
    Beginning,
    /// Strictly after a stream position ([`SubscribeOptions::after`]).
    After {
        /// The position.
        position: String,
        /// The revision of the aggregate's event there, if the caller knows it.
        revision: Option<u64>,
    },
    /// After the stream's last entry when the subscription starts
    /// ([`SubscribeOptions::from_end`]).
    End,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start: SubscribeFrom::Beginning,
            page_size: None,
            block: DEFAULT_BLOCK,
            give_up_after: Some(DEFAULT_GIVE_UP_AFTER),
        }
    }
}

impl SubscribeOptions {
    /// From the beginning of the stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts strictly after this stream position (the last one a client saw, e.g. an
    /// SSE `Last-Event-ID`). It need not be the position of an entry that exists.
    pub fn after(mut self, position: impl Into<String>) -> Self {
        self.start = SubscribeFrom::After {
            position: position.into(),
            revision: None,
        };
        self
    }

    /// Like [`after`](Self::after), for an aggregate subscription whose caller knows the
    /// revision of the event at `position` (it saves looking it up).
    pub fn after_revision(mut self, position: impl Into<String>, revision: u64) -> Self {
        self.start = SubscribeFrom::After {
            position: position.into(),
            revision: Some(revision),
        };
        self
    }

    /// Starts after the stream's last entry at the time of the call: only events
    /// appended from then on (the caught-up signal comes first).
    pub fn from_end(mut self) -> Self {
        self.start = SubscribeFrom::End;
        self
    }

    /// Entries per catch-up page and per `XREAD` (default: the store's page size; at
    /// most [`MAX_CATEGORY_COUNT`]). Bounds the subscription's memory.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }

    /// How long one `XREAD` blocks waiting for events (default [`DEFAULT_BLOCK`];
    /// at least 1 ms).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Where the subscription starts.
    pub fn start(&self) -> &SubscribeFrom {
        &self.start
    }

    /// The same options, starting at `start` (a merged feed's partitions).
    pub(crate) fn with_start(mut self, start: SubscribeFrom) -> Self {
        self.start = start;
        self
    }

    /// How long Redis may stay unreachable before the subscription ends with an
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error (default
    /// [`DEFAULT_GIVE_UP_AFTER`]); `None` keeps trying for ever.
    pub fn give_up_after(mut self, limit: Option<Duration>) -> Self {
        self.give_up_after = limit;
        self
    }
}

/// A live subscription to an aggregate's stream ([`EventStore::subscribe`]) or to one
/// partition of a category stream ([`EventStore::subscribe_category`]).
///
/// # What it delivers
///
/// Every event stored strictly after the start position, once each, in stream order,
/// as [`Live::Event`]s, with one [`Live::CaughtUp`] at the boundary between two phases:
///
/// 1. **Catch-up**: what is already stored after the start, read in bounded pages
///    (`XRANGE (position + COUNT n`: the same reads and decoding as [`History`] and
///    [`EventStore::read_category`]) until a page comes back short, i.e. the reader has
///    reached the end of the stream as it was at that moment. Then `CaughtUp`.
/// 2. **Live**: `XREAD COUNT <n> BLOCK <ms> STREAMS key <last id>` on a connection of
///    the subscription's own (a blocking read would stall the shared connection),
///    always from the last position *delivered*, never from `$`: an event appended
///    between the last catch-up page and the first `XREAD` is delivered, not lost.
///    Entries are decoded exactly as reads decode them: aggregate entries carry their
///    revision (or get it by position, for entries the seed wrote), category entries
///    name their aggregate.
///
/// A subscription started after the position of the last event a client saw therefore
/// resumes exactly: no gap, no duplicate, whatever is appended meanwhile (an SSE server
/// passes `Last-Event-ID` to [`SubscribeOptions::after`]).
///
/// # Failures
///
/// A lost connection, a restarted Redis, a reply that does not come in time: the
/// subscription reconnects by itself (back-off from 100 ms to 2 s) and continues after
/// the last position it delivered, so a restart loses and repeats nothing (unless
/// Redis itself lost the events: no persistence, a failover). It gives up, yielding an
/// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error, once Redis has been
/// unreachable for [`SubscribeOptions::give_up_after`] (60 s by default). Any other
/// error (a key of another type, a corrupt entry) is yielded at once. After an error
/// the subscription has ended: [`next`](Self::next) gives `None`.
///
/// # Shape, memory, cancellation
///
/// A subscription is a task of its own (spawned on the current tokio runtime) that
/// reads pages into a channel holding two; the `Subscription` hands out their events
/// one by one. Memory is bounded by about four pages ([`SubscribeOptions::page_size`])
/// however far behind the consumer is, and Redis is not read faster than the consumer
/// takes events.
///
/// [`next`](Self::next) is cancel-safe (it can sit in a `tokio::select!` beside a
/// heartbeat timer), and `Subscription` is a [`futures::Stream`] of
/// `Result<`[`Live`]`>`. Dropping it stops the task at once and closes its
/// connection, which unblocks Redis: a disconnected SSE client costs nothing once its
/// stream is dropped. The block timeout ([`SubscribeOptions::block`], 2 s by default)
/// bounds how long a silently dead connection goes unnoticed.
///
/// # Trimmed category streams
///
/// Category streams are trimmed (approximately) at
/// [`StoreConfig::category_max_len`](crate::StoreConfig::category_max_len). A
/// subscription resuming after a position that has since been trimmed away continues
/// with the oldest entry still there: the entries trimmed in between are not reported.
/// Aggregate streams are never trimmed.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Item>,
    task: JoinHandle<()>,
    current: Option<(Page, usize)>,
    position: Option<String>,
    done: bool,
}

#[derive(Debug)]
enum Item {
    Page(Page),
    CaughtUp,
    Failed(Error),
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// The next event or signal; `None` once the subscription has ended (after an
    /// error). Cancel-safe: a call dropped before it completes loses nothing.
    pub async fn next(&mut self) -> Option<Result<Live>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The position of the last event handed out (the start position before any;
    /// `None` from the beginning of a stream until its first event): where a new
    /// subscription would resume.
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Live>>> {
        loop {
            if let Some((page, i)) = &mut self.current {
                if let Some(e) = page.get(*i) {
                    *i += 1;
                    let event = e.to_event();
                    self.position = Some(event.position.clone());
                    return Poll::Ready(Some(Ok(Live::Event(event))));
                }
                self.current = None;
            }
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Item::Page(page)) => self.current = Some((page, 0)),
                Some(Item::CaughtUp) => {
                    return Poll::Ready(Some(Ok(Live::CaughtUp {
                        position: self.position.clone(),
                    })));
                }
                Some(Item::Failed(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl futures::Stream for Subscription {
    type Item = Result<Live>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl EventStore {
    /// Follows an aggregate's stream: the events after the start position, then the
    /// ones appended from now on (see [`Subscription`]).
    ///
    /// Fails at once for a bad type, id, position or option, and if Redis cannot be
    /// asked where to start (a position without its revision, or
    /// [`SubscribeOptions::from_end`]). The aggregate need not have events yet.
    /// Must be called within a tokio runtime: the subscription is a task.
    pub async fn subscribe(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        let page_size = self.live_page_size(&opts)?;
        self.check_partitions(aggregate_type, false).await?;
        let from_end = opts.start == SubscribeFrom::End;
        let (last, revision) = match opts.start {
            SubscribeFrom::Beginning => (None, 0),
            SubscribeFrom::After {
                position,
                revision: Some(revision),
            } => {
                validate_position(&position)?;
                (Some(position), revision)
            }
            SubscribeFrom::After {
                position,
                revision: None,
            } => {
                validate_position(&position)?;
                let revision = self
                    .revision_at(aggregate_type, aggregate_id, &position)
                    .await?;
                (Some(position), revision)
            }
            SubscribeFrom::End => match self.last_entry(&keys.stream).await? {
                None => (None, 0),
                Some(position) => {
                    let revision = self
                        .revision_at(aggregate_type, aggregate_id, &position)
                        .await?;
                    (Some(position), revision)
                }
            },
        };
        let catch_up = if from_end {
            CatchUp::Done
        } else {
            let mut read = ReadOptions::new().page_size(page_size);
            if let Some(p) = &last {
                read = read.after(p.clone(), revision);
            }
            CatchUp::History(Box::new(self.history(aggregate_type, aggregate_id, read)))
        };
        Ok(self.spawn_follower(Follower {
            store: self.clone(),
            key: keys.stream,
            aggregate: Some((aggregate_type.to_owned(), aggregate_id.to_owned())),
            last,
            next_revision: revision.saturating_add(1),
            page_size,
            block: opts.block,
            give_up_after: opts.give_up_after,
            catch_up,
            tx: None,
        }))
    }

    /// Follows one partition of a category stream: the events of every aggregate of the
    /// type that lands in it, in the order they were appended (see [`Subscription`]).
    /// Entries the seed wrote carry no revision: they come with revision 0, as from
    /// [`EventStore::read_category`].
    ///
    /// Fails at once for a bad type, partition, position or option, and if Redis cannot
    /// be asked where the stream ends ([`SubscribeOptions::from_end`]). Must be called
    /// within a tokio runtime: the subscription is a task.
    pub async fn subscribe_category(
        &self,
        aggregate_type: &str,
        partition: u32,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        let key = category_key(self.config(), aggregate_type, partition)?;
        self.check_partitions(aggregate_type, false).await?;
        let page_size = self.live_page_size(&opts)?;
        let (last, catch_up) = match opts.start {
            SubscribeFrom::Beginning => (None, CatchUp::Category),
            SubscribeFrom::After { position, .. } => {
                validate_position(&position)?;
                (Some(position), CatchUp::Category)
            }
            SubscribeFrom::End => (self.last_entry(&key).await?, CatchUp::Done),
        };
        Ok(self.spawn_follower(Follower {
            store: self.clone(),
            key,
            aggregate: None,
            last,
            next_revision: 0,
            page_size,
            block: opts.block,
            give_up_after: opts.give_up_after,
            catch_up,
            tx: None,
        }))
    }

    /// The revision of the aggregate's last event at or before stream `position`: the
    /// number of its events up to there, 0 if there is none. For turning a position a
    /// client saw (an SSE `Last-Event-ID`) into a revision.
    ///
    /// One small read when the entry carries its revision (every entry Streamfold
    /// wrote does); entries the seed wrote are counted, page by page.
    pub async fn revision_at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        position: &str,
    ) -> Result<u64> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        validate_position(position)?;
        let defaults = (aggregate_type, aggregate_id);
        // Revision 0 from the decoder: the entry carries none (real ones start at 1).
        let mut unknown = 0;
        let page = self
            .lean(
                &keys.stream,
                &[
                    b"XREVRANGE",
                    keys.stream.as_bytes(),
                    position.as_bytes(),
                    b"-",
                    b"COUNT",
                    b"1",
                ],
                |reply| decode_page(reply, &keys.stream, Some((defaults, &mut unknown))),
            )
            .await?;
        let Some(last) = page.last() else {
            return Ok(0);
        };
        if last.revision > 0 {
            return Ok(last.revision);
        }
        // Written without a revision: count the entries up to it (never trimmed).
        let mut count = 0u64;
        let mut start = "-".to_owned();
        let page_size = self.config().page_size;
        loop {
            let mut next = 1;
            let page = self
                .xrange(&keys.stream, &start, last.position, page_size, |reply| {
                    decode_page(reply, &keys.stream, Some((defaults, &mut next)))
                })
                .await?;
            count += page.len() as u64;
            match page.last() {
                Some(e) if page.len() == page_size => start = format!("({}", e.position),
                _ => return Ok(count),
            }
        }
    }

    fn live_page_size(&self, opts: &SubscribeOptions) -> Result<usize> {
        if opts.block.is_zero() {
            return Err(Error::invalid(
                "the block timeout of a subscription must be at least 1 ms",
            ));
        }
        if opts.give_up_after.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid(
                "a subscription's give-up time must be longer than zero (or None)",
            ));
        }
        let n = opts.page_size.unwrap_or(self.config().page_size);
        if n == 0 || n > MAX_CATEGORY_COUNT {
            return Err(Error::invalid(format!(
                "a subscription's page size must be between 1 and {MAX_CATEGORY_COUNT}, not {n}"
            )));
        }
        Ok(n)
    }

    /// The id of a stream's last entry, `None` if it has none.
    async fn last_entry(&self, key: &str) -> Result<Option<String>> {
        self.lean(
            key,
            &[b"XREVRANGE", key.as_bytes(), b"+", b"-", b"COUNT", b"1"],
            |mut reply| {
                let corrupt = |reason: String| Error::corrupt(key, reason);
                if reply.array().map_err(corrupt)?.unwrap_or(0) == 0 {
                    return Ok(None);
                }
                reply.array().map_err(corrupt)?;
                let id = reply
                    .bulk()
                    .map_err(corrupt)?
                    .ok_or_else(|| corrupt("a stream entry has no id".to_owned()))?;
                Ok(Some(String::from_utf8_lossy(id).into_owned()))
            },
        )
        .await
    }

    /// One command on a pooled lean connection, errors mapped as reads map them.
    async fn lean<T>(
        &self,
        key: &str,
        args: &[&[u8]],
        walk: impl FnOnce(Frame<'_>) -> Result<T>,
    ) -> Result<T> {
        self.inner
            .reader
            .request(key, args, walk)
            .await
            .map_err(|e| self.map_lean(e, key))
    }

    fn map_lean(&self, e: Error, key: &str) -> Error {
        match e.into_redis() {
            Ok(e) => self.map_err(e, key),
            Err(e) => e,
        }
    }

    fn spawn_follower(&self, mut follower: Follower) -> Subscription {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        follower.tx = Some(tx);
        let position = follower.last.clone();
        Subscription {
            rx,
            task: tokio::spawn(follower.run()),
            current: None,
            position,
            done: false,
        }
    }
}

/// How the catch-up phase reads.
enum CatchUp {
    /// An aggregate: its [`History`] after the start.
    History(Box<History>),
    /// A category partition: `XRANGE` pages after the last position.
    Category,
    /// Nothing to catch up on ([`SubscribeOptions::from_end`]).
    Done,
}

/// The subscription's task.
struct Follower {
    store: EventStore,
    key: String,
    /// Type and id, for an aggregate stream.
    aggregate: Option<(String, String)>,
    /// Position of the last entry delivered (sent to the channel); `None`: none yet,
    /// from the beginning.
    last: Option<String>,
    /// Aggregate streams: the revision the next entry has if it carries none.
    next_revision: u64,
    page_size: usize,
    block: Duration,
    give_up_after: Option<Duration>,
    catch_up: CatchUp,
    tx: Option<mpsc::Sender<Item>>,
}

/// Why the task stops.
enum Stop {
    /// The subscription was dropped.
    Closed,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// A run of failed attempts to reach Redis.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    delay: Option<Duration>,
}

impl Outage {
    fn over(&mut self) {
        *self = Outage::default();
    }

    /// Waits before the next attempt, or gives up with `e`.
    async fn wait(&mut self, e: Error, give_up_after: Option<Duration>) -> Result<(), Stop> {
        if !is_transient(&e) {
            return Err(Stop::Failed(e));
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if give_up_after.is_some_and(|limit| since.elapsed() >= limit) {
            return Err(Stop::Failed(e));
        }
        let delay = self
            .delay
            .map_or(FIRST_RETRY_DELAY, |d| (d * 2).min(MAX_RETRY_DELAY));
        self.delay = Some(delay);
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Worth another try: Redis unreachable or slow, or answering that it will be back
/// (loading its data after a restart, a replica without its master).
fn is_transient(e: &Error) -> bool {
    if e.is_unavailable() {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<redis::RedisError>())
        .and_then(|r| r.code())
        .is_some_and(|code| matches!(code, "LOADING" | "MASTERDOWN" | "TRYAGAIN"))
}

impl Follower {
    async fn run(mut self) {
        if let Err(Stop::Failed(e)) = self.follow().await
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(Item::Failed(e)).await;
        }
    }

    async fn follow(&mut self) -> Result<(), Stop> {
        let mut outage = Outage::default();
        loop {
            let page = match &mut self.catch_up {
                CatchUp::Done => break,
                CatchUp::History(history) => match history.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(e) => {
                        // The history's cursor stays where it was: ask again.
                        outage.wait(e, self.give_up_after).await?;
                        continue;
                    }
                },
                CatchUp::Category => match self.read_category_page().await {
                    Ok(page) => {
                        if page.len() < self.page_size {
                            self.catch_up = CatchUp::Done;
                        }
                        page
                    }
                    Err(e) => {
                        outage.wait(e, self.give_up_after).await?;
                        continue;
                    }
                },
            };
            outage.over();
            self.deliver(page).await?;
        }
        self.send(Item::CaughtUp).await?;

        let mut conn: Option<Dedicated> = None;
        loop {
            if conn.is_none() {
                match self.store.inner.reader.dedicated(&self.key).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        let e = self.store.map_lean(e, &self.key);
                        outage.wait(e, self.give_up_after).await?;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected just above");
            match self.xread(c).await {
                Ok(page) => {
                    outage.over();
                    self.deliver(page).await?;
                }
                Err(e) => {
                    conn = None; // its replies may be out of step now
                    outage.wait(e, self.give_up_after).await?;
                }
            }
        }
    }

    /// Sends a page on and moves the position past it.
    async fn deliver(&mut self, page: Page) -> Result<(), Stop> {
        let Some(last) = page.last() else {
            return Ok(());
        };
        self.last = Some(last.position.to_owned());
        if self.aggregate.is_some() {
            self.next_revision = last.revision.saturating_add(1);
        }
        self.send(Item::Page(page)).await
    }

    async fn send(&self, item: Item) -> Result<(), Stop> {
        match &self.tx {
            Some(tx) => tx.send(item).await.map_err(|_| Stop::Closed),
            None => Err(Stop::Closed),
        }
    }

    /// `XRANGE (last + COUNT page_size` on the category stream.
    async fn read_category_page(&self) -> Result<Page> {
        let start = self
            .last
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| format!("({p}"));
        let key = &self.key;
        self.store
            .xrange(key, &start, "+", self.page_size, |reply| {
                decode_page(reply, key, None)
            })
            .await
    }

    /// `XREAD COUNT n BLOCK ms STREAMS key last` on the subscription's connection: the
    /// next entries after the last delivered one, or an empty page when none came
    /// within the block timeout.
    async fn xread(&mut self, conn: &mut Dedicated) -> Result<Page> {
        let key = self.key.as_str();
        let after = self.last.as_deref().unwrap_or("0-0");
        let count = self.page_size.to_string();
        let block = self.block.as_millis().max(1).to_string();
        let args: [&[u8]; 8] = [
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            key.as_bytes(),
            after.as_bytes(),
        ];
        // The block, then as long as any other reply may take.
        let timeout = self.block + self.store.config().response_timeout;
        let aggregate = self.aggregate.as_ref();
        let next_revision = &mut self.next_revision;
        conn.request(&args, timeout, |mut reply| {
            let corrupt = |reason: String| Error::corrupt(key, reason);
            // A nil reply: the block timed out with nothing new.
            match reply.array().map_err(corrupt)? {
                None | Some(0) => return Ok(Page::default()),
                Some(1) => {}
                Some(n) => return Err(corrupt(format!("XREAD answered for {n} streams"))),
            }
            if reply.array().map_err(corrupt)? != Some(2) {
                return Err(corrupt("an XREAD stream is not [key, entries]".to_owned()));
            }
            reply.bulk().map_err(corrupt)?;
            let defaults = aggregate.map(|(t, i)| ((t.as_str(), i.as_str()), next_revision));
            decode_page(reply, key, defaults)
        })
        .await
        .map_err(|e| self.store.map_lean(e, key))
    }
}
