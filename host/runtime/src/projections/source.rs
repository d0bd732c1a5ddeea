//! What a projection's batch reads: the committed documents of its version in
//! Redis, and the source events as the sandbox takes them.

use streamfold_sandbox::{DocumentSource, ProjectionEvent, SourceError};
use streamfold_store::{ProjectionVersion, SourceEvent};

/// The committed read model of one version, read key by key as the batch asks
/// (one `HGET` each). The batch runs on a blocking thread, which waits here on the
/// async runtime it came from. The batch's own writes are answered by the sandbox
/// first, so what this returns is the state at the version's checkpoint: the one
/// runner holding the lease is the only writer.
pub(crate) struct StoreDocs {
    pub(crate) version: ProjectionVersion,
    pub(crate) handle: tokio::runtime::Handle,
}

impl DocumentSource for StoreDocs {
    fn get(&self, key: &str) -> Result<Option<String>, SourceError> {
        self.handle
            .block_on(self.version.get(key))
            .map_err(|e| Box::new(e) as SourceError)
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
