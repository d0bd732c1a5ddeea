//! `streamfold token new`: a bearer token for `streamfold serve`.

use anyhow::Result;
use streamfold_server::Role;

use crate::output::outln;

/// Make bearer tokens for `streamfold serve --tokens FILE`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print a new random token and the line to add to the tokens file (which holds
    /// only its hash).
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// read (GET), write (append + read) or admin (plugins + everything).
    #[arg(long)]
    role: Role,
    /// Limit the token to these aggregate types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    types: Vec<String>,
}

pub(crate) async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::New(args) => {
            let (token, line) =
                streamfold_server::new_token(args.role, &args.types).map_err(anyhow::Error::msg)?;
            outln!("token: {token}")?;
            outln!("tokens file line: {line}")?;
            Ok(())
        }
    }
}
