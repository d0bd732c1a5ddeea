//! `streamfold projection run`: run the projections without the HTTP server.

use anyhow::Result;
use streamfold::Runtime;

/// Run the active projections here, without the HTTP server, until Ctrl-C or
/// SIGTERM (then each runner finishes its batch and hands its lease over). Several
/// hosts may run them: one runs each projection version at a time.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(rt: &Runtime, _args: Args) -> Result<()> {
    tracing::info!("running projections until Ctrl-C or SIGTERM");
    rt.run_projections(crate::commands::serve::shutdown_signal())
        .await?;
    Ok(())
}
