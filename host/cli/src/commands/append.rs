//! `streamfold append`: one event, one atomic append.

use anyhow::{Context, Result};
use streamfold::{ExpectedRevision, NewEvent};

use super::Global;
use crate::output::{self, outln};
use crate::{connect, parse};

/// Append one event to an aggregate.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Aggregate type, e.g. `user`.
    aggregate_type: String,
    /// Aggregate id, e.g. `1`.
    aggregate_id: String,
    /// Event type, e.g. `EmailChanged`.
    event_type: String,
    /// The event's data: one JSON document.
    data: String,
    /// Expected revision: `any`, `no-stream`, `exists` or a number.
    #[arg(long, default_value = "any", value_parser = parse::expected)]
    expect: ExpectedRevision,
    /// Event id (a UUID); retrying with the same id never appends twice.
    #[arg(long)]
    event_id: Option<uuid::Uuid>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let store = connect::store(g).await?;
    let mut event = NewEvent::from_json_text(args.event_type, args.data).context("DATA_JSON")?;
    if let Some(id) = args.event_id {
        event = event.with_id(id);
    }
    let (aggregate_type, aggregate_id) = (&args.aggregate_type, &args.aggregate_id);
    let r = store
        .append(aggregate_type, aggregate_id, vec![event], args.expect)
        .await?;
    if args.json {
        output::json(&serde_json::json!({
            "revision": r.last_revision,
            "position": r.positions.first(),
            "event_id": r.event_ids.first(),
            "already_appended": r.already_appended,
        }))?;
    } else {
        let note = if r.already_appended {
            " (already appended: nothing written)"
        } else {
            ""
        };
        outln!(
            "appended to {aggregate_type}/{aggregate_id} at revision {} (position {}){note}",
            r.last_revision,
            r.positions.first().map(String::as_str).unwrap_or("-")
        )?;
    }
    Ok(())
}
