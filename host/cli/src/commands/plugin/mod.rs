//! `streamfold plugin ...`: the reducer registry. One file per subcommand.

mod activate;
mod add;
mod history;
mod list;
mod remove;
mod verify;

use anyhow::Result;
use clap::Subcommand;

use super::Global;
use crate::connect;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Add(add::Args),
    Verify(verify::Args),
    History(history::Args),
    Remove(remove::Args),
    List(list::Args),
    Activate(activate::Args),
}

// Which aggregates `verify` compares (`plugin verify`, `plugin add --verify`). A
// plain comment: a flattened struct's doc comment would become a command's about.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Sample {
    /// Compare at most N aggregates of the type.
    #[arg(long, default_value_t = 100, conflicts_with = "all")]
    pub sample: usize,
    /// Compare every aggregate of the type.
    #[arg(long)]
    pub all: bool,
}

pub(crate) async fn run(g: &Global, cmd: Command) -> Result<()> {
    let rt = connect::runtime(g).await?;
    match cmd {
        Command::Add(args) => add::run(&rt, args).await,
        Command::Verify(args) => verify::run(&rt, args).await,
        Command::History(args) => history::run(&rt, args).await,
        Command::Remove(args) => remove::run(&rt, args).await,
        Command::List(args) => list::run(&rt, args).await,
        Command::Activate(args) => activate::run(&rt, args).await,
    }
}
