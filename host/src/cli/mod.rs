//! Argument parsing, exit statuses and error printing for the `streamfold` binary.

mod commands;
mod demo;
mod import;
mod output;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use streamfold::store::{ExpectedRevision, Layout};

/// Exit statuses, as documented in the README.
pub(crate) mod status {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFLICT: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const VERIFY_FAILED: u8 = 5;
}

/// An error that has already been explained on the terminal, and exits with `status`.
#[derive(Debug)]
pub(crate) struct Explained {
    pub status: u8,
    pub message: String,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Explained {}

/// Event sourcing on Redis Streams, with state replayed through WebAssembly reducers.
#[derive(Debug, Parser)]
#[command(name = "streamfold", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Redis to use.
    #[arg(
        long,
        global = true,
        env = "STREAMFOLD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// Prefix of every key, so several applications can share one Redis.
    #[arg(long, global = true, env = "STREAMFOLD_PREFIX", default_value = "sf")]
    pub prefix: String,
    /// Key layout: `default` (cluster-ready) or `seed` (the seed document's keys).
    #[arg(long, global = true, default_value = "default", value_parser = parse_layout)]
    pub layout: Layout,
    /// Folder for compiled reducer code [default: ~/.cache/streamfold].
    #[arg(long, global = true, env = "STREAMFOLD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse().map_err(|e: streamfold::Error| e.to_string())
}

fn parse_expected(s: &str) -> Result<ExpectedRevision, String> {
    s.parse().map_err(|e: streamfold::Error| e.to_string())
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Append one event to an aggregate.
    Append {
        /// Aggregate type, e.g. `user`.
        aggregate_type: String,
        /// Aggregate id, e.g. `1`.
        aggregate_id: String,
        /// Event type, e.g. `EmailChanged`.
        event_type: String,
        /// The event's data: one JSON document.
        data: String,
        /// Expected revision: `any`, `no-stream`, `exists` or a number.
        #[arg(long, default_value = "any", value_parser = parse_expected)]
        expect: ExpectedRevision,
        /// Event id (a UUID); retrying with the same id never appends twice.
        #[arg(long)]
        event_id: Option<uuid::Uuid>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import events from NDJSON, one event per line (`-` reads stdin).
    Import {
        /// The file, or `-`.
        file: PathBuf,
        /// Events per atomic append (consecutive events of one aggregate).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Print a summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an aggregate's history: its complete audit trail.
    History {
        aggregate_type: String,
        aggregate_id: String,
        /// First revision to print.
        #[arg(long)]
        from: Option<u64>,
        /// Print one JSON array of events.
        #[arg(long)]
        json: bool,
    },
    /// Replay an aggregate through its reducer and print the state.
    State {
        aggregate_type: String,
        aggregate_id: String,
        /// The state just after this revision.
        #[arg(long, conflicts_with = "as_of")]
        at_revision: Option<u64>,
        /// The state as of this instant (RFC 3339, e.g. 2026-11-26T06:05:04Z).
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Replay every event, ignoring snapshots.
        #[arg(long)]
        no_snapshot: bool,
        /// Print an object with the state, its revision and the reducer.
        #[arg(long)]
        json: bool,
    },
    /// Replay an aggregate and save a snapshot of its state.
    Snapshot {
        aggregate_type: String,
        aggregate_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Register, list and activate reducer plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the seed document's story end to end (starts a private Redis if none is reachable).
    Demo,
    /// Register and activate every component in a folder, and again whenever one
    /// changes: rebuild a reducer and the next replay uses it. Stops on Ctrl-C.
    Watch {
        /// The folder of `.wasm` components.
        #[arg(long)]
        plugins: PathBuf,
        /// How often to look for changes, in milliseconds.
        #[arg(long, default_value_t = 300)]
        interval_ms: u64,
    },
}

/// Which aggregates `verify` compares.
#[derive(Debug, Args, Clone)]
pub(crate) struct Sample {
    /// Compare at most N aggregates of the type.
    #[arg(long, default_value_t = 100, conflicts_with = "all")]
    pub sample: usize,
    /// Compare every aggregate of the type.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Validate a reducer component, register it, and make it active for its type.
    Add {
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
    },
    /// Replay existing aggregates through the active reducer and through a candidate,
    /// side by side, without activating anything. Exit 0 only if none differ or fail.
    Verify {
        file: PathBuf,
        /// The aggregate type (default: the one the candidate declares; must match it).
        #[arg(long = "type")]
        aggregate_type: Option<String>,
        #[command(flatten)]
        sample: Sample,
        #[arg(long)]
        json: bool,
    },
    /// What was active for a type, and when (newest first).
    History {
        aggregate_type: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a registered version that is not active.
    Remove {
        aggregate_type: String,
        /// A digest, a digest prefix (6+ hex digits) or a semantic version.
        digest_or_version: String,
    },
    /// List registered reducers (all versions) and which are active.
    List {
        /// Only this aggregate type.
        aggregate_type: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make a registered version the active reducer of a type (also the rollback).
    Activate {
        aggregate_type: String,
        /// A digest, a digest prefix (6+ hex digits) or a semantic version.
        digest_or_version: String,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                status::USAGE
            } else {
                status::OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(status::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(status::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_status(&e))
        }
    }
}

/// Maps the library's error (wherever it is in the chain) to our exit statuses.
fn exit_status(e: &anyhow::Error) -> u8 {
    if let Some(x) = e.downcast_ref::<Explained>() {
        return x.status;
    }
    let Some(e) = e
        .chain()
        .find_map(|c| c.downcast_ref::<streamfold::Error>())
    else {
        return status::FAILURE;
    };
    if e.is_conflict() {
        status::CONFLICT
    } else if e.is_not_found() {
        status::NOT_FOUND
    } else if e.is_invalid_input() {
        status::USAGE
    } else {
        status::FAILURE
    }
}
