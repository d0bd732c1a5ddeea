//! `streamfold snapshot`: replay an aggregate and save its state.

use anyhow::Result;

use super::Global;
use crate::connect;
use crate::output::{self, outln};

/// Replay an aggregate and save a snapshot of its state.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    aggregate_id: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let rt = connect::runtime(g).await?;
    let r = rt
        .snapshot(&args.aggregate_type, &args.aggregate_id)
        .await?;
    if args.json {
        output::json(&serde_json::json!({
            "revision": r.revision,
            "position": r.position,
            "reducer": r.plugin,
        }))?;
    } else {
        outln!(
            "saved a snapshot of {}/{} at revision {} for {}",
            args.aggregate_type,
            args.aggregate_id,
            r.revision,
            r.plugin.label()
        )?;
    }
    Ok(())
}
