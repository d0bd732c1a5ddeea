//! `streamfold plugin add`: validate, (optionally) verify, register, activate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use streamfold::{RegisterOptions, Runtime};

use super::{Sample, verify};
use crate::exit::{Explained, VERIFY_FAILED};
use crate::output::{self, outln};

/// Validate a reducer component, register it, and make it active for its type.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    file: PathBuf,
    /// Register without activating.
    #[arg(long)]
    no_activate: bool,
    /// Replay-diff against the active version first; activate only if nothing differs or fails.
    #[arg(long)]
    verify: bool,
    /// With --verify: activate even if the verification finds differences.
    #[arg(long, requires = "verify")]
    force: bool,
    #[command(flatten)]
    sample: Sample,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let file = &args.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    // `--verify` decides whether it is registered at all; `--no-activate` whether
    // it becomes active. A passing verification never overrides `--no-activate`.
    let activate = !args.no_activate;
    if args.verify {
        let (candidate, _) = rt
            .load_async(bytes.clone().into())
            .await
            .with_context(|| format!("{} was not registered", file.display()))?;
        let report = verify::replay_diff(rt, candidate, &args.sample, args.json).await?;
        if !report.passed() {
            if !args.force {
                return Err(Explained {
                    status: VERIFY_FAILED,
                    message: format!(
                        "{} was not registered: verification found {} differing and {} failing aggregates{} (use --force to {} anyway)",
                        file.display(),
                        report.differed.len(),
                        report.failed.len(),
                        leaks(&report),
                        if activate { "activate" } else { "register" },
                    ),
                }
                .into());
            }
            if activate {
                tracing::warn!("activating despite the differences (--force)");
            } else {
                tracing::warn!("registering despite the differences (--force)");
            }
        }
    }
    let reg = rt
        .register(bytes, RegisterOptions::default().activate(activate))
        .await
        .with_context(|| format!("{} was not registered", file.display()))?;
    if args.json {
        output::json(&reg)?;
    } else {
        outln!(
            "registered {} for aggregate type {:?}{}",
            reg.info.label(),
            reg.info.aggregate_type,
            if reg.active { " (active)" } else { "" }
        )?;
        outln!("digest: sha256:{}", reg.info.digest)?;
    }
    Ok(())
}

/// ", and it keeps state across aggregates" when the verify found that.
pub(super) fn leaks(report: &streamfold::VerifyReport) -> &'static str {
    if report.keeps_state_across_aggregates.is_empty() {
        ""
    } else {
        ", and it keeps state across aggregates (a fresh and a warm instance disagree)"
    }
}
