//! Projections: fold whole categories into a read model of JSON documents.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Event, ProjectionError, Rejection};

/// A projection: folds the events of every aggregate of its source types into a read
/// model, JSON documents under keys, that it reads and writes through a
/// [`ReadModel`].
///
/// It keeps **no state** between events of different batches: the host may run any
/// batch on a new instance, run a batch again after a failure, or rebuild the read
/// model from the first event. Everything it knows is in the read model.
///
/// Implement it on a unit struct and export it with
/// [`export_projection!`](crate::export_projection):
///
/// ```
/// use streamfold_guest::{Projection, ProjectionEvent, ReadModel, Rejection};
///
/// /// Counts the events of each `user`.
/// struct Activity;
///
/// impl Projection for Activity {
///     const SOURCES: &'static [&'static str] = &["user"];
///     const HANDLES: &'static [&'static str] = &[];
///
///     fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
///         let key = format!("activity/{}", event.aggregate_id());
///         let seen: u64 = model.get_json(&key)?.unwrap_or(0);
///         model.put_json(&key, &(seen + 1))
///     }
/// }
///
/// streamfold_guest::export_projection!(Activity);
/// ```
pub trait Projection: 'static {
    /// The aggregate types whose categories it reads, e.g. `&["user"]`. At least one.
    const SOURCES: &'static [&'static str];

    /// The event types it handles, e.g. `&["UserCreated", "EmailChanged"]`. The host
    /// skips every other type. Empty means every type.
    const HANDLES: &'static [&'static str];

    /// Folds one event into the read model.
    ///
    /// Called in category order for every event of a source type whose type is in
    /// [`HANDLES`](Self::HANDLES). Return a [`Rejection`] to refuse the event: the
    /// host then writes nothing of its batch, so there is no need to undo the writes
    /// made before the refusal.
    fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection>;
}

/// One event of a category, as a projection sees it: an [`Event`] (its type,
/// payload, revision, timestamp; reached through `Deref`) plus the aggregate it
/// belongs to and its position in the category.
///
/// In native unit tests, build one with [`Event::in_category`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionEvent {
    aggregate_type: String,
    aggregate_id: String,
    position: String,
    event: Event,
}

impl Event {
    /// This event as a projection sees it: of the aggregate `aggregate_type`
    /// `aggregate_id`, at `position` in its category (a Redis stream id such as
    /// `1733560000000-0`). The host builds the events a projection sees; this is for
    /// tests.
    pub fn in_category(
        self,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        position: impl Into<String>,
    ) -> ProjectionEvent {
        ProjectionEvent {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            position: position.into(),
            event: self,
        }
    }
}

impl ProjectionEvent {
    /// The type of the aggregate the event belongs to, e.g. `user`: one of
    /// [`Projection::SOURCES`].
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The id of the aggregate the event belongs to, e.g. `42`.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The event's position in its category: the Redis stream entry id, e.g.
    /// `1733560000000-0`.
    pub fn position(&self) -> &str {
        &self.position
    }

    /// The event itself (also reached through `Deref`).
    pub fn event(&self) -> &Event {
        &self.event
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_wit(e: crate::__rt::projection::WitEvent) -> Self {
        Event::new(e.revision, e.event_type, e.data)
            .with_timestamp(e.timestamp)
            .with_schema_version(e.schema_version)
            .in_category(e.aggregate_type, e.aggregate_id, e.position)
    }
}

impl Deref for ProjectionEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

/// The read model a [`Projection`] folds into: JSON documents under keys.
///
/// In a component every call goes to the host, which buffers the batch's writes: a
/// [`get`](Self::get) sees the writes made earlier in the same batch, and the host
/// commits them all when the batch succeeds. The host bounds what one batch may do
/// (key length, document size, number of writes and reads, bytes written; see
/// `wit/projection/projection.wit`); a call that breaks a bound, or a `put` of text
/// that is not JSON, stops the batch.
///
/// In native unit tests it is a [`MemoryReadModel`]'s, with the same batch semantics.
pub struct ReadModel<'a> {
    backend: Backend<'a>,
}

enum Backend<'a> {
    /// The host's `read-model` interface.
    #[cfg(target_arch = "wasm32")]
    Host,
    /// A [`MemoryReadModel`]'s documents and the writes of the batch so far.
    Memory {
        documents: &'a BTreeMap<String, String>,
        writes: &'a mut BTreeMap<String, Option<String>>,
    },
}

impl ReadModel<'_> {
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host() -> ReadModel<'static> {
        ReadModel {
            backend: Backend::Host,
        }
    }

    /// The document under `key` (JSON text), or `None` when there is none.
    pub fn get(&self, key: &str) -> Option<String> {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::__rt::projection::read_model::get(key),
            Backend::Memory { documents, writes } => match writes.get(key) {
                Some(written) => written.clone(),
                None => documents.get(key).cloned(),
            },
        }
    }

    /// The document under `key`, deserialized into `T`, or `None` when there is none.
    /// A document that does not deserialize is an
    /// [`invalid_document`](Rejection::invalid_document) rejection naming the key.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Rejection> {
        self.get(key)
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|err| Rejection::invalid_document(format!("{key}: {err}")))
            })
            .transpose()
    }

    /// Stores `document` (JSON text) under `key`, replacing what was there.
    pub fn put(&mut self, key: &str, document: &str) {
        match &mut self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::__rt::projection::read_model::put(key, document),
            Backend::Memory { writes, .. } => {
                writes.insert(key.to_owned(), Some(document.to_owned()));
            }
        }
    }

    /// Stores `value`, serialized as JSON, under `key`. A value serde cannot
    /// serialize (a map with non-string keys, say) is an
    /// [`invalid_data`](Rejection::invalid_data) rejection.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), Rejection> {
        let text = serde_json::to_string(value)
            .map_err(|err| Rejection::invalid_data(format!("cannot serialize {key}: {err}")))?;
        self.put(key, &text);
        Ok(())
    }

    /// Removes the document under `key`, if there is one.
    pub fn delete(&mut self, key: &str) {
        match &mut self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::__rt::projection::read_model::delete(key),
            Backend::Memory { writes, .. } => {
                writes.insert(key.to_owned(), None);
            }
        }
    }
}

impl fmt::Debug for ReadModel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => f.write_str("ReadModel(host)"),
            Backend::Memory { writes, .. } => f
                .debug_struct("ReadModel")
                .field("writes", writes)
                .finish_non_exhaustive(),
        }
    }
}

/// Folds `events` with `P` into `model`: what the SDK's `apply` export does, and
/// what [`MemoryReadModel::apply`] does natively. Stops at the first rejection,
/// naming that event's index in the batch.
pub(crate) fn fold<P: Projection, E: Borrow<ProjectionEvent>>(
    events: impl IntoIterator<Item = E>,
    model: &mut ReadModel<'_>,
) -> Result<(), ProjectionError> {
    for (index, event) in events.into_iter().enumerate() {
        let event = event.borrow();
        if wants::<P>(event) {
            P::apply(event, model)
                .map_err(|rejection| rejection.at(u32::try_from(index).unwrap_or(u32::MAX)))?;
        }
    }
    Ok(())
}

/// Whether `P` wants `event` (the host already leaves the others out).
fn wants<P: Projection>(event: &ProjectionEvent) -> bool {
    P::SOURCES.contains(&event.aggregate_type())
        && (P::HANDLES.is_empty() || P::HANDLES.contains(&event.event_type()))
}

/// A read model in memory, driven the way the host drives a projection: for native
/// unit tests.
///
/// [`apply`](Self::apply) runs one batch: its writes are visible to later reads in
/// the batch, and are kept only if the whole batch succeeds.
///
/// ```
/// # use streamfold_guest::{Event, MemoryReadModel, Projection, ProjectionEvent, ReadModel, Rejection};
/// # struct Activity;
/// # impl Projection for Activity {
/// #     const SOURCES: &'static [&'static str] = &["user"];
/// #     const HANDLES: &'static [&'static str] = &["Seen"];
/// #     fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
/// #         let key = format!("activity/{}", event.aggregate_id());
/// #         let seen: u64 = model.get_json(&key)?.unwrap_or(0);
/// #         let step: u64 = event.data()?;
/// #         model.put_json(&key, &(seen + step))
/// #     }
/// # }
/// let mut model = MemoryReadModel::new();
/// model.apply::<Activity>([
///     Event::new(1, "Seen", "1").in_category("user", "7", "1-0"),
///     Event::new(2, "Seen", "2").in_category("user", "7", "2-0"),
/// ])?;
/// assert_eq!(model.get("activity/7"), Some("3"));
///
/// let err = model
///     .apply::<Activity>([
///         Event::new(3, "Seen", "1").in_category("user", "7", "3-0"),
///         Event::new(4, "Seen", "\"x\"").in_category("user", "7", "4-0"),
///     ])
///     .unwrap_err();
/// assert_eq!(err.event_index, Some(1));
/// assert_eq!(model.get("activity/7"), Some("3")); // nothing of the failed batch
/// # Ok::<(), streamfold_guest::ProjectionError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryReadModel {
    documents: BTreeMap<String, String>,
}

impl MemoryReadModel {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one batch of events with the projection `P`. On success the batch's
    /// writes are kept; on a rejection none are, and the error names the event's
    /// index in the batch. Events of other source types or event types are skipped.
    pub fn apply<P: Projection>(
        &mut self,
        events: impl IntoIterator<Item = impl Borrow<ProjectionEvent>>,
    ) -> Result<(), ProjectionError> {
        let mut writes = BTreeMap::new();
        let mut model = ReadModel {
            backend: Backend::Memory {
                documents: &self.documents,
                writes: &mut writes,
            },
        };
        fold::<P, _>(events, &mut model)?;
        for (key, write) in writes {
            match write {
                Some(document) => self.documents.insert(key, document),
                None => self.documents.remove(&key),
            };
        }
        Ok(())
    }

    /// The document under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.documents.get(key).map(String::as_str)
    }

    /// The document under `key`, parsed (`None` also when it is not JSON).
    pub fn get_value(&self, key: &str) -> Option<serde_json::Value> {
        self.get(key)
            .and_then(|text| serde_json::from_str(text).ok())
    }

    /// Stores `document` under `key`, as if an earlier batch had written it.
    pub fn insert(&mut self, key: impl Into<String>, document: impl Into<String>) {
        self.documents.insert(key.into(), document.into());
    }

    /// Every document, in key order.
    pub fn documents(&self) -> &BTreeMap<String, String> {
        &self.documents
    }
}
