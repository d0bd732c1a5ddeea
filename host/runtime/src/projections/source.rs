//! What a projection's batch reads: the committed documents of its version (from
//! the runner's cache, else Redis), and the source events as the sandbox takes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use streamfold_sandbox::{DocumentSource, ProjectionEvent, SourceError};
use streamfold_store::{ProjectionVersion, SourceEvent};

/// The committed documents of one version as its runner knows them: the ones it
/// read or committed under its current lease, within a byte budget.
///
/// Sound because the runner holding the lease is the only writer of the version:
/// every commit is fenced by the lease's token, so a runner whose lease was taken
/// (and whose cache may be stale) can never commit again. A runner makes a new
/// cache whenever it (re)reads its checkpoint: after any error, and under every
/// new lease.
pub(crate) struct DocCache {
    docs: HashMap<String, Option<String>>,
    bytes: usize,
    budget: usize,
    /// Every committed document is in `docs`, so a key missing there has no
    /// document: true from an empty checkpoint (a new version, or one just rebuilt:
    /// the reset drops documents and checkpoint in one step) until a document does
    /// not fit.
    complete: bool,
}

/// Bytes a cached entry counts for beyond its key and document.
const ENTRY_OVERHEAD: usize = 64;

fn entry_bytes(key: &str, doc: Option<&String>) -> usize {
    key.len() + doc.map_or(0, String::len) + ENTRY_OVERHEAD
}

impl DocCache {
    /// An empty cache of `budget` bytes; `empty_model`: the version has no
    /// documents (its checkpoint is empty).
    pub(crate) fn new(budget: usize, empty_model: bool) -> Self {
        DocCache {
            docs: HashMap::new(),
            bytes: 0,
            budget,
            complete: empty_model && budget > 0,
        }
    }

    /// The committed document under `key`, when known without reading Redis.
    fn known(&self, key: &str) -> Option<Option<String>> {
        match self.docs.get(key) {
            Some(doc) => Some(doc.clone()),
            None if self.complete => Some(None),
            None => None,
        }
    }

    /// Keeps `doc` as the committed document under `key` if it fits (a new key
    /// that does not fit is left out; the cache is then no longer complete if it
    /// has a document).
    fn keep(&mut self, key: &str, doc: Option<String>) {
        let old = self
            .docs
            .get(key)
            .map_or(0, |d| entry_bytes(key, d.as_ref()));
        let new = entry_bytes(key, doc.as_ref());
        if self.bytes - old + new <= self.budget {
            self.bytes = self.bytes - old + new;
            self.docs.insert(key.to_owned(), doc);
            return;
        }
        if self.docs.remove(key).is_some() {
            self.bytes -= old;
        }
        if doc.is_some() {
            self.complete = false;
        }
    }

    /// Records a batch's writes (key, document or deletion, in order) once committed.
    pub(crate) fn committed(&mut self, writes: impl IntoIterator<Item = (String, Option<String>)>) {
        for (key, doc) in writes {
            self.keep(&key, doc);
        }
    }
}

/// The committed read model of one version, as the batch asks for documents: from
/// the runner's [`DocCache`], else one `HGET` each. The batch runs on a blocking
/// thread, which waits here on the async runtime it came from. The batch's own
/// writes are answered by the sandbox first, so what this returns is the state at
/// the version's checkpoint.
pub(crate) struct StoreDocs {
    pub(crate) version: ProjectionVersion,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) cache: Arc<Mutex<DocCache>>,
}

impl DocumentSource for StoreDocs {
    fn get(&self, key: &str) -> Result<Option<String>, SourceError> {
        if let Some(doc) = self.cache.lock().expect("cache lock").known(key) {
            return Ok(doc);
        }
        let doc = self
            .handle
            .block_on(self.version.get(key))
            .map_err(|e| Box::new(e) as SourceError)?;
        self.cache
            .lock()
            .expect("cache lock")
            .keep(key, doc.clone());
        Ok(doc)
    }
}

/// A source event as the sandbox borrows it.
pub(crate) fn view(e: &SourceEvent) -> ProjectionEvent<'_> {
    let ev = &e.event;
    ProjectionEvent {
        aggregate_type: &ev.aggregate_type,
        aggregate_id: &ev.aggregate_id,
        revision: ev.revision,
        position: &ev.position,
        event_id: &ev.event_id,
        event_type: &ev.event_type,
        data: &ev.data,
        timestamp: &ev.timestamp,
        version: &ev.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, d)| (k.to_string(), d.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn a_complete_cache_answers_misses_until_a_document_does_not_fit() {
        let mut c = DocCache::new(3 * (ENTRY_OVERHEAD + 2), true);
        assert_eq!(c.known("a"), Some(None), "empty model: nothing there");
        c.committed(writes(&[("a", Some("1")), ("b", None)]));
        assert_eq!(c.known("a"), Some(Some("1".into())));
        assert_eq!(c.known("b"), Some(None));
        c.committed(writes(&[("c", Some("3")), ("d", Some("4"))]));
        // "d" did not fit: no longer complete, and "d" is not claimed absent.
        assert_eq!(c.known("d"), None);
        assert_eq!(c.known("zzz"), None);
        assert_eq!(c.known("c"), Some(Some("3".into())));
        // A document that grows beyond the budget leaves the cache.
        c.committed(writes(&[("a", Some(&"x".repeat(500)))]));
        assert_eq!(c.known("a"), None);
        assert!(c.bytes <= c.budget);
    }

    #[test]
    fn an_incomplete_cache_reads_misses_and_keeps_what_it_read() {
        let mut c = DocCache::new(1 << 20, false);
        assert_eq!(c.known("a"), None);
        c.keep("a", None);
        assert_eq!(c.known("a"), Some(None), "read as absent");
        let mut off = DocCache::new(0, true);
        assert_eq!(off.known("a"), None, "budget 0: off");
        off.keep("a", Some("1".into()));
        assert_eq!(off.known("a"), None);
    }
}
