//! Argument parsing, exit statuses and error printing for the `streamfold` binary.

mod commands;
mod demo;
mod import;
mod output;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Time one call into a reducer may take (a batch of events, or `state`), e.g.
    /// `5s`, `500ms`; a reducer over it is stopped and the replay fails.
    #[arg(long, global = true, env = "STREAMFOLD_CALL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Memory one reducer instance may use, e.g. `256MiB`, `1GiB`; a reducer that
    /// asks for more is stopped and the replay fails.
    #[arg(long, global = true, env = "STREAMFOLD_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse_bytes)]
    pub memory_limit: usize,
}

/// `500ms`, `5s`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 2m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?} is not a duration like 500ms, 5s or 2m")),
    };
    if d.is_zero() {
        return Err("the duration must be longer than zero".to_owned());
    }
    Ok(d)
}

/// `65536`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, binary all the same).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size like 64MiB or 1GiB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| bad())?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(bad)?;
    if bytes < 1 << 20 {
        return Err(format!(
            "{s:?} is less than the 1 MiB a reducer needs at least"
        ));
    }
    Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "5", "s", "0s", "1.5s", "-1s", "5 hours"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2M"), Ok(2 << 20));
        assert_eq!(parse_bytes("4096K"), Ok(4 << 20));
        assert_eq!(parse_bytes("2097152"), Ok(2 << 20));
        for bad in [
            "",
            "MiB",
            "1KiB",
            "12TiB",
            "1.5GiB",
            "99999999999999999999G",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
