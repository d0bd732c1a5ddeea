//! `streamfold projection rebuild`: rebuild the active version from the beginning.

use anyhow::Result;
use streamfold::Runtime;

use crate::output::{self, outln};

/// Rebuild the active version from position 0, in place (its documents, position
/// and dead letters are dropped in one step). To keep serving the old read model
/// meanwhile, add and activate a new version instead.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let reg = rt.rebuild_projection(&args.name).await?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!(
            "rebuilding {} from the beginning (servers running projections do it)",
            reg.info.label()
        )?;
    }
    Ok(())
}
