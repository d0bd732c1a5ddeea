//! The command line's grammar (global flags, one subcommand per file) and dispatch.

mod append;
mod demo;
mod group;
mod history;
mod import;
mod plugin;
mod projection;
mod serve;
mod snapshot;
mod state;
mod token;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use streamfold::{Durability, Layout};

use crate::parse;

/// Event sourcing on Redis Streams, with state replayed through WebAssembly reducers.
#[derive(Debug, Parser)]
#[command(name = "streamfold", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

// The flags every command takes (a plain comment: a doc comment on a flattened
// struct would become the about text of the command it is flattened into).
#[derive(Debug, clap::Args)]
pub(crate) struct Global {
    /// Redis to use: a URL (`redis://`, `rediss://` for TLS, `redis://user:pass@host`
    /// for an ACL user), or with `--cluster` one or more node URLs, comma-separated.
    #[arg(
        long,
        global = true,
        env = "STREAMFOLD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// The Redis is a Redis Cluster: the other nodes are discovered from the ones
    /// `--redis` names, and each command goes to the node serving its key.
    #[arg(long, global = true, env = "STREAMFOLD_CLUSTER")]
    pub cluster: bool,
    /// When an append is acknowledged: `primary` (when the primary has it), or
    /// `replicas=N[,timeout=MS]` (only once N replicas hold it too, with `WAIT`; a
    /// failover then loses no acknowledged append).
    #[arg(long, global = true, env = "STREAMFOLD_DURABILITY", default_value = "primary", value_parser = parse::durability)]
    pub durability: Durability,
    /// A type's number of category partitions, `TYPE=N` (repeatable; default 1). Fixed
    /// for the life of a type: it is recorded in Redis when the type is first written,
    /// and a host configured otherwise is refused.
    #[arg(long = "partitions", global = true, env = "STREAMFOLD_PARTITIONS", value_name = "TYPE=N", value_delimiter = ',', value_parser = parse::partitions)]
    pub partitions: Vec<(String, u32)>,
    /// About how many events each category partition keeps (`XADD … MAXLEN ~`; 0:
    /// never trim). Aggregate streams are never trimmed. The trim waits for durable
    /// subscriptions and projections that have not handled the events yet.
    #[arg(
        long,
        global = true,
        env = "STREAMFOLD_CATEGORY_MAX_LEN",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub category_max_len: u64,
    /// CA certificate (PEM) that signed the Redis server's certificate, for a
    /// `rediss://` URL [default: the system's certificate store].
    #[arg(long, global = true, env = "STREAMFOLD_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis that asks for one (mutual TLS); with
    /// `--tls-key`.
    #[arg(long, global = true, env = "STREAMFOLD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); with `--tls-cert`.
    #[arg(long, global = true, env = "STREAMFOLD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the Redis server's certificate: for development only.
    #[arg(long, global = true, env = "STREAMFOLD_TLS_INSECURE")]
    pub tls_insecure: bool,
    /// Prefix of every key, so several applications can share one Redis.
    #[arg(long, global = true, env = "STREAMFOLD_PREFIX", default_value = "sf")]
    pub prefix: String,
    /// Key layout: `default` (cluster-ready) or `seed` (the seed document's keys).
    #[arg(long, global = true, default_value = "default", value_parser = parse::layout)]
    pub layout: Layout,
    /// Folder for compiled reducer code [default: ~/.cache/streamfold].
    #[arg(long, global = true, env = "STREAMFOLD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock time one call into a reducer may take (a batch of events, or
    /// `state`), e.g. `5s`, `500ms`: a deadline, not CPU time. A reducer over it is
    /// stopped and the replay fails.
    #[arg(long, global = true, env = "STREAMFOLD_CALL_TIMEOUT", default_value = "5s", value_parser = parse::duration)]
    pub call_timeout: Duration,
    /// Memory one reducer instance may use, e.g. `256MiB`, `1GiB`; a reducer that
    /// asks for more is stopped and the replay fails.
    #[arg(long, global = true, env = "STREAMFOLD_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse::bytes)]
    pub memory_limit: usize,
    /// Run every replay on a fresh reducer instance instead of a warm one (the
    /// default): the strictest isolation, at the cost of an instantiation per
    /// replay (hundreds of µs for Rust, milliseconds for JavaScript and Python).
    #[arg(long, global = true, env = "STREAMFOLD_FRESH_INSTANCES")]
    pub fresh_instances: bool,
    /// How long a host's lease on a projection lasts unless renewed (every third of
    /// it): when a host dies, another takes its projections over within this time.
    #[arg(long, global = true, env = "STREAMFOLD_PROJECTION_LEASE", default_value = "10s", value_parser = parse::duration)]
    pub projection_lease: std::time::Duration,
    /// Memory each projection runner may use to keep the documents it has read and
    /// committed, e.g. `64MiB`, so that a batch reads Redis only for documents it
    /// has not seen; `0` turns it off.
    #[arg(long, global = true, env = "STREAMFOLD_PROJECTION_CACHE", default_value = "64MiB", value_parser = parse::bytes)]
    pub projection_cache: usize,
    /// Memory for the state cache, e.g. `64MiB`: the latest state each aggregate's
    /// reads produced, so that the next read folds only what was appended since
    /// (checked in Redis on every read, never served stale); `0` turns it off.
    #[arg(long, global = true, env = "STREAMFOLD_STATE_CACHE", default_value = "64MiB", value_parser = parse::bytes)]
    pub state_cache: usize,
    /// How log lines on stderr are written: `text` for people, `json` (one object
    /// per line, with timestamps) for log collectors.
    #[arg(
        long,
        global = true,
        env = "STREAMFOLD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::logging::Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Append(append::Args),
    Import(import::Args),
    History(history::Args),
    State(state::Args),
    Snapshot(snapshot::Args),
    /// Register, list and activate reducer plugins.
    #[command(subcommand)]
    Plugin(plugin::Command),
    Demo(demo::Args),
    Watch(watch::Args),
    Serve(serve::Args),
    #[command(subcommand)]
    Token(token::Command),
    /// Durable subscriptions: create, inspect and delete groups, list and replay
    /// parked events, and consume a group with a shell command.
    #[command(subcommand)]
    Group(group::Command),
    /// Projections: read models folded from whole categories by sandboxed
    /// components. Add, list, read and query documents, activate (also the
    /// rollback), rebuild, resume, remove, and run them without the server.
    #[command(subcommand)]
    Projection(projection::Command),
}

/// Runs the command.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Append(args) => append::run(g, args).await,
        Command::Import(args) => import::run(g, args).await,
        Command::History(args) => history::run(g, args).await,
        Command::State(args) => state::run(g, args).await,
        Command::Snapshot(args) => snapshot::run(g, args).await,
        Command::Plugin(cmd) => plugin::run(g, cmd).await,
        Command::Demo(args) => demo::run(g, args).await,
        Command::Watch(args) => watch::run(g, args).await,
        Command::Serve(args) => serve::run(g, args).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Group(cmd) => group::run(g, cmd).await,
        Command::Projection(cmd) => projection::run(g, cmd).await,
    }
}
