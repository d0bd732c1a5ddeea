//! `streamfold`: the command line over the library. Thin on purpose: every
//! command is a few calls into `streamfold::{EventStore, Runtime}` and printing.
//!
//! - `commands/`: the grammar and one file per command, each with its flags.
//! - `output`: everything printed on stdout (human and JSON), closed pipes included.
//! - `exit`: exit statuses, and how an error is told on stderr.
//! - `connect`: the store and the runtime as the global flags configure them.
//! - `logging`: the stderr log subscriber (`STREAMFOLD_LOG`, else `RUST_LOG`).
//! - `bundled`: the demo's reducers, compiled into the binary.

mod bundled;
mod commands;
mod connect;
mod exit;
mod logging;
mod output;
mod parse;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` "fail" onto stdout; a closed pipe is fine there.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    logging::init(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => exit::report(&e),
    }
}
