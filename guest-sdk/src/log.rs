//! Writing to the host's log.
//!
//! Each line is tagged by the host with the plugin and the aggregate (or batch). The host cuts
//! long messages (4 KiB by default) and may drop lines when a reducer logs too much;
//! logging never fails. Outside WebAssembly (native unit tests) lines go to stderr.
//!
//! ```
//! streamfold_guest::log::warn(&format!("unknown schema version {}", 3));
//! ```

use std::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Details useful while debugging a reducer.
    Debug,
    /// Normal, noteworthy events.
    Info,
    /// Something looks wrong but the replay goes on.
    Warn,
    /// Something is wrong.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Where log lines go in a component: the `host.log` import of the world the
/// component implements, set by the SDK's glue when the host first calls in (a
/// reducer and a projection import different `host` interfaces, and a component
/// must import only its own world's).
type Sink = fn(Level, &str);

thread_local! {
    static SINK: std::cell::Cell<Option<Sink>> = const { std::cell::Cell::new(None) };
}

pub(crate) fn set_sink(sink: Sink) {
    SINK.with(|s| s.set(Some(sink)));
}

/// Writes one line at `level` to the host's log.
pub fn log(level: Level, message: &str) {
    match SINK.with(std::cell::Cell::get) {
        Some(sink) => sink(level, message),
        // Native tests (or a line before the host ever called in).
        None => {
            #[cfg(not(target_arch = "wasm32"))]
            eprintln!("[{level}] {message}");
        }
    }
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}
