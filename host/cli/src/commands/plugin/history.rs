//! `streamfold plugin history`: what was active for a type, and when.

use anyhow::Result;
use streamfold::{Runtime, short_digest};

use crate::output::{self, outln};

/// What was active for a type, and when (newest first).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let history = rt.activation_history(&args.aggregate_type).await?;
    if args.json {
        output::json(&history)?;
    } else if history.is_empty() {
        outln!("nothing was ever activated for {:?}", args.aggregate_type)?;
    } else {
        output::with_stdout(|out| {
            for a in &history {
                writeln!(
                    out,
                    "{}  {}@{}  {}",
                    a.activated_at,
                    a.name,
                    a.version,
                    short_digest(&a.digest)
                )?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
