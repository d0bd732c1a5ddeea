//! `streamfold projection ...`: projections (read models folded from whole
//! categories by sandboxed components). One file per subcommand, thin over the
//! runtime.

mod activate;
mod add;
mod get;
mod list;
mod query;
mod rebuild;
mod remove;
mod resume;
mod run;

use anyhow::Result;
use clap::Subcommand;
use streamfold::{OnError, text};

use super::Global;
use crate::connect;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Add(add::Args),
    List(list::Args),
    Get(get::Args),
    Query(query::Args),
    Activate(activate::Args),
    Rebuild(rebuild::Args),
    Resume(resume::Args),
    Remove(remove::Args),
    Run(run::Args),
}

pub(crate) async fn run(g: &Global, cmd: Command) -> Result<()> {
    let rt = connect::runtime(g).await?;
    match cmd {
        Command::Add(args) => add::run(&rt, args).await,
        Command::List(args) => list::run(&rt, args).await,
        Command::Get(args) => get::run(&rt, args).await,
        Command::Query(args) => query::run(&rt, args).await,
        Command::Activate(args) => activate::run(&rt, args).await,
        Command::Rebuild(args) => rebuild::run(&rt, args).await,
        Command::Resume(args) => resume::run(&rt, args).await,
        Command::Remove(args) => remove::run(&rt, args).await,
        Command::Run(args) => run::run(&rt, args).await,
    }
}

/// `--on-error stop|skip`.
pub(crate) fn on_error(s: &str) -> Result<OnError, String> {
    s.parse::<OnError>().map_err(|e| e.to_string())
}

/// Untrusted text (a projection's error, a document key) as a terminal may show it.
pub(crate) fn shown(s: &str) -> String {
    text::shown(s, 300)
}
