//! `streamfold plugin verify`: replay-diff a candidate against the active version.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use streamfold::{Plugin, Runtime, VerifyOptions, VerifyReport};

use super::Sample;
use crate::exit::{Explained, VERIFY_FAILED};
use crate::output;

/// Replay existing aggregates through the active reducer and through a candidate,
/// side by side, without activating anything. Exit 0 only if none differ or fail.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    file: PathBuf,
    /// The aggregate type (default: the one the candidate declares; must match it).
    #[arg(long = "type")]
    aggregate_type: Option<String>,
    #[command(flatten)]
    sample: Sample,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let file = &args.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (candidate, _) = rt.load_async(bytes.into()).await?;
    if let Some(t) = args
        .aggregate_type
        .filter(|t| *t != candidate.info().aggregate_type)
    {
        return Err(Explained::usage(format!(
            "invalid input: {} folds {:?} aggregates, not {t:?}",
            candidate.info().label(),
            candidate.info().aggregate_type
        ))
        .into());
    }
    let report = replay_diff(rt, candidate, &args.sample, args.json).await?;
    if !report.passed() {
        return Err(Explained {
            status: VERIFY_FAILED,
            message: format!(
                "verification failed: {} of {} aggregates differ, {} fail in the candidate{}",
                report.differed.len(),
                report.checked,
                report.failed.len(),
                super::add::leaks(&report)
            ),
        }
        .into());
    }
    Ok(())
}

/// Runs a replay-diff with a progress bar on a terminal, prints the report.
pub(super) async fn replay_diff(
    rt: &Runtime,
    candidate: Arc<Plugin>,
    sample: &Sample,
    json: bool,
) -> Result<VerifyReport> {
    let options = if sample.all {
        VerifyOptions::default().all()
    } else {
        VerifyOptions::default().sample(sample.sample)
    };
    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} aggregates ({per_sec}, {eta})",
        )
        .expect("valid template"),
    );
    let report = rt
        .verify(candidate, options, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await?;
    bar.finish_and_clear();
    if json {
        output::json(&report)?;
    } else {
        output::verify(&report)?;
    }
    Ok(report)
}
