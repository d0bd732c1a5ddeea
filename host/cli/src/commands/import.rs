//! `streamfold import`: NDJSON in, atomic batches out.
//!
//! Consecutive lines of one aggregate go into one atomic append (up to `--batch`
//! events). Every line is checked before it joins a batch, so a bad line stops the
//! import with its line number (exit status 2): everything before it is written,
//! nothing after it, and no batch is ever half-written.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use streamfold::{EventStore, ExpectedRevision, NewEvent};

use super::Global;
use crate::connect;
use crate::exit::Explained;
use crate::output::{self, outln};

/// Import events from NDJSON, one event per line (`-` reads stdin).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The file, or `-`.
    file: PathBuf,
    /// Events per atomic append (consecutive events of one aggregate).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    aggregate_type: String,
    #[serde(deserialize_with = "string_or_number")]
    aggregate_id: String,
    event_type: String,
    data: serde_json::Value,
    #[serde(default)]
    event_id: Option<uuid::Uuid>,
    #[serde(default)]
    timestamp: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    version: Option<String>,
}

/// The seed writes `str(aggregate_id)`, so ids may come as numbers.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "aggregate_id must be a string or a number, not {other}"
        ))),
    }
}

struct Pending {
    aggregate_type: String,
    aggregate_id: String,
    events: Vec<NewEvent>,
    first_line: usize,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let store = connect::store(g).await?;
    import(&store, &args.file, args.batch, args.json).await
}

async fn import(store: &EventStore, file: &Path, batch: usize, json: bool) -> Result<()> {
    let batch = batch.max(1);
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::new(f)), len)
    };
    // Hidden automatically when stderr is not a terminal.
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .expect("valid template"),
        ),
        None => ProgressBar::new_spinner(),
    };

    let mut pending: Option<Pending> = None;
    let mut imported = 0u64;
    let mut aggregates = std::collections::HashSet::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let parsed = match line {
            Ok(line) => {
                bar.inc(line.len() as u64 + 1);
                if line.trim().is_empty() {
                    continue;
                }
                // The type and id are checked here too (key characters), so a bad
                // one stops the import at its own line, not at its batch's append.
                parse(&line).and_then(|p| {
                    store.keys(&p.0, &p.1)?;
                    Ok(p)
                })
            }
            // Not UTF-8: a bad line like any other.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(anyhow::Error::new(e).context("not a valid event line"))
            }
            Err(e) => return Err(e).with_context(|| format!("line {n}: cannot read")),
        };
        let (aggregate_type, aggregate_id, event) = match parsed {
            Ok(p) => p,
            Err(e) => {
                imported += flush(store, pending.take()).await?;
                bar.finish_and_clear();
                return Err(Explained::usage(format!(
                    "line {n}: {e:#}\n{imported} events before line {n} were imported; nothing from line {n} on was written"
                ))
                .into());
            }
        };
        let same = pending.as_ref().is_some_and(|p| {
            p.aggregate_type == aggregate_type
                && p.aggregate_id == aggregate_id
                && p.events.len() < batch
        });
        if !same {
            imported += flush(store, pending.take()).await?;
            aggregates.insert((aggregate_type.clone(), aggregate_id.clone()));
            pending = Some(Pending {
                aggregate_type,
                aggregate_id,
                events: Vec::with_capacity(batch),
                first_line: n,
            });
        }
        pending.as_mut().expect("just set").events.push(event);
        bar.set_message(format!("{imported} events"));
    }
    imported += flush(store, pending.take()).await?;
    bar.finish_and_clear();
    if json {
        output::json(&serde_json::json!({ "events": imported, "aggregates": aggregates.len() }))?;
    } else {
        outln!(
            "imported {imported} events into {} aggregates",
            aggregates.len()
        )?;
    }
    Ok(())
}

fn parse(line: &str) -> Result<(String, String, NewEvent)> {
    let l: Line = serde_json::from_str(line).context("not a valid event line")?;
    if l.aggregate_type.is_empty() || l.aggregate_id.is_empty() || l.event_type.is_empty() {
        bail!("aggregate_type, aggregate_id and event_type must not be empty");
    }
    let mut event = NewEvent::new(l.event_type, &l.data);
    if let Some(id) = l.event_id {
        event = event.with_id(id);
    }
    if let Some(t) = l.timestamp {
        event = event.with_timestamp(t.to_utc());
    }
    if let Some(v) = l.version {
        event = event.with_version(v);
    }
    Ok((l.aggregate_type, l.aggregate_id, event))
}

async fn flush(store: &EventStore, pending: Option<Pending>) -> Result<u64> {
    let Some(p) = pending else { return Ok(0) };
    let n = p.events.len() as u64;
    store
        .append(
            &p.aggregate_type,
            &p.aggregate_id,
            p.events,
            ExpectedRevision::Any,
        )
        .await
        .with_context(|| format!("appending the batch that starts at line {}", p.first_line))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_numeric_ids_and_are_checked() {
        let (t, id, _) = parse(
            r#"{"aggregate_type":"user","aggregate_id":7,"event_type":"UserCreated","data":{}}"#,
        )
        .unwrap();
        assert_eq!((t.as_str(), id.as_str()), ("user", "7"));
        for bad in [
            "{broken",
            r#"{"aggregate_type":"","aggregate_id":"1","event_type":"E","data":{}}"#,
            r#"{"aggregate_type":"user","aggregate_id":[1],"event_type":"E","data":{}}"#,
            r#"{"aggregate_type":"user","aggregate_id":"1","event_type":"E","data":{},"extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
