//! `streamfold plugin list`: every registered version, the active ones marked.

use anyhow::Result;
use streamfold::Runtime;

use crate::output;

/// List registered reducers (all versions) and which are active.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only this aggregate type.
    aggregate_type: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let list = rt.plugins(args.aggregate_type.as_deref()).await?;
    if args.json {
        output::json(&list)?;
    } else {
        output::plugins(&list)?;
    }
    Ok(())
}
