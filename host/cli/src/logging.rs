//! Log lines (the command line's warnings, the library's, and reducers' own log
//! lines, target `streamfold::reducer`) go to stderr through `tracing`, filtered by
//! `STREAMFOLD_LOG`, else `RUST_LOG`, else `warn`, in `tracing_subscriber`'s
//! `EnvFilter` syntax (`info`, `streamfold::reducer=debug,warn`, ...). `--log-format
//! json` (or `STREAMFOLD_LOG_FORMAT=json`) writes one JSON object per line, with
//! timestamps, for log collectors; `text` (the default) is for people.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter when neither variable is set.
const DEFAULT: &str = "warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// For people: one line per event, no timestamps.
    Text,
    /// For log collectors: one JSON object per line, with timestamps and spans
    /// (the server's `request` span carries the `x-request-id`).
    Json,
}

/// Installs the stderr subscriber. Call once, before anything logs.
pub(crate) fn init(format: Format) {
    let (name, directives) = ["STREAMFOLD_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
        .unwrap_or(("", DEFAULT.to_owned()));
    let (filter, bad) = match EnvFilter::builder().parse(&directives) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new(DEFAULT), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .try_init()
            .ok(),
        Format::Json => builder.json().with_current_span(true).try_init().ok(),
    };
    if let Some(e) = bad {
        tracing::warn!("ignoring ${name}={directives:?}: {e}; logging at {DEFAULT:?}");
    }
}
