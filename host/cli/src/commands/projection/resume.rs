//! `streamfold projection resume`: retry the event a failed projection stopped at.

use anyhow::Result;
use streamfold::Runtime;

use crate::output::outln;

/// Let a failed projection retry the event it stopped at (a fixed version is
/// activated with `projection activate` instead).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    rt.resume_projection(&args.name).await?;
    outln!("{:?} retries the event it stopped at", args.name)?;
    Ok(())
}
