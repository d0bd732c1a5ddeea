//! `streamfold projection activate`: make a registered version active (also the
//! rollback).

use anyhow::Result;
use streamfold::{OnError, Runtime};

use crate::output::{self, outln};

/// Make a registered version the active one: servers build it (or catch it up from
/// where it was: activating an older version is the rollback) and reads switch to
/// it once it has caught up.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
    /// A digest, a digest prefix (6+ hex digits) or a semantic version.
    digest_or_version: String,
    /// When it fails on an event: `stop` or `skip`. Kept when not given.
    #[arg(long, value_parser = super::on_error, value_name = "stop|skip")]
    on_error: Option<OnError>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let reg = rt
        .activate_projection(&args.name, &args.digest_or_version, args.on_error)
        .await?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!(
            "{} is now the active version of {:?}{}",
            reg.info.label(),
            args.name,
            if reg.serving {
                " (and serves reads)"
            } else {
                "; reads switch to it once it has caught up"
            }
        )?;
    }
    Ok(())
}
