//! Wake-ups for the long poll of durable subscriptions ([`EventStore::fetch_wait`]).
//!
//! A fetch that finds nothing waits for one of its type's category partitions to
//! change instead of asking again and again. One watcher per partition (a task with a
//! connection of its own, blocked in `XREAD BLOCK` after the partition's newest entry)
//! serves every waiting fetch of this process, whatever the group. It bumps a
//! [`watch`] counter when an entry arrives, and stops about a second after the last
//! waiting fetch is gone. Settling deliveries in this process bumps the counter too,
//! since an acknowledged batch frees its partition for the next one.
//!
//! What a watcher cannot see (another host's acks, the ack timeout passing, a retry's
//! delay) the long poll still finds by asking again now and then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::EventStore;
use crate::error::{Error, Result};
use crate::wire::Dedicated;

/// How long one `XREAD` blocks: also how long an unwatched watcher lives on.
const BLOCK: Duration = Duration::from_secs(1);

/// Pause after a failed read before the watcher connects again.
const RETRY: Duration = Duration::from_millis(250);

/// The watchers of this process, by category partition key.
#[derive(Debug, Default)]
pub(crate) struct Wakers(Mutex<HashMap<String, watch::Sender<u64>>>);

impl EventStore {
    /// A receiver that changes when category partition `key` gets new entries or
    /// this process settles deliveries on it. Starts the partition's watcher if none
    /// runs.
    pub(crate) fn watch_partition(&self, key: &str) -> watch::Receiver<u64> {
        let mut map = self.inner.wakers.0.lock().expect("wakers poisoned");
        if let Some(tx) = map.get(key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        map.insert(key.to_owned(), tx.clone());
        tokio::spawn(self.clone().watch(key.to_owned(), tx));
        rx
    }

    /// Wakes the fetches waiting on category partition `key` (in this process).
    pub(crate) fn wake_partition(&self, key: &str) {
        let map = self.inner.wakers.0.lock().expect("wakers poisoned");
        if let Some(tx) = map.get(key) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The watcher of one partition: runs until nobody waits on it.
    async fn watch(self, key: String, tx: watch::Sender<u64>) {
        let mut conn: Option<Dedicated> = None;
        let mut last: Option<String> = None;
        loop {
            {
                let mut map = self.inner.wakers.0.lock().expect("wakers poisoned");
                if tx.receiver_count() == 0 {
                    if map.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                        map.remove(&key);
                    }
                    return;
                }
            }
            let step = async {
                if conn.is_none() {
                    conn = Some(self.inner.reader.dedicated(&key).await?);
                }
                let c = conn.as_mut().expect("connected just above");
                let after = match &last {
                    Some(id) => id.clone(),
                    None => newest_id(c, &key, self.config().response_timeout).await?,
                };
                last = Some(after.clone());
                let timeout = BLOCK + self.config().response_timeout;
                if xread_one(c, &key, &after, timeout).await? {
                    // Past everything there now, before waking anyone: a fetch that
                    // wakes finds all of it, and whatever comes later wakes it again.
                    last = Some(newest_id(c, &key, self.config().response_timeout).await?);
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok::<(), Error>(())
            };
            if step.await.is_err() {
                // The waiting fetches poll meanwhile; a new connection starts afresh.
                conn = None;
                last = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The id of the newest entry of stream `key` (`0-0` when it is empty or missing).
async fn newest_id(conn: &mut Dedicated, key: &str, timeout: Duration) -> Result<String> {
    let args: [&[u8]; 6] = [b"XREVRANGE", key.as_bytes(), b"+", b"-", b"COUNT", b"1"];
    conn.request(&args, timeout, |mut reply| {
        let corrupt = |reason: String| Error::corrupt(key, reason);
        match reply.array().map_err(corrupt)? {
            None | Some(0) => return Ok("0-0".to_owned()),
            Some(_) => {}
        }
        reply.array().map_err(corrupt)?;
        let id = reply.bulk().map_err(corrupt)?.unwrap_or(b"0-0");
        Ok(String::from_utf8_lossy(id).into_owned())
    })
    .await
}

/// `XREAD COUNT 1 BLOCK … STREAMS key after`: whether an entry came.
async fn xread_one(
    conn: &mut Dedicated,
    key: &str,
    after: &str,
    timeout: Duration,
) -> Result<bool> {
    let block = BLOCK.as_millis().to_string();
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
    conn.request(&args, timeout, |mut reply| {
        let n = reply.array().map_err(|e| Error::corrupt(key, e))?;
        Ok(matches!(n, Some(n) if n > 0))
    })
    .await
}

/// Wakes a reader when any partition of a type's category gets new entries: see
/// [`EventStore::watch_category`].
#[derive(Debug)]
pub struct CategoryWatch {
    watches: Vec<watch::Receiver<u64>>,
}

impl CategoryWatch {
    /// Marks everything so far as seen. Call it before reading, then
    /// [`changed`](Self::changed) after a read that found nothing: an entry appended
    /// in between still wakes it.
    pub fn mark_seen(&mut self) {
        for w in &mut self.watches {
            w.borrow_and_update();
        }
    }

    /// Waits until a partition got a new entry since [`mark_seen`](Self::mark_seen)
    /// (or acks in this process freed one), or `timeout` passes; says which.
    pub async fn changed(&mut self, timeout: Duration) -> bool {
        let any =
            futures::future::select_all(self.watches.iter_mut().map(|w| Box::pin(w.changed())));
        matches!(tokio::time::timeout(timeout, any).await, Ok((Ok(()), _, _)))
    }
}

impl EventStore {
    /// A [`CategoryWatch`] on every partition of `aggregate_type`: one shared watcher
    /// per partition in this process (a connection blocked in `XREAD`), whatever the
    /// number of readers. For readers that follow the category at their own
    /// positions (projections, long polls) without a blocked connection each.
    pub fn watch_category(&self, aggregate_type: &str) -> Result<CategoryWatch> {
        let mut watches = Vec::new();
        for p in 0..self.config().partitions_of(aggregate_type) {
            watches.push(self.watch_partition(&self.category_key(aggregate_type, p)?));
        }
        Ok(CategoryWatch { watches })
    }
}
