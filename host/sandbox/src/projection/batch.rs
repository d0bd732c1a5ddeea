//! The host side of one projection batch: the `read-model` calls, checked against
//! [`ReadModelLimits`] and buffered, and the projection's `log`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{HostState, Limits, ReadModelLimits};
use crate::text;

use super::bindings::{Level, LogHost, ReadModelHost, TypesHost};
use super::{BatchWrites, DocumentSource, SourceError};

/// Why the host stopped a batch (the guest's call then traps).
pub(crate) enum Stop {
    /// A bound of [`ReadModelLimits`] was broken.
    Limit(String),
    /// A call the contract forbids (a document that is not JSON, a bad key, a
    /// read-model call outside `apply`).
    Contract(String),
    /// The [`DocumentSource`] failed.
    Source { key: String, error: SourceError },
}

/// The read-model state of one batch.
pub(crate) struct Batch {
    /// `None` outside `apply` (while answering `info`).
    source: Option<Arc<dyn DocumentSource>>,
    limits: ReadModelLimits,
    writes: BTreeMap<String, Option<String>>,
    write_calls: usize,
    reads: usize,
    /// Bytes of `writes`: keys, and documents put.
    bytes: usize,
    pub(crate) stop: Option<Stop>,
}

fn entry_bytes(key: &str, document: Option<&String>) -> usize {
    key.len() + document.map_or(0, String::len)
}

impl Batch {
    pub(crate) fn new(limits: &Limits, source: Arc<dyn DocumentSource>) -> Self {
        Batch {
            source: Some(source),
            ..Self::outside_apply(limits)
        }
    }

    /// A batch in which every read-model call is refused.
    pub(crate) fn outside_apply(limits: &Limits) -> Self {
        Batch {
            source: None,
            limits: limits.read_model.clone(),
            writes: BTreeMap::new(),
            write_calls: 0,
            reads: 0,
            bytes: 0,
            stop: None,
        }
    }

    /// The final write set, after `events_applied` events.
    pub(crate) fn finish(self, events_applied: usize) -> BatchWrites {
        BatchWrites {
            writes: self.writes,
            events_applied,
            write_calls: self.write_calls,
            reads: self.reads,
            bytes: self.bytes,
        }
    }

    /// Records why the batch stops and returns the error that traps the guest.
    fn stop(&mut self, why: Stop) -> wasmtime::Error {
        self.stop = Some(why);
        wasmtime::Error::msg("the host stopped the batch")
    }

    /// Checks a key, and that the read model may be used at all.
    fn check_key(&mut self, call: &str, key: &str) -> wasmtime::Result<()> {
        if self.source.is_none() {
            return Err(self.stop(Stop::Contract(format!(
                "called read-model.{call} outside apply"
            ))));
        }
        let max = self.limits.key_bytes;
        if key.len() > max {
            return Err(self.stop(Stop::Limit(format!(
                "{call} of a key of {} bytes ({}); the limit is {max} bytes",
                key.len(),
                quoted(key)
            ))));
        }
        if key.is_empty() || text::has_controls(key) {
            return Err(self.stop(Stop::Contract(format!(
                "{call} of the key {}: a key must be non-empty, without control characters",
                quoted(key)
            ))));
        }
        Ok(())
    }

    /// Counts one `put` or `delete`.
    fn count_write(&mut self, call: &str, key: &str) -> wasmtime::Result<()> {
        self.write_calls += 1;
        let max = self.limits.writes_per_batch;
        if self.write_calls > max {
            return Err(self.stop(Stop::Limit(format!(
                "{call} of {} is write {} of the batch; the limit is {max} writes per batch",
                quoted(key),
                self.write_calls
            ))));
        }
        Ok(())
    }

    /// Buffers a write, keeping the write set's bytes within the bound.
    fn write(&mut self, call: &str, key: String, document: Option<String>) -> wasmtime::Result<()> {
        let old = self
            .writes
            .get(&key)
            .map_or(0, |d| entry_bytes(&key, d.as_ref()));
        let bytes = self.bytes - old + entry_bytes(&key, document.as_ref());
        let max = self.limits.write_bytes_per_batch;
        if bytes > max {
            return Err(self.stop(Stop::Limit(format!(
                "{call} of {} brings the batch's writes to {bytes} bytes; the limit is {max} bytes per batch",
                quoted(&key)
            ))));
        }
        self.bytes = bytes;
        self.writes.insert(key, document);
        Ok(())
    }
}

fn quoted(key: &str) -> String {
    format!("\"{}\"", text::shown(key, 128))
}

impl ReadModelHost for HostState<Batch> {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let batch = &mut self.extra;
        batch.check_key("get", &key)?;
        batch.reads += 1;
        let max = batch.limits.reads_per_batch;
        if batch.reads > max {
            let message = format!(
                "get of {} is read {} of the batch; the limit is {max} reads per batch",
                quoted(&key),
                batch.reads
            );
            return Err(batch.stop(Stop::Limit(message)));
        }
        if let Some(written) = batch.writes.get(&key) {
            return Ok(written.clone());
        }
        let source = batch.source.clone().expect("checked by check_key");
        match source.get(&key) {
            Ok(document) => Ok(document),
            Err(error) => Err(batch.stop(Stop::Source { key, error })),
        }
    }

    fn put(&mut self, key: String, document: String) -> wasmtime::Result<()> {
        let batch = &mut self.extra;
        batch.check_key("put", &key)?;
        batch.count_write("put", &key)?;
        let max = batch.limits.document_bytes;
        if document.len() > max {
            let message = format!(
                "put of {} with a document of {} bytes; the limit is {max} bytes",
                quoted(&key),
                document.len()
            );
            return Err(batch.stop(Stop::Limit(message)));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&document) {
            let message = format!(
                "put of {} with a document that is not JSON ({e}): {}",
                quoted(&key),
                text::shown(&document, 256)
            );
            return Err(batch.stop(Stop::Contract(message)));
        }
        batch.write("put", key, Some(document))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let batch = &mut self.extra;
        batch.check_key("delete", &key)?;
        batch.count_write("delete", &key)?;
        batch.write("delete", key, None)
    }
}

impl LogHost for HostState<Batch> {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let log = self.log_mut();
        let Some(message) = log.admit(&message) else {
            return Ok(());
        };
        let (plugin, batch) = (log.plugin.as_str(), log.aggregate.as_str());
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "streamfold::projection", $level, plugin, batch, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
        Ok(())
    }
}

// The `types` interface holds only types; its (empty) host trait still needs an impl.
impl TypesHost for HostState<Batch> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Clock, LogContext};

    fn state(limits: ReadModelLimits, committed: &[(&str, &str)]) -> HostState<Batch> {
        let source: BTreeMap<String, String> = committed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let limits = Limits::default().read_model(limits);
        let log = LogContext {
            plugin: "p".into(),
            aggregate: "-".into(),
            max_bytes: 100,
            lines_left: 1,
            dropped: 0,
        };
        HostState::new(
            &limits,
            log,
            Clock::unstarted(),
            Batch::new(&limits, Arc::new(source)),
        )
    }

    fn stop_message(s: &mut HostState<Batch>) -> String {
        match s.extra.stop.take() {
            Some(Stop::Limit(m)) => format!("limit: {m}"),
            Some(Stop::Contract(m)) => format!("contract: {m}"),
            Some(Stop::Source { key, .. }) => format!("source: {key}"),
            None => "none".into(),
        }
    }

    #[test]
    fn reads_see_writes_first_and_bytes_count_the_final_set() {
        let mut s = state(ReadModelLimits::default(), &[("a", "1"), ("b", "2")]);
        assert_eq!(s.get("a".into()).unwrap().as_deref(), Some("1"));
        s.put("a".into(), "[10]".into()).unwrap();
        assert_eq!(s.get("a".into()).unwrap().as_deref(), Some("[10]"));
        s.put("a".into(), "7".into()).unwrap(); // last write wins
        s.delete("b".into()).unwrap();
        assert_eq!(s.get("b".into()).unwrap(), None, "deleted in this batch");
        assert_eq!(s.get("c".into()).unwrap(), None);
        let w = std::mem::replace(&mut s.extra, Batch::outside_apply(&Limits::default())).finish(3);
        assert_eq!(
            w.writes,
            BTreeMap::from([("a".into(), Some("7".into())), ("b".into(), None)])
        );
        assert_eq!((w.write_calls, w.reads, w.bytes), (3, 4, 2 + 1));
    }

    #[test]
    fn each_bound_stops_the_batch_and_says_which() {
        let limits = ReadModelLimits::default()
            .key_bytes(4)
            .document_bytes(5)
            .writes_per_batch(3)
            .write_bytes_per_batch(10)
            .reads_per_batch(2);
        let mut s = state(limits.clone(), &[]);
        assert!(s.put("long!".into(), "1".into()).is_err());
        assert!(stop_message(&mut s).contains("a key of 5 bytes"));
        assert!(s.put("k".into(), "123456".into()).is_err());
        assert!(stop_message(&mut s).contains("a document of 6 bytes"));
        assert!(s.put("k".into(), "{x".into()).is_err());
        assert!(
            stop_message(&mut s)
                .starts_with("contract: put of \"k\" with a document that is not JSON")
        );
        assert!(s.put("k\u{1b}".into(), "1".into()).is_err());
        assert!(stop_message(&mut s).contains("\"k\\u{1b}\""));
        assert!(s.get(String::new()).is_err());
        assert!(stop_message(&mut s).starts_with("contract: get of the key \"\""));

        let mut s = state(limits.clone(), &[]);
        s.put("k".into(), "12345".into()).unwrap(); // 6 bytes
        assert!(s.put("j".into(), "12345".into()).is_err()); // 12 > 10
        assert!(stop_message(&mut s).contains("12 bytes; the limit is 10 bytes per batch"));

        let mut s = state(limits.clone(), &[]);
        for _ in 0..3 {
            s.delete("k".into()).unwrap();
        }
        assert!(s.delete("k".into()).is_err());
        assert!(stop_message(&mut s).contains("write 4 of the batch; the limit is 3"));

        let mut s = state(limits, &[]);
        s.get("k".into()).unwrap();
        s.get("k".into()).unwrap();
        assert!(s.get("k".into()).is_err());
        assert!(stop_message(&mut s).contains("read 3 of the batch; the limit is 2"));
    }

    #[test]
    fn the_read_model_is_out_of_reach_outside_apply() {
        let limits = Limits::default();
        let log = LogContext {
            plugin: "p".into(),
            aggregate: "-".into(),
            max_bytes: 100,
            lines_left: 1,
            dropped: 0,
        };
        let mut s = HostState::new(
            &limits,
            log,
            Clock::unstarted(),
            Batch::outside_apply(&limits),
        );
        assert!(s.get("k".into()).is_err());
        assert_eq!(
            stop_message(&mut s),
            "contract: called read-model.get outside apply"
        );
    }
}
