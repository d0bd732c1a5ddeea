//! Projections: fold whole categories into a read model of JSON documents.

use std::any::Any;
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
/// Two ways to use it:
/// - **text and one-off values**: [`get`](Self::get) / [`get_json`](Self::get_json)
///   and [`put`](Self::put) / [`put_json`](Self::put_json) / [`delete`](Self::delete).
///   In a component each call goes to the host, and each `get_json` parses the
///   document anew;
/// - **held documents**: [`view`](Self::view) and [`update`](Self::update) parse a
///   document once per batch and keep it parsed for the rest of the batch; an
///   updated one is serialized and written once, when the batch ends. Use them for
///   documents that many events of a batch touch (a total, a list per group): the
///   work per event is then the change itself, not parsing and printing the whole
///   document.
///
/// Both see each other's writes: a `get` of a document held and updated gives its
/// new text; a `put` or `delete` replaces a held document.
///
/// The host buffers the batch's writes: a read sees the writes made earlier in the
/// same batch, and the host commits them all when the batch succeeds. The host
/// bounds what one batch may do (key length, document size, number of writes and
/// reads, bytes written; see `wit/projection/projection.wit`); a call that breaks a
/// bound, or a `put` of text that is not JSON, stops the batch.
///
/// In native unit tests it is a [`MemoryReadModel`]'s, with the same batch semantics.
pub struct ReadModel<'a> {
    backend: Backend<'a>,
    /// Documents held parsed by `view` and `update`, by key.
    held: BTreeMap<String, Held>,
    /// The index in the batch of the event being applied.
    event: u32,
}

/// A document held parsed: an `Option<T>` (`None`: no document), and, once
/// updated, how to write it and which event last changed it.
struct Held {
    value: Box<dyn Any>,
    dirty: Option<Dirty>,
}

struct Dirty {
    write: fn(&dyn Any) -> serde_json::Result<Option<String>>,
    by: u32,
}

/// Serializes a held `Option<T>`: `None` is a delete.
fn write_held<T: Serialize + 'static>(value: &dyn Any) -> serde_json::Result<Option<String>> {
    let value = value
        .downcast_ref::<Option<T>>()
        .expect("a held document keeps its type");
    value.as_ref().map(serde_json::to_string).transpose()
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

impl Backend<'_> {
    fn get(&self, key: &str) -> Option<String> {
        match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::__rt::projection::read_model::get(key),
            Backend::Memory { documents, writes } => match writes.get(key) {
                Some(written) => written.clone(),
                None => documents.get(key).cloned(),
            },
        }
    }

    fn write(&mut self, key: &str, document: Option<&str>) {
        match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => match document {
                Some(document) => crate::__rt::projection::read_model::put(key, document),
                None => crate::__rt::projection::read_model::delete(key),
            },
            Backend::Memory { writes, .. } => {
                writes.insert(key.to_owned(), document.map(str::to_owned));
            }
        }
    }
}

impl<'a> ReadModel<'a> {
    fn new(backend: Backend<'a>) -> Self {
        ReadModel {
            backend,
            held: BTreeMap::new(),
            event: 0,
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host() -> ReadModel<'static> {
        ReadModel::new(Backend::Host)
    }

    /// The document under `key` (JSON text), or `None` when there is none.
    pub fn get(&self, key: &str) -> Option<String> {
        if let Some(Held {
            value,
            dirty: Some(dirty),
        }) = self.held.get(key)
        {
            // A document that does not serialize fails the batch when it ends.
            if let Ok(text) = (dirty.write)(value.as_ref()) {
                return text;
            }
        }
        self.backend.get(key)
    }

    /// The document under `key`, deserialized into `T`, or `None` when there is none.
    /// A document that does not deserialize is an
    /// [`invalid_document`](Rejection::invalid_document) rejection naming the key.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Rejection> {
        self.get(key).map(|text| parse(key, &text)).transpose()
    }

    /// Stores `document` (JSON text) under `key`, replacing what was there.
    pub fn put(&mut self, key: &str, document: &str) {
        self.held.remove(key);
        self.backend.write(key, Some(document));
    }

    /// Stores `value`, serialized as JSON, under `key`. A value serde cannot
    /// serialize (a map with non-string keys, say) is an
    /// [`invalid_data`](Rejection::invalid_data) rejection.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), Rejection> {
        let text = serde_json::to_string(value).map_err(|err| cannot_serialize(key, &err))?;
        self.put(key, &text);
        Ok(())
    }

    /// Removes the document under `key`, if there is one.
    pub fn delete(&mut self, key: &str) {
        self.held.remove(key);
        self.backend.write(key, None);
    }

    /// Calls `f` with the document under `key` parsed as `T` (`None` when there is
    /// none), and returns what it returns. The document stays parsed for the rest of
    /// the batch: a later `view` or `update` of it as the same `T` parses nothing.
    /// A document that does not deserialize is an
    /// [`invalid_document`](Rejection::invalid_document) rejection naming the key.
    pub fn view<T, R>(&mut self, key: &str, f: impl FnOnce(Option<&T>) -> R) -> Result<R, Rejection>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        let held = self.hold::<T>(key)?;
        Ok(f(held.as_ref()))
    }

    /// Calls `f` with the document under `key` parsed as `T` (`None` when there is
    /// none) to change it in place: set it to `None` to delete the document. Returns
    /// what `f` returns. The document stays parsed for the rest of the batch and is
    /// serialized and written once, when the batch ends: an event that updates a
    /// large document changes it without parsing or printing it.
    ///
    /// A document that does not deserialize is an
    /// [`invalid_document`](Rejection::invalid_document) rejection naming the key; one
    /// that cannot be serialized when the batch ends (a map with non-string keys,
    /// say) is an [`invalid_data`](Rejection::invalid_data) rejection of the event
    /// that last updated it.
    ///
    /// ```
    /// # use streamfold_guest::{ProjectionEvent, ReadModel, Rejection};
    /// # fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
    /// // Counts the events of every aggregate type in one document.
    /// model.update("counts", |counts: &mut Option<std::collections::BTreeMap<String, u64>>| {
    ///     *counts
    ///         .get_or_insert_with(Default::default)
    ///         .entry(event.aggregate_type().to_owned())
    ///         .or_default() += 1;
    /// })
    /// # }
    /// ```
    pub fn update<T, R>(
        &mut self,
        key: &str,
        f: impl FnOnce(&mut Option<T>) -> R,
    ) -> Result<R, Rejection>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        let by = self.event;
        self.hold::<T>(key)?;
        let held = self.held.get_mut(key).expect("held just now");
        held.dirty = Some(Dirty {
            write: write_held::<T>,
            by,
        });
        let value = held
            .value
            .downcast_mut::<Option<T>>()
            .expect("held as T just now");
        Ok(f(value))
    }

    /// The document under `key`, held parsed as `T`: parsed now unless it is held as
    /// `T` already (held as another type, it is written back first).
    fn hold<T>(&mut self, key: &str) -> Result<&mut Option<T>, Rejection>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        let held_as_t = self
            .held
            .get(key)
            .is_some_and(|h| h.value.is::<Option<T>>());
        if !held_as_t {
            self.write_back(key)?;
            let value: Option<T> = self
                .backend
                .get(key)
                .map(|text| parse(key, &text))
                .transpose()?;
            self.held.insert(
                key.to_owned(),
                Held {
                    value: Box::new(value),
                    dirty: None,
                },
            );
        }
        let held = self.held.get_mut(key).expect("held");
        Ok(held.value.downcast_mut().expect("held as T"))
    }

    /// Writes the document held under `key` if it was updated, and lets it go.
    fn write_back(&mut self, key: &str) -> Result<(), Rejection> {
        if let Some(Held {
            value,
            dirty: Some(dirty),
        }) = self.held.remove(key)
        {
            let text = (dirty.write)(value.as_ref()).map_err(|err| cannot_serialize(key, &err))?;
            self.backend.write(key, text.as_deref());
        }
        Ok(())
    }

    /// Ends the batch: writes every updated held document, in key order. A document
    /// that cannot be serialized fails the batch at the event that last updated it.
    fn finish(mut self) -> Result<(), ProjectionError> {
        for (key, held) in std::mem::take(&mut self.held) {
            if let Some(dirty) = held.dirty {
                let text = (dirty.write)(held.value.as_ref())
                    .map_err(|err| cannot_serialize(&key, &err).at(dirty.by))?;
                self.backend.write(&key, text.as_deref());
            }
        }
        Ok(())
    }
}

fn parse<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, Rejection> {
    serde_json::from_str(text).map_err(|err| Rejection::invalid_document(format!("{key}: {err}")))
}

fn cannot_serialize(key: &str, err: &serde_json::Error) -> Rejection {
    Rejection::invalid_data(format!("cannot serialize {key}: {err}"))
}

impl fmt::Debug for ReadModel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: Vec<&String> = self.held.keys().collect();
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => f
                .debug_struct("ReadModel")
                .field("held", &held)
                .finish_non_exhaustive(),
            Backend::Memory { writes, .. } => f
                .debug_struct("ReadModel")
                .field("writes", writes)
                .field("held", &held)
                .finish_non_exhaustive(),
        }
    }
}

/// Folds `events` with `P` into `model`, then writes its held documents: what the
/// SDK's `apply` export does, and what [`MemoryReadModel::apply`] does natively.
/// Stops at the first rejection, naming that event's index in the batch.
pub(crate) fn fold<P: Projection, E: Borrow<ProjectionEvent>>(
    events: impl IntoIterator<Item = E>,
    mut model: ReadModel<'_>,
) -> Result<(), ProjectionError> {
    for (index, event) in events.into_iter().enumerate() {
        let event = event.borrow();
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        model.event = index;
        if wants::<P>(event) {
            P::apply(event, &mut model).map_err(|rejection| rejection.at(index))?;
        }
    }
    model.finish()
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
        let model = ReadModel::new(Backend::Memory {
            documents: &self.documents,
            writes: &mut writes,
        });
        fold::<P, _>(events, model)?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::ErrorKind;

    #[derive(Serialize, Deserialize)]
    struct Count {
        n: u64,
    }

    /// `tally` counts events in a held document; `Poke` events also use the text
    /// calls on it, `Swap` holds it as another type, `Bad` makes it unserializable.
    struct Tally;

    impl Projection for Tally {
        const SOURCES: &'static [&'static str] = &["t"];
        const HANDLES: &'static [&'static str] = &[];

        fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
            match event.event_type() {
                "Add" => model.update("tally", |c: &mut Option<Count>| {
                    c.get_or_insert(Count { n: 0 }).n += 1
                }),
                "Peek" => {
                    // A text read sees the held document's change at once.
                    let text = model.get("tally").unwrap_or_default();
                    model.put("peeked", &serde_json::to_string(&text).unwrap());
                    Ok(())
                }
                "Put" => {
                    model.put("tally", r#"{"n":100}"#);
                    Ok(())
                }
                "Drop" => model.update("tally", |c: &mut Option<Count>| *c = None),
                "Swap" => {
                    let n = model.view("tally", |v: Option<&serde_json::Value>| {
                        v.and_then(|v| v["n"].as_u64())
                    })?;
                    model.put_json("swapped", &n)
                }
                "Bad" => model.update("bad", |m: &mut Option<BTreeMap<Vec<u8>, u8>>| {
                    *m = Some(BTreeMap::from([(vec![1], 1)]))
                }),
                other => Err(Rejection::rule(format!("no {other}"))),
            }
        }
    }

    fn events(types: &[&str]) -> Vec<ProjectionEvent> {
        types
            .iter()
            .enumerate()
            .map(|(i, ty)| Event::new(i as u64 + 1, *ty, "{}").in_category("t", "1", "1-0"))
            .collect()
    }

    #[test]
    fn held_documents_are_written_once_when_the_batch_ends() {
        let mut model = MemoryReadModel::new();
        model
            .apply::<Tally>(events(&["Add", "Add", "Add"]))
            .unwrap();
        assert_eq!(model.get("tally"), Some(r#"{"n":3}"#));
        model
            .apply::<Tally>(events(&["Add", "Peek", "Add"]))
            .unwrap();
        assert_eq!(model.get("peeked"), Some(r#""{\"n\":4}""#));
        assert_eq!(model.get("tally"), Some(r#"{"n":5}"#));
    }

    #[test]
    fn text_calls_and_other_types_see_and_replace_held_documents() {
        let mut model = MemoryReadModel::new();
        // A put replaces the held document; the next update starts from the put.
        model
            .apply::<Tally>(events(&["Add", "Put", "Add"]))
            .unwrap();
        assert_eq!(model.get("tally"), Some(r#"{"n":101}"#));
        // Held as another type: the update is written back first.
        model
            .apply::<Tally>(events(&["Add", "Swap", "Add"]))
            .unwrap();
        assert_eq!(model.get("swapped"), Some("102"));
        assert_eq!(model.get("tally"), Some(r#"{"n":103}"#));
        // None deletes.
        model.apply::<Tally>(events(&["Add", "Drop"])).unwrap();
        assert_eq!(model.get("tally"), None);
    }

    #[test]
    fn a_failed_batch_keeps_nothing_and_names_the_event() {
        let mut model = MemoryReadModel::new();
        model.apply::<Tally>(events(&["Add"])).unwrap();
        let err = model.apply::<Tally>(events(&["Add", "Nope"])).unwrap_err();
        assert_eq!(
            (err.kind, err.event_index),
            (ErrorKind::RuleViolation, Some(1))
        );
        assert_eq!(model.get("tally"), Some(r#"{"n":1}"#));
        // Unserializable at the end of the batch: the event that last updated it.
        let err = model
            .apply::<Tally>(events(&["Add", "Bad", "Add"]))
            .unwrap_err();
        assert_eq!(
            (err.kind, err.event_index),
            (ErrorKind::InvalidData, Some(1))
        );
        assert!(
            err.message.contains("cannot serialize bad"),
            "{}",
            err.message
        );
        assert_eq!(model.get("tally"), Some(r#"{"n":1}"#));
        // A document that does not parse as the type held.
        model.insert("tally", r#"{"n":"x"}"#);
        let err = model.apply::<Tally>(events(&["Add"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidDocument);
        assert!(err.message.starts_with("tally: "), "{}", err.message);
    }
}
