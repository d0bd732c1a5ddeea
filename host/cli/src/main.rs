//! `streamfold`: the command line over the library. Thin on purpose: every
//! command is a few calls into `streamfold::{EventStore, Runtime}` and printing.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
