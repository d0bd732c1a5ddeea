//! One stored event, as a reducer sees it.

use serde::de::DeserializeOwned;

use crate::Rejection;

/// One stored event of the aggregate being replayed.
///
/// The host hands events over in order, a batch at a time; [`Reducer::apply`](crate::Reducer::apply)
/// sees them one by one. The payload is JSON text: read it typed with [`Event::data`],
/// or as a [`serde_json::Value`] with [`Event::data_value`].
///
/// In native unit tests, build events with [`Event::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    revision: u64,
    event_type: String,
    data: String,
    timestamp: String,
    schema_version: u32,
}

impl Event {
    /// An event at `revision` of type `event_type` with the JSON payload `data`,
    /// schema version 1 and an empty timestamp (set one with [`Event::with_timestamp`]).
    ///
    /// The host builds the events a reducer sees; this is for tests.
    pub fn new(revision: u64, event_type: impl Into<String>, data: impl Into<String>) -> Self {
        Event {
            revision,
            event_type: event_type.into(),
            data: data.into(),
            timestamp: String::new(),
            schema_version: 1,
        }
    }

    /// The same event, appended at `timestamp` (RFC 3339, UTC).
    pub fn with_timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.timestamp = timestamp.into();
        self
    }

    /// The same event, with its payload at schema version `schema_version`.
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// The event's 1-based position in its aggregate's history.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What happened, e.g. `UserCreated`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// When the event was appended: RFC 3339, UTC, e.g. `2026-11-26T06:05:04.123456Z`.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// The schema version of the payload (1 unless the application said otherwise):
    /// the hook for reading old payloads after their shape changed.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The payload as the application appended it: one JSON document.
    pub fn raw_data(&self) -> &str {
        &self.data
    }

    /// The payload, deserialized into `T`.
    ///
    /// Bad JSON, a missing field or a mistyped one is an
    /// [`invalid_data`](Rejection::invalid_data) rejection that names the field, e.g.
    /// ``items[0].quantity: invalid type: string "two", expected u32 at line 1 column 42``,
    /// so `?` is all a reducer needs.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        // The fast path: path tracking costs an allocation per object key, so it is
        // only paid again, to name the field, when the payload is bad.
        serde_json::from_str(&self.data).map_err(|first| match self.data_with_path::<T>() {
            Err(rejection) => rejection,
            Ok(_) => Rejection::invalid_data(first.to_string()),
        })
    }

    /// [`data`](Self::data) with the failing field's path in the error.
    fn data_with_path<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        let mut de = serde_json::Deserializer::from_str(&self.data);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            if path == "." {
                Rejection::invalid_data(err.into_inner().to_string())
            } else {
                Rejection::invalid_data(format!("{path}: {}", err.into_inner()))
            }
        })?;
        de.end()
            .map_err(|err| Rejection::invalid_data(err.to_string()))?;
        Ok(value)
    }

    /// The payload as a JSON value, for reducers that want no types.
    pub fn data_value(&self) -> Result<serde_json::Value, Rejection> {
        self.data()
    }

    pub(crate) fn from_wit(event: crate::__rt::WitEvent) -> Self {
        Event {
            revision: event.revision,
            event_type: event.event_type,
            data: event.data,
            timestamp: event.timestamp,
            schema_version: event.schema_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::ErrorKind;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        sku: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Order {
        items: Vec<Item>,
    }

    #[test]
    fn typed_data() {
        let event = Event::new(3, "Ordered", r#"{"items": [{"sku": "a", "quantity": 2}]}"#)
            .with_timestamp("2026-11-26T06:05:04.123456Z")
            .with_schema_version(2);
        assert_eq!(event.revision(), 3);
        assert_eq!(event.event_type(), "Ordered");
        assert_eq!(event.timestamp(), "2026-11-26T06:05:04.123456Z");
        assert_eq!(event.schema_version(), 2);
        let order: Order = event.data().unwrap();
        assert_eq!(order.items[0].quantity, 2);
    }

    #[test]
    fn errors_name_the_field() {
        let event = Event::new(
            1,
            "Ordered",
            r#"{"items": [{"sku": "a", "quantity": "two"}]}"#,
        );
        let err = event.data::<Order>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(
            err.message()
                .starts_with("items[0].quantity: invalid type: string \"two\", expected u32"),
            "{err}"
        );

        let err = Event::new(1, "Ordered", r#"{"items": [{"quantity": 1}]}"#)
            .data::<Order>()
            .unwrap_err();
        assert!(
            err.message().starts_with("items[0]: missing field `sku`"),
            "{err}"
        );

        let err = Event::new(1, "Ordered", "{}").data::<Order>().unwrap_err();
        assert!(err.message().starts_with("missing field `items`"), "{err}");
    }

    #[test]
    fn bad_json_is_invalid_data() {
        for data in ["", "{", "{} {}", "nope"] {
            let err = Event::new(1, "X", data).data_value().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{data:?}");
        }
        let value = Event::new(1, "X", r#" {"big": 18446744073709551615} "#)
            .data_value()
            .unwrap();
        assert_eq!(value["big"].as_u64(), Some(u64::MAX));
    }
}
