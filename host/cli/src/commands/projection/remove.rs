//! `streamfold projection remove`: remove a version that neither serves nor builds.

use anyhow::Result;
use streamfold::Runtime;

use crate::output::{self, outln};

/// Remove a version of a projection: its read model, position, registration and
/// component. The serving and the active version are refused.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
    /// A digest, a digest prefix (6+ hex digits) or a semantic version.
    digest_or_version: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let reg = rt
        .remove_projection(&args.name, &args.digest_or_version)
        .await?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!("removed {}", reg.info.label())?;
    }
    Ok(())
}
