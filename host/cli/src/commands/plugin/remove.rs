//! `streamfold plugin remove`: delete a registered version that is not active.

use anyhow::Result;
use streamfold::Runtime;

use crate::output::outln;

/// Delete a registered version that is not active.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    /// A digest, a digest prefix (6+ hex digits) or a semantic version.
    digest_or_version: String,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let reg = rt
        .remove(&args.aggregate_type, &args.digest_or_version)
        .await?;
    outln!("removed {} from the registry", reg.info.label())?;
    Ok(())
}
