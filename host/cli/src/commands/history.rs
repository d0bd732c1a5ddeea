//! `streamfold history`: an aggregate's events, its complete audit trail.

use anyhow::Result;
use streamfold::ReadOptions;

use super::Global;
use crate::{connect, output};

/// Print an aggregate's history: its complete audit trail.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    aggregate_id: String,
    /// First revision to print.
    #[arg(long)]
    from: Option<u64>,
    /// Print one JSON array of events.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let store = connect::store(g).await?;
    let mut opts = ReadOptions::default();
    if let Some(from) = args.from {
        opts = opts.from_revision(from);
    }
    let events = store
        .read_all(&args.aggregate_type, &args.aggregate_id, opts)
        .await?;
    if events.is_empty() && args.from.is_none() {
        return Err(streamfold::Error::not_found(format!(
            "aggregate {}/{} (no events)",
            args.aggregate_type, args.aggregate_id
        ))
        .into());
    }
    if args.json {
        output::json(&events)?;
    } else {
        output::history(&events)?;
    }
    Ok(())
}
