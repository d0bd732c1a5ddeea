//! The state cache: the latest state a replay of each aggregate produced, per
//! reducer, kept in memory so that the next read of that aggregate folds only what
//! was appended since (usually nothing).
//!
//! A held state is never trusted on its own: every read that starts from one reads
//! the aggregate's stream from the held state's last entry, inclusive, in the same
//! single request that brings what follows it, and uses the state only if that entry
//! is still there, at the same revision, with the same event id. A stream recreated
//! since (a flushed database), or an event lost to a failover, makes the held state
//! stale, and the read replays as if it had none. So the cache costs no round trip,
//! it saves the snapshot lookup, and a hit costs no reducer call at all.
//!
//! Bounded by bytes ([`RuntimeConfig::state_cache_bytes`](crate::RuntimeConfig)),
//! with quick_cache's S3-FIFO eviction: a scan of many aggregates read once does not
//! push out the ones read often.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// An aggregate's state as one reducer folds it, up to one entry of its stream.
#[derive(Debug)]
pub(crate) struct Held {
    /// The state, as the reducer serialized it.
    pub(crate) state: String,
    /// The revision, stream position and event id of the last event it includes.
    pub(crate) revision: u64,
    pub(crate) position: String,
    pub(crate) event_id: String,
    /// The revision of the newest snapshot stored for it that this runtime knows of
    /// (the one the replay started from, or saved): when to save the next.
    pub(crate) stored_snapshot: Option<u64>,
}

/// The aggregate type, the aggregate id and the reducer's digest.
type Key = (String, String, String);

/// Bytes an entry counts for beyond its texts.
const ENTRY_OVERHEAD: u64 = 128;

#[derive(Clone)]
struct Bytes;

impl Weighter<Key, Arc<Held>> for Bytes {
    fn weight(&self, key: &Key, held: &Arc<Held>) -> u64 {
        (key.0.len() + key.1.len() + key.2.len())
            .saturating_add(held.state.len() + held.position.len() + held.event_id.len())
            as u64
            + ENTRY_OVERHEAD
    }
}

/// See the module's documentation. A budget of 0 holds nothing.
pub(crate) struct StateCache {
    cache: Option<Cache<Key, Arc<Held>, Bytes>>,
}

impl StateCache {
    pub(crate) fn new(budget: usize) -> Self {
        // quick_cache sizes its table from an estimate of the entry count; states
        // are usually small.
        let estimate = (budget / 1024).clamp(16, 1 << 20);
        StateCache {
            cache: (budget > 0).then(|| Cache::with_weighter(estimate, budget as u64, Bytes)),
        }
    }

    /// How many states it holds, and their bytes (as counted against the budget).
    pub(crate) fn usage(&self) -> (usize, u64) {
        self.cache
            .as_ref()
            .map_or((0, 0), |c| (c.len(), c.weight()))
    }

    /// Whether it holds anything at all (a budget above 0).
    pub(crate) fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    pub(crate) fn get(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        digest: &str,
    ) -> Option<Arc<Held>> {
        self.cache
            .as_ref()?
            .get(&key(aggregate_type, aggregate_id, digest))
    }

    /// Holds `held`, unless what is held already is newer (two reads finished out of
    /// order). A state larger than the whole budget is not held.
    pub(crate) fn keep(&self, aggregate_type: &str, aggregate_id: &str, digest: &str, held: Held) {
        let Some(cache) = &self.cache else { return };
        let key = key(aggregate_type, aggregate_id, digest);
        if cache.get(&key).is_some_and(|h| h.revision > held.revision) {
            return;
        }
        cache.insert(key, Arc::new(held));
    }

    /// Notes that a snapshot of the held state at `revision` was stored.
    pub(crate) fn snapshot_saved(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        digest: &str,
        revision: u64,
    ) {
        let Some(cache) = &self.cache else { return };
        let key = key(aggregate_type, aggregate_id, digest);
        if let Some(h) = cache.get(&key).filter(|h| h.revision == revision) {
            cache.insert(
                key,
                Arc::new(Held {
                    state: h.state.clone(),
                    revision,
                    position: h.position.clone(),
                    event_id: h.event_id.clone(),
                    stored_snapshot: Some(revision),
                }),
            );
        }
    }

    /// Forgets what is held for the aggregate (it proved stale).
    pub(crate) fn forget(&self, aggregate_type: &str, aggregate_id: &str, digest: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(&key(aggregate_type, aggregate_id, digest));
        }
    }
}

fn key(aggregate_type: &str, aggregate_id: &str, digest: &str) -> Key {
    (
        aggregate_type.to_owned(),
        aggregate_id.to_owned(),
        digest.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(revision: u64, state: &str) -> Held {
        Held {
            state: state.to_owned(),
            revision,
            position: format!("1-{revision}"),
            event_id: format!("e{revision}"),
            stored_snapshot: None,
        }
    }

    #[test]
    fn keeps_the_newest_per_aggregate_and_reducer() {
        let c = StateCache::new(1 << 20);
        c.keep("user", "1", "d1", held(3, "{}"));
        c.keep("user", "1", "d1", held(2, "{\"old\":1}"));
        assert_eq!(c.get("user", "1", "d1").unwrap().revision, 3);
        c.keep("user", "1", "d1", held(4, "{\"n\":4}"));
        assert_eq!(c.get("user", "1", "d1").unwrap().state, "{\"n\":4}");
        assert!(c.get("user", "1", "d2").is_none());
        assert!(c.get("user", "2", "d1").is_none());
        c.forget("user", "1", "d1");
        assert!(c.get("user", "1", "d1").is_none());
    }

    #[test]
    fn stays_within_its_budget() {
        let c = StateCache::new(64 << 10);
        let big = "x".repeat(1000);
        for i in 0..1000 {
            c.keep("user", &i.to_string(), "d", held(1, &big));
        }
        let cache = c.cache.as_ref().unwrap();
        assert!(cache.weight() <= 64 << 10, "{}", cache.weight());
        assert!(cache.len() > 10 && cache.len() < 70, "{}", cache.len());
        // Larger than the whole budget: not held.
        c.keep("user", "huge", "d", held(1, &"x".repeat(70 << 10)));
        assert!(c.get("user", "huge", "d").is_none());
        // Off.
        let off = StateCache::new(0);
        off.keep("user", "1", "d", held(1, "{}"));
        assert!(!off.enabled() && off.get("user", "1", "d").is_none());
    }
}
