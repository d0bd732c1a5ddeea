//! `streamfold projection add`: validate, register and (by default) activate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use streamfold::{OnError, ProjectionOptions, Runtime};

use crate::output::{self, outln};

/// Validate a projection component, register it, and make it the active version
/// (servers build its read model from the beginning; reads switch to it once it has
/// caught up).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    file: PathBuf,
    /// Register without activating.
    #[arg(long)]
    no_activate: bool,
    /// When it fails on an event: `stop` there (the default for a new projection),
    /// or `skip` it into the dead letters and go on. Kept when not given.
    #[arg(long, value_parser = super::on_error, value_name = "stop|skip")]
    on_error: Option<OnError>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let file = &args.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut options = ProjectionOptions::default().activate(!args.no_activate);
    if let Some(on_error) = args.on_error {
        options = options.on_error(on_error);
    }
    let reg = rt
        .register_projection(bytes, options)
        .await
        .with_context(|| format!("{} was not registered", file.display()))?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!(
            "registered {} reading {}{}",
            reg.info.label(),
            reg.info.sources.join(", "),
            if reg.active {
                "; active: servers build it, and reads switch to it once it has caught up"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
