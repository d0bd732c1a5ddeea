//! `streamfold projection list`: every projection and how it is doing.

use anyhow::Result;
use streamfold::{ProjectionSummary, Runtime, VersionStatus, short_digest};

use crate::output::{self, outln};

/// List the projections: serving and active version, status, position, lag, rate,
/// last error and dead letters.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let list = rt.list_projections().await?;
    if args.json {
        output::json(&list)?;
        return Ok(());
    }
    if list.is_empty() {
        outln!("no projections")?;
    }
    for p in &list {
        print(p)?;
    }
    Ok(())
}

/// One projection, a few lines: also `projection get` without a key.
pub(crate) fn print(p: &ProjectionSummary) -> Result<()> {
    let name_of = |vid: &Option<String>| {
        vid.as_ref().map_or("none".to_owned(), |vid| {
            let version = p
                .versions
                .iter()
                .find(|v| &v.info.digest == vid)
                .map_or("?", |v| v.info.version.as_str());
            format!("{version} ({})", short_digest(vid))
        })
    };
    outln!(
        "{}  serving {}  active {}  on error: {}",
        p.name,
        name_of(&p.serving),
        name_of(&p.active),
        p.on_error
    )?;
    for s in &p.status {
        status_line(s)?;
    }
    Ok(())
}

fn status_line(s: &VersionStatus) -> Result<()> {
    let role = match (s.serving, s.active) {
        (true, true) => "serving, active",
        (true, false) => "serving",
        _ => "active",
    };
    outln!(
        "  {} ({role}): {:?}, {} events, lag {} events ({} ms), {:.0} events/s, {} dead letters{}",
        s.version,
        s.state,
        s.events,
        s.lag_events
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        s.lag_ms,
        s.events_per_second,
        s.dead_letters,
        s.runner
            .as_ref()
            .map(|r| format!(", run by {}", super::shown(&r.holder)))
            .unwrap_or_default()
    )?;
    if let Some(f) = &s.failure {
        outln!(
            "    stopped at {} {}/{} ({}) at {}: {}",
            super::shown(&f.event_type),
            super::shown(&f.aggregate_type),
            super::shown(&f.aggregate_id),
            f.event_id,
            f.position,
            super::shown(&f.error)
        )?;
    }
    if let Some(t) = &s.trimmed {
        outln!("    the category trim dropped source events before it read them: {t}")?;
    }
    Ok(())
}
