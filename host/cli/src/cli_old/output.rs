//! Human and JSON output.

use serde::Serialize;
use streamfold::runtime::{RegisteredPlugin, Replayed, VerifyReport, short_digest};
use streamfold::store::RecordedEvent;

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("output serializes")
    );
}

/// The audit trail as a table.
pub(crate) fn history(events: &[RecordedEvent]) {
    let w = events
        .iter()
        .map(|e| e.event_type.len())
        .max()
        .unwrap_or(10)
        .max(10);
    println!(
        "{:>4}  {:<27}  {:<w$}  data",
        "rev", "timestamp", "event_type"
    );
    for e in events {
        println!(
            "{:>4}  {:<27}  {:<w$}  {}",
            e.revision, e.timestamp, e.event_type, e.data
        );
    }
}

/// The state: only the reducer's JSON document on stdout, so it pipes into `jq`.
pub(crate) fn state(r: &Replayed, as_json: bool) {
    if as_json {
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
        }));
    } else {
        println!("{}", r.state);
    }
}

/// Registered plugins as a table.
pub(crate) fn plugins(list: &[RegisteredPlugin]) {
    if list.is_empty() {
        println!("no plugins registered (add one with `streamfold plugin add FILE.wasm`)");
        return;
    }
    println!(
        "{:<6}  {:<14}  {:<16}  {:<10}  {:<20}  {:>9}  registered",
        "active", "type", "name", "version", "digest", "bytes"
    );
    for p in list {
        println!(
            "{:<6}  {:<14}  {:<16}  {:<10}  {:<20}  {:>9}  {}",
            if p.active { "*" } else { "" },
            p.info.aggregate_type,
            p.info.name,
            p.info.version,
            short_digest(&p.info.digest),
            p.info.size,
            p.registered_at
        );
    }
}

/// A replay-diff report: the counts, then each difference and failure.
pub(crate) fn verify(r: &VerifyReport) {
    let active = r
        .active
        .as_ref()
        .map(|p| p.label())
        .unwrap_or_else(|| "(no active reducer)".into());
    println!(
        "verified {} against {active} on {} {} aggregates in {} ms",
        r.candidate.label(),
        r.checked,
        r.aggregate_type,
        r.elapsed_ms
    );
    println!(
        "  agree: {}   differ: {}   fail in candidate: {}   fail in active: {}",
        r.agreed,
        r.differed.len(),
        r.failed.len(),
        r.active_failed.len()
    );
    for d in r.differed.iter().take(20) {
        let path = if d.path.is_empty() {
            "(the whole state)"
        } else {
            d.path.as_str()
        };
        println!(
            "  differs  {}/{}  {path}: active {} | candidate {}",
            r.aggregate_type, d.aggregate_id, d.active, d.candidate
        );
    }
    for f in r.failed.iter().take(20) {
        println!(
            "  fails    {}/{}  {}",
            r.aggregate_type, f.aggregate_id, f.error
        );
    }
    let more = r.differed.len().saturating_sub(20) + r.failed.len().saturating_sub(20);
    if more > 0 {
        println!("  ... and {more} more (--json lists them all)");
    }
    println!(
        "{}",
        if r.passed() {
            "PASS: safe to activate"
        } else {
            "FAIL: do not activate"
        }
    );
}
