//! `streamfold state`: replay an aggregate, now or back in time.

use anyhow::Result;
use streamfold::ReplayOptions;

use super::Global;
use crate::{connect, output};

/// Replay an aggregate through its reducer and print the state.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    aggregate_id: String,
    /// The state just after this revision.
    #[arg(long, conflicts_with = "as_of")]
    at_revision: Option<u64>,
    /// The state as of this instant (RFC 3339, e.g. 2026-11-26T06:05:04Z).
    #[arg(long)]
    as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Replay every event, ignoring snapshots.
    #[arg(long)]
    no_snapshot: bool,
    /// Print an object with the state, its revision and the reducer.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let rt = connect::runtime(g).await?;
    let mut opts = ReplayOptions::default().use_snapshots(!args.no_snapshot);
    if let Some(r) = args.at_revision {
        opts = opts.at_revision(r);
    }
    if let Some(t) = args.as_of {
        opts = opts.as_of(t.to_utc());
    }
    let replayed = rt
        .state(&args.aggregate_type, &args.aggregate_id, opts)
        .await?;
    output::state(&replayed, args.json)?;
    Ok(())
}
