//! Everything the commands print on stdout, human or JSON, goes through here: a
//! locked, buffered stdout whose write errors become [`StdoutError`]s that the
//! commands pass up with `?`. A closed pipe (`streamfold history user 1 | head`)
//! then ends the command quietly with status 0, as in ripgrep, after the usual
//! clean-up (a private redis-server is stopped, say), instead of a panic.

use std::io::{self, Write};

use serde::Serialize;
use streamfold::{RecordedEvent, RegisteredPlugin, Replayed, VerifyReport, short_digest};

/// Writing to stdout failed.
#[derive(Debug)]
pub(crate) struct StdoutError(io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

/// No `source`: the message already ends with the operating system's error.
impl std::error::Error for StdoutError {}

/// What printing returns.
pub(crate) type Printed = Result<(), StdoutError>;

/// Whether `e` is stdout's reader having gone away (a broken pipe).
pub(crate) fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<StdoutError>())
        .any(|s| s.0.kind() == io::ErrorKind::BrokenPipe)
}

/// Runs `write` on stdout, locked and buffered, and flushes.
pub(crate) fn with_stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Printed {
    let mut out = io::BufWriter::new(io::stdout().lock());
    write(&mut out)
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// `println!` through [`with_stdout`]: returns [`Printed`], to pass up with `?`.
macro_rules! outln {
    () => {
        $crate::output::with_stdout(|w| ::std::io::Write::write_all(w, b"\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::with_stdout(|w| ::std::writeln!(w, $($arg)*))
    };
}
pub(crate) use outln;

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Printed {
    with_stdout(|w| {
        serde_json::to_writer(&mut *w, value).map_err(io::Error::from)?;
        w.write_all(b"\n")
    })
}

/// The audit trail as a table.
pub(crate) fn history(events: &[RecordedEvent]) -> Printed {
    let w = events
        .iter()
        .map(|e| e.event_type.len())
        .max()
        .unwrap_or(10)
        .max(10);
    with_stdout(|out| {
        writeln!(
            out,
            "{:>4}  {:<27}  {:<w$}  data",
            "rev", "timestamp", "event_type"
        )?;
        for e in events {
            writeln!(
                out,
                "{:>4}  {:<27}  {:<w$}  {}",
                e.revision, e.timestamp, e.event_type, e.data
            )?;
        }
        Ok(())
    })
}

/// The state: only the reducer's JSON document on stdout, so it pipes into `jq`.
pub(crate) fn state(r: &Replayed, as_json: bool) -> Printed {
    if !as_json {
        return outln!("{}", r.state);
    }
    let state: Box<serde_json::value::RawValue> =
        serde_json::value::RawValue::from_string(r.state.clone())
            .expect("the runtime checked the state is JSON");
    json(&serde_json::json!({
        "state": state,
        "revision": r.revision,
        "position": r.position,
        "reducer": {
            "name": r.plugin.name,
            "version": r.plugin.version,
            "digest": r.plugin.digest,
        },
        "snapshot_revision": r.snapshot_revision,
        "events_replayed": r.events_read,
    }))
}

/// Registered plugins as a table.
pub(crate) fn plugins(list: &[RegisteredPlugin]) -> Printed {
    if list.is_empty() {
        return outln!("no plugins registered (add one with `streamfold plugin add FILE.wasm`)");
    }
    with_stdout(|out| {
        writeln!(
            out,
            "{:<6}  {:<14}  {:<16}  {:<10}  {:<20}  {:>9}  registered",
            "active", "type", "name", "version", "digest", "bytes"
        )?;
        for p in list {
            writeln!(
                out,
                "{:<6}  {:<14}  {:<16}  {:<10}  {:<20}  {:>9}  {}",
                if p.active { "*" } else { "" },
                p.info.aggregate_type,
                p.info.name,
                p.info.version,
                short_digest(&p.info.digest),
                p.info.size,
                p.registered_at
            )?;
        }
        Ok(())
    })
}

/// A replay-diff report: the counts, then each difference and failure.
pub(crate) fn verify(r: &VerifyReport) -> Printed {
    let active = r
        .active
        .as_ref()
        .map(|p| p.label())
        .unwrap_or_else(|| "(no active reducer)".into());
    with_stdout(|out| {
        writeln!(
            out,
            "verified {} against {active} on {} {} aggregates in {} ms",
            r.candidate.label(),
            r.checked,
            r.aggregate_type,
            r.elapsed_ms
        )?;
        writeln!(
            out,
            "  agree: {}   differ: {}   fail in candidate: {}   fail in active: {}",
            r.agreed,
            r.differed.len(),
            r.failed.len(),
            r.active_failed.len()
        )?;
        for d in r.differed.iter().take(20) {
            let path = state_path(&d.path);
            writeln!(
                out,
                "  differs  {}/{}  {path}: active {} | candidate {}",
                r.aggregate_type, d.aggregate_id, d.active, d.candidate
            )?;
        }
        for f in r.failed.iter().take(20) {
            writeln!(
                out,
                "  fails    {}/{}  {}",
                r.aggregate_type, f.aggregate_id, f.error
            )?;
        }
        if !r.keeps_state_across_aggregates.is_empty() {
            writeln!(
                out,
                "  keeps state across aggregates: a fresh and a warm instance disagree on {} aggregates (it will be served on fresh instances)",
                r.keeps_state_across_aggregates.len()
            )?;
        }
        for l in r.keeps_state_across_aggregates.iter().take(20) {
            let path = state_path(&l.path);
            writeln!(
                out,
                "  leaks    {}/{}  {path}: fresh {} | warm {}",
                r.aggregate_type, l.aggregate_id, l.fresh, l.warm
            )?;
        }
        let more = r.differed.len().saturating_sub(20) + r.failed.len().saturating_sub(20);
        if more > 0 {
            writeln!(out, "  ... and {more} more (--json lists them all)")?;
        }
        writeln!(
            out,
            "{}",
            if r.passed() {
                "PASS: safe to activate"
            } else {
                "FAIL: do not activate"
            }
        )
    })
}

/// A JSON pointer into a state as shown: the empty one is the whole state.
fn state_path(path: &str) -> &str {
    if path.is_empty() {
        "(the whole state)"
    } else {
        path
    }
}
