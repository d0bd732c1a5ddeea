//! The values the store takes and gives back: the event envelope, expected revisions,
//! append results and snapshots.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// What an append expects of the aggregate's current revision (optimistic concurrency).
///
/// Serialized as `"any"`, `"no-stream"`, `"exists"` or the exact revision as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedRevision {
    /// No check: append whatever the revision is.
    #[default]
    Any,
    /// The aggregate must have no events yet (revision 0).
    NoStream,
    /// The aggregate must have at least one event.
    Exists,
    /// The aggregate must be at exactly this revision (0 is the same as `NoStream`).
    Exact(u64),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no-stream"),
            ExpectedRevision::Exists => f.write_str("exists"),
            ExpectedRevision::Exact(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for ExpectedRevision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "any" => Ok(ExpectedRevision::Any),
            "no-stream" => Ok(ExpectedRevision::NoStream),
            "exists" => Ok(ExpectedRevision::Exists),
            n => n.parse::<u64>().map(ExpectedRevision::Exact).map_err(|_| {
                Error::invalid(format!(
                    "expected revision {s:?} is not \"any\", \"no-stream\", \"exists\" or a revision number"
                ))
            }),
        }
    }
}

impl Serialize for ExpectedRevision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ExpectedRevision::Exact(n) => s.serialize_u64(*n),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedRevision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u64),
            // JSON Schema counts 5.0 as an integer, so a client may send one.
            Float(f64),
            Text(String),
        }
        // Exactly what the schema says: one of the three words, or a revision no
        // larger than Redis' counters (the command line's text form is laxer).
        match Repr::deserialize(d)? {
            Repr::Number(n) if n <= MAX_REVISION => Ok(ExpectedRevision::Exact(n)),
            Repr::Float(f) if f.fract() == 0.0 && (0.0..9.223_372_036_854_775e18).contains(&f) => {
                Ok(ExpectedRevision::Exact(f as u64))
            }
            Repr::Float(f) => Err(serde::de::Error::custom(format!(
                "expected revision {f} is not a revision number (a whole number from 0 to {MAX_REVISION})"
            ))),
            Repr::Number(n) => Err(serde::de::Error::custom(format!(
                "expected revision {n} is over the largest revision, {MAX_REVISION}"
            ))),
            Repr::Text(t) => match t.as_str() {
                "any" => Ok(ExpectedRevision::Any),
                "no-stream" => Ok(ExpectedRevision::NoStream),
                "exists" => Ok(ExpectedRevision::Exists),
                _ => Err(serde::de::Error::custom(format!(
                    "expected revision {t:?} is not \"any\", \"no-stream\", \"exists\" or a revision number"
                ))),
            },
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ExpectedRevision {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "What the append expects of the aggregate's current revision: \"any\" (no check, the default), \"no-stream\" (no events yet), \"exists\" (at least one event) or the exact revision.",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["any", "no-stream", "exists"])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                        utoipa::openapi::schema::KnownFormat::Int64,
                    )))
                    .minimum(Some(0))
                    .maximum(Some(MAX_REVISION)),
            )
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ExpectedRevision {}

/// An event to append. The store fills in what is missing: a fresh UUID v4 for the id,
/// the current time for the timestamp, `"1"` for the schema version.
///
/// To make an append retry-safe, give every event its id before the first attempt (or
/// retry with the same `NewEvent` values, which the store does not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's id; `None`: a UUID v4 is generated.
    pub event_id: Option<Uuid>,
    /// What happened, e.g. `"UserCreated"`. Must not be empty.
    pub event_type: String,
    /// The event's payload as JSON text (checked when appended).
    pub data: String,
    /// When it happened; `None`: now.
    pub timestamp: Option<DateTime<Utc>>,
    /// The schema version of `data`; `None`: `"1"`.
    pub version: Option<String>,
}

impl NewEvent {
    /// An event with a JSON payload.
    pub fn new(event_type: impl Into<String>, data: &serde_json::Value) -> Self {
        NewEvent {
            event_id: None,
            event_type: event_type.into(),
            data: data.to_string(),
            timestamp: None,
            version: None,
        }
    }

    /// An event whose payload is already JSON text; fails with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if it is not valid JSON.
    pub fn from_json_text(event_type: impl Into<String>, text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        check_json(&text)
            .map_err(|e| Error::invalid(format!("event data is not valid JSON: {e}")))?;
        Ok(NewEvent {
            event_id: None,
            event_type: event_type.into(),
            data: text,
            timestamp: None,
            version: None,
        })
    }

    /// Sets the event id (needed for retry-safe appends).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Sets the event time.
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the schema version of the payload.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// How deeply JSON a store accepts may nest arrays and objects: as deep as
/// `serde_json` parses into values by default. Deeper payloads are refused when they
/// are written, because every reader recurses over them: a reducer's JSON parser in
/// its sandbox, the server's own serializer, a client's.
pub const MAX_JSON_DEPTH: usize = 128;

/// Validates JSON text without building a value: well formed, and nested at most
/// [`MAX_JSON_DEPTH`] deep.
pub(crate) fn check_json(text: &str) -> std::result::Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    // Well formed: brackets outside strings balance, so counting them is enough.
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_JSON_DEPTH {
        return Err(format!(
            "arrays and objects nest {deepest} deep; at most {MAX_JSON_DEPTH} are allowed"
        ));
    }
    Ok(())
}

/// Formats a time the way the envelope stores it: RFC 3339, UTC, microseconds, `Z`.
pub(crate) fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendResult {
    /// Revision of the batch's first event.
    pub first_revision: u64,
    /// Revision of the batch's last event: the aggregate's revision after the append.
    pub last_revision: u64,
    /// Stream ids of the events in the aggregate stream, in order.
    pub positions: Vec<String>,
    /// The events' ids, in order (including the ones the store generated).
    pub event_ids: Vec<Uuid>,
    /// True if this was a retry of an append that had already succeeded: nothing was
    /// written, and the other fields describe the original append.
    pub already_appended: bool,
}

/// An event as stored, with its place in the aggregate's history.
///
/// Serializes with the seed's field names plus `revision` and `position`, and with
/// `data` as the embedded JSON value (not a string holding JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Event))]
pub struct RecordedEvent {
    /// The event's id (a UUID, as text).
    pub event_id: String,
    /// The aggregate's type.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// What happened.
    pub event_type: String,
    /// The payload, JSON text.
    #[serde(serialize_with = "serialize_json_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub data: String,
    /// When it happened, RFC 3339 (as written; the seed wrote it without a zone).
    pub timestamp: String,
    /// The payload's schema version.
    pub version: String,
    /// 1-based position in the aggregate's history. In the category feed, 0 for an
    /// entry written without a revision (by the seed), which cannot be known there.
    pub revision: u64,
    /// The entry's stream id (in the stream it was read from).
    pub position: String,
}

impl RecordedEvent {
    /// The payload parsed as a JSON value.
    pub fn data_value(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.data).map_err(|e| {
            Error::corrupt(
                format!(
                    "{}/{} event {}",
                    self.aggregate_type, self.aggregate_id, self.event_id
                ),
                format!("data is not valid JSON: {e}"),
            )
        })
    }

    /// The millisecond Unix time of the entry's stream id: when Redis stored it.
    pub fn stored_at_ms(&self) -> Option<u64> {
        stream_id_ms(&self.position)
    }
}

/// Writes JSON text as the embedded value; text that is not JSON (a hand-written entry)
/// is written as a string rather than failing the whole output.
fn serialize_json_text<S: serde::Serializer>(
    text: &str,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

/// A snapshot of an aggregate's state, made by one reducer.
///
/// Stored as JSON in the aggregate's snapshot hash under the reducer's digest, so a new
/// reducer never picks up an old reducer's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The state, JSON text.
    pub state: String,
    /// The last revision folded into `state`.
    pub revision: u64,
    /// The aggregate-stream id of that revision: replay continues after it.
    pub position: String,
    /// Digest of the reducer that produced `state`.
    pub reducer_digest: String,
    /// When the snapshot was made, RFC 3339 UTC.
    pub created_at: String,
}

impl Snapshot {
    /// A snapshot made now.
    pub fn new(
        state: impl Into<String>,
        revision: u64,
        position: impl Into<String>,
        reducer_digest: impl Into<String>,
    ) -> Self {
        Snapshot {
            state: state.into(),
            revision,
            position: position.into(),
            reducer_digest: reducer_digest.into(),
            created_at: format_timestamp(Utc::now()),
        }
    }

    /// The millisecond Unix time Redis stored the last event the snapshot covers
    /// (from its stream id), for time travel by instant.
    pub fn stored_at_ms(&self) -> Option<u64> {
        stream_id_ms(&self.position)
    }
}

/// The milliseconds part of a stream id (`1700000000000-3` → 1700000000000).
fn stream_id_ms(position: &str) -> Option<u64> {
    position.split('-').next()?.parse().ok()
}

/// The largest revision a caller may name: Redis keeps counters as signed 64-bit
/// integers.
pub const MAX_REVISION: u64 = i64::MAX as u64;

/// A stream position as a caller gives one (`ms-seq` or `ms`, each at most 19
/// digits), as a regular expression: exactly what the store accepts.
pub const POSITION_PATTERN: &str = "^[0-9]{1,19}(-[0-9]{1,19})?$";

/// Positions of every partition of a type, comma-separated, empty for a partition
/// not read yet (a merged category feed's; with one partition, that partition's
/// position).
pub const POSITIONS_PATTERN: &str =
    "^([0-9]{1,19}(-[0-9]{1,19})?)?(,([0-9]{1,19}(-[0-9]{1,19})?)?)*$";

/// Checks a stream id as given by a caller (`ms-seq` or `ms`): it ends up in an `XRANGE`
/// bound, where anything else would be a Redis error or a different range.
pub(crate) fn validate_position(position: &str) -> Result<()> {
    let ok = match position.split_once('-') {
        Some((ms, seq)) => digits(ms, 19) && digits(seq, 19),
        None => digits(position, 19),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{position:?} is not a stream position (expected <ms>-<seq>)"
        )))
    }
}

/// Whether `s` is 1 to `max` ASCII digits (what the published patterns say).
pub(crate) fn digits(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod json_depth_tests {
    use super::*;

    #[test]
    fn deep_json_is_refused_and_brackets_in_strings_do_not_count() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(check_json(&ok).is_ok());
        let deep = format!("[{ok}]");
        assert!(check_json(&deep).unwrap_err().contains("nest 129 deep"));
        let text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_json(&text).is_ok(), "{text}");
        assert!(check_json("{\"a\": [1, {\"b\": 2}]}").is_ok());
        assert!(check_json("[1,").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_position_pattern_accepts_exactly_what_validation_accepts() {
        let re = regex::Regex::new(POSITION_PATTERN).unwrap();
        for p in [
            "0",
            "1-0",
            "1700000000000-3",
            "9999999999999999999-9999999999999999999",
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a",
            "1 ",
            " 1",
            "01-01",
            "12345678901234567890",
            "1-12345678901234567890",
            "１",
            "1,2",
        ] {
            assert_eq!(re.is_match(p), validate_position(p).is_ok(), "{p:?}");
        }
        let many = regex::Regex::new(POSITIONS_PATTERN).unwrap();
        for p in [
            "1-0", "1-0,2-0", ",1-0", "1-0,", "", ",", "1-0, 2-0", "x,1-0",
        ] {
            let parts_ok = p
                .split(',')
                .all(|q| q.is_empty() || validate_position(q).is_ok());
            assert_eq!(many.is_match(p), parts_ok, "{p:?}");
        }
    }

    #[test]
    fn expected_revision_text_round_trips() {
        for e in [
            ExpectedRevision::Any,
            ExpectedRevision::NoStream,
            ExpectedRevision::Exists,
            ExpectedRevision::Exact(0),
            ExpectedRevision::Exact(42),
        ] {
            assert_eq!(e.to_string().parse::<ExpectedRevision>().unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<ExpectedRevision>(&json).unwrap(), e);
        }
        assert_eq!(
            serde_json::to_string(&ExpectedRevision::Exact(7)).unwrap(),
            "7"
        );
        assert_eq!(
            serde_json::to_string(&ExpectedRevision::NoStream).unwrap(),
            "\"no-stream\""
        );
        assert!("-1".parse::<ExpectedRevision>().is_err());
        assert!(
            "anything"
                .parse::<ExpectedRevision>()
                .unwrap_err()
                .is_invalid_input()
        );
    }

    #[test]
    fn recorded_event_embeds_data() {
        let e = RecordedEvent {
            event_id: "id".into(),
            aggregate_type: "user".into(),
            aggregate_id: "1".into(),
            event_type: "UserCreated".into(),
            data: r#"{"name":"Alice","n":1}"#.into(),
            timestamp: "2026-01-01T00:00:00.000000Z".into(),
            version: "1".into(),
            revision: 3,
            position: "1-0".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["data"]["name"], "Alice");
        assert_eq!(v["revision"], 3);
        assert_eq!(v["position"], "1-0");
        let bad = RecordedEvent {
            data: "not json".into(),
            ..e
        };
        let v: serde_json::Value = serde_json::to_value(&bad).unwrap();
        assert_eq!(v["data"], "not json");
    }

    #[test]
    fn new_event_checks_json() {
        assert!(
            NewEvent::from_json_text("X", "{")
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(NewEvent::from_json_text("X", "{\"a\":1}").is_ok());
        assert_eq!(
            NewEvent::new("X", &serde_json::json!({"a": 1})).data,
            "{\"a\":1}"
        );
    }

    #[test]
    fn positions() {
        assert!(validate_position("1-0").is_ok());
        assert!(validate_position("1700000000000").is_ok());
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "+",
            "(1-0",
            "1-0-0",
            "99999999999999999999999-0",
        ] {
            assert!(validate_position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_micros() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T06:05:04.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(t), "2026-11-26T06:05:04.123456Z");
    }
}
