//! The events every benchmark writes: the seed's `user` aggregate, with payloads
//! of exactly 100 bytes of JSON (issue 7's memory figure is "for a 100-byte
//! payload"; the other benchmarks use the same so all figures describe one workload).

use chrono::{DateTime, Duration, Utc};
use streamfold::NewEvent;

/// Size of every event's `data`.
pub const PAYLOAD_BYTES: usize = 100;

/// The aggregate type of every benchmark.
pub const TYPE: &str = "user";

/// Event `revision` (1-based) of user `n`: `UserCreated` first, then `EmailChanged`
/// and `NameChanged` in turn. Returns the event type and its JSON `data`.
pub fn user_event(n: u64, revision: u64) -> (&'static str, String) {
    let ts = timestamp(revision);
    match revision {
        1 => (
            "UserCreated",
            padded(format!(
                r#"{{"id":{n},"name":"Ann","email":"u{n}@ex.com","timestamp":"{ts}""#
            )),
        ),
        r if r % 2 == 0 => (
            "EmailChanged",
            padded(format!(
                r#"{{"email":"user{n}.{r}@example.com","timestamp":"{ts}""#
            )),
        ),
        r => (
            "NameChanged",
            padded(format!(r#"{{"name":"User {n} v{r}""#)),
        ),
    }
}

/// The same event as a [`NewEvent`] for [`EventStore::append`](streamfold::EventStore::append).
pub fn new_event(n: u64, revision: u64) -> NewEvent {
    let (ty, data) = user_event(n, revision);
    NewEvent {
        event_id: None,
        event_type: ty.to_owned(),
        data,
        timestamp: None,
        version: None,
    }
}

/// The seed's `datetime.utcnow().isoformat()` of a fixed day plus `revision` seconds.
fn timestamp(revision: u64) -> String {
    let base: DateTime<Utc> = DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    let t = base + Duration::seconds(i64::try_from(revision).unwrap_or(0));
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Closes a JSON object body (`{"a":1` without its `}`), padding it with a `p`
/// field (which no handler reads) to exactly [`PAYLOAD_BYTES`] when it is shorter.
fn padded(mut body: String) -> String {
    const EMPTY_PAD: &str = r#","p":""}"#;
    let min = body.len() + EMPTY_PAD.len();
    if min <= PAYLOAD_BYTES {
        body.push_str(r#","p":""#);
        body.extend(std::iter::repeat_n('x', PAYLOAD_BYTES - min));
        body.push_str("\"}");
    } else {
        body.push('}');
    }
    body
}

/// The seed's `create_event`: its seven fields, in its order.
pub fn seed_fields(
    aggregate_id: &str,
    event_type: &str,
    data: &str,
) -> [(&'static str, String); 7] {
    [
        ("event_id", uuid::Uuid::new_v4().to_string()),
        ("aggregate_type", TYPE.to_owned()),
        ("aggregate_id", aggregate_id.to_owned()),
        ("event_type", event_type.to_owned()),
        ("data", data.to_owned()),
        (
            "timestamp",
            Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        ),
        ("version", "1".to_owned()),
    ]
}

/// Aggregates `{name}-0` .. `{name}-{count-1}` of `events` events each in `store`,
/// appended (16 at a time) unless they are already there: runs keep them. An
/// aggregate with another number of events is an error.
pub async fn ensure_aggregates(
    store: &streamfold::EventStore,
    name: &str,
    count: usize,
    events: u64,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let ids: Vec<String> = (0..count).map(|i| format!("{name}-{i}")).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| async move {
            match store.revision(TYPE, id).await? {
                n if n == events => Ok(()),
                0 => {
                    let batch = (1..=events).map(|r| new_event(i as u64, r)).collect();
                    store
                        .append(TYPE, id, batch, streamfold::ExpectedRevision::NoStream)
                        .await?;
                    Ok(())
                }
                n => anyhow::bail!("{id} has {n} events, not {events}"),
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_100_bytes_of_json() {
        for n in [1, 42, 99_999, 100_000] {
            for rev in [1, 2, 3, 100_000] {
                let (_, data) = user_event(n, rev);
                assert_eq!(data.len(), PAYLOAD_BYTES, "{data}");
                serde_json::from_str::<serde_json::Value>(&data).unwrap();
            }
        }
        assert_eq!(user_event(7, 1).0, "UserCreated");
        assert_eq!(user_event(7, 2).0, "EmailChanged");
        assert_eq!(user_event(7, 3).0, "NameChanged");
    }
}
