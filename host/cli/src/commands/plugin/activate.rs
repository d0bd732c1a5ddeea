//! `streamfold plugin activate`: make a registered version active (also the rollback).

use anyhow::Result;
use streamfold::Runtime;

use crate::output::{self, outln};

/// Make a registered version the active reducer of a type (also the rollback).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    aggregate_type: String,
    /// A digest, a digest prefix (6+ hex digits) or a semantic version.
    digest_or_version: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let reg = rt
        .activate(&args.aggregate_type, &args.digest_or_version)
        .await?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!(
            "{} is now the active reducer for {:?}",
            reg.info.label(),
            args.aggregate_type
        )?;
    }
    Ok(())
}
