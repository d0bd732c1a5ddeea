//! `streamfold group ...`: durable subscriptions, thin over the store's groups, and
//! `group consume`, which drives a group from a shell command.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use streamfold::{Delivery, EventStore, GroupSettings, GroupStart, NackAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Global;
use crate::output::{self, outln};
use crate::{connect, parse};

/// The longest reason `group consume` gives with a nack (the command's last stderr
/// line), in characters.
const MAX_REASON: usize = 1_000;
/// The most of one untrusted text (event data, a worker's error) a listing shows.
const SHOWN_BYTES: usize = 200;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Create(CreateArgs),
    List(ListArgs),
    Show(ShowArgs),
    /// Delete a group and everything it holds in Redis.
    Delete(GroupArgs),
    Parked(ParkedArgs),
    ReplayParked(ReplayArgs),
    Consume(ConsumeArgs),
}

// A type and a group (a plain comment: a flattened struct's doc comment would
// become a command's about text).
#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    /// The aggregate type whose category the group follows.
    aggregate_type: String,
    /// The group's name.
    group: String,
}

/// Create a group on a type's category (again with the same settings: nothing changes).
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    g: GroupArgs,
    /// Where it starts: `beginning`, `end` (only events appended from now on), or a
    /// category position.
    #[arg(long, default_value = "beginning", value_parser = start)]
    start: GroupStart,
    /// How long a delivery may stay unacknowledged before it is delivered again.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    ack_timeout: Duration,
    /// How often an event is delivered at most; then it is parked.
    #[arg(long, default_value_t = streamfold::DEFAULT_MAX_DELIVERIES)]
    max_deliveries: u32,
    #[arg(long)]
    json: bool,
}

/// List the groups, of every type or of one.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only this aggregate type's groups.
    #[arg(long = "type")]
    aggregate_type: Option<String>,
    #[arg(long)]
    json: bool,
}

/// A group's settings, lag (undelivered, pending, parked) and consumers.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    g: GroupArgs,
    #[arg(long)]
    json: bool,
}

/// A group's parked events, oldest parked first.
#[derive(Debug, clap::Args)]
pub(crate) struct ParkedArgs {
    #[command(flatten)]
    g: GroupArgs,
    /// The most events to list.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

/// Put a group's parked events back in front of it, to be delivered again.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    g: GroupArgs,
    #[arg(long)]
    json: bool,
}

/// Run CMD once per event of the group, with the event as JSON on its stdin; ack
/// when it exits 0, nack (retry) otherwise with its last stderr line as the reason.
/// Stops on Ctrl-C or SIGTERM, after the current event.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "CMD also gets STREAMFOLD_DELIVERY, STREAMFOLD_DELIVERY_COUNT, \
STREAMFOLD_AGGREGATE_TYPE, STREAMFOLD_AGGREGATE_ID and STREAMFOLD_REVISION in its environment."
)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    g: GroupArgs,
    /// The consumer's name [default: HOSTNAME-PID].
    #[arg(long)]
    consumer: Option<String>,
    /// The most events one fetch takes (they are handled one after another).
    #[arg(long, default_value_t = 10)]
    max: usize,
    /// How long a fetch waits for events.
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    wait: Duration,
    /// Stop after the first fetch that brings nothing.
    #[arg(long)]
    once: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

fn start(s: &str) -> Result<GroupStart, String> {
    s.parse()
        .map_err(|e: streamfold_store::Error| e.to_string())
}

pub(crate) async fn run(g: &Global, cmd: Command) -> Result<()> {
    let store = connect::store(g).await?;
    run_on(&store, cmd).await
}

async fn run_on(store: &EventStore, cmd: Command) -> Result<()> {
    match cmd {
        Command::Create(a) => create(store, a).await,
        Command::List(a) => list(store, a).await,
        Command::Show(a) => show(store, a).await,
        Command::Delete(a) => {
            store.delete_group(&a.aggregate_type, &a.group).await?;
            outln!(
                "deleted group {} of {}",
                shown(&a.group),
                shown(&a.aggregate_type)
            )?;
            Ok(())
        }
        Command::Parked(a) => parked(store, a).await,
        Command::ReplayParked(a) => {
            let r = store.replay_parked(&a.g.aggregate_type, &a.g.group).await?;
            if a.json {
                output::json(&r)?;
            } else {
                outln!(
                    "replayed {} parked events into group {}{}",
                    r.replayed,
                    shown(&a.g.group),
                    if r.kept > 0 {
                        format!("; {} stay parked (the category trim removed them)", r.kept)
                    } else {
                        String::new()
                    }
                )?;
            }
            Ok(())
        }
        Command::Consume(a) => consume(store, a).await,
    }
}

async fn create(store: &EventStore, a: CreateArgs) -> Result<()> {
    let settings = GroupSettings::new()
        .start(a.start)
        .ack_timeout(a.ack_timeout)
        .max_deliveries(a.max_deliveries);
    let made = store
        .create_group(&a.g.aggregate_type, &a.g.group, settings)
        .await?;
    if a.json {
        output::json(&made)?;
    } else {
        let s = &made.info.settings;
        outln!(
            "{} group {} of {} (start {}, ack timeout {}, max deliveries {})",
            if made.created {
                "created"
            } else {
                "unchanged: already had"
            },
            shown(&made.info.group),
            shown(&made.info.aggregate_type),
            s.start,
            millis(s.ack_timeout_ms),
            s.max_deliveries
        )?;
    }
    Ok(())
}

async fn list(store: &EventStore, a: ListArgs) -> Result<()> {
    let groups = store.list_groups(a.aggregate_type.as_deref()).await?;
    if a.json {
        output::json(&groups)?;
        return Ok(());
    }
    if groups.is_empty() {
        return Ok(outln!(
            "no groups (create one with `streamfold group create TYPE GROUP`)"
        )?);
    }
    output::with_stdout(|out| {
        writeln!(
            out,
            "{:<14}  {:<16}  {:<12}  {:>11}  {:>14}  created",
            "type", "group", "start", "ack_timeout", "max_deliveries"
        )?;
        for g in &groups {
            writeln!(
                out,
                "{:<14}  {:<16}  {:<12}  {:>11}  {:>14}  {}",
                shown(&g.aggregate_type),
                shown(&g.group),
                g.settings.start,
                millis(g.settings.ack_timeout_ms),
                g.settings.max_deliveries,
                instant(g.created_at_ms)
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

async fn show(store: &EventStore, a: ShowArgs) -> Result<()> {
    let s = store.group_status(&a.g.aggregate_type, &a.g.group).await?;
    if a.json {
        output::json(&s)?;
        return Ok(());
    }
    let count = |n: Option<u64>| n.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    let age = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), millis);
    output::with_stdout(|out| {
        writeln!(
            out,
            "group {} of {}",
            shown(&s.info.group),
            shown(&s.info.aggregate_type)
        )?;
        let set = &s.info.settings;
        writeln!(out, "start:          {}", set.start)?;
        writeln!(out, "ack timeout:    {}", millis(set.ack_timeout_ms))?;
        writeln!(out, "max deliveries: {}", set.max_deliveries)?;
        writeln!(out, "created:        {}", instant(s.info.created_at_ms))?;
        writeln!(out, "undelivered:    {}", count(s.undelivered))?;
        writeln!(out, "pending:        {}", s.pending)?;
        writeln!(out, "oldest pending: {}", age(s.oldest_pending_ms))?;
        writeln!(out, "parked:         {}", s.parked)?;
        writeln!(out, "replaying:      {}", s.replaying)?;
        if s.partitions.len() > 1 {
            writeln!(
                out,
                "\n{:>9}  {:>11}  {:>7}  {:>14}  {:>6}  last delivered",
                "partition", "undelivered", "pending", "oldest pending", "parked"
            )?;
            for p in &s.partitions {
                writeln!(
                    out,
                    "{:>9}  {:>11}  {:>7}  {:>14}  {:>6}  {}",
                    p.partition,
                    count(p.undelivered),
                    p.pending,
                    age(p.oldest_pending_ms),
                    p.parked,
                    p.last_delivered
                )?;
            }
        }
        if s.consumers.is_empty() {
            writeln!(out, "\nno consumer has polled yet")?;
        } else {
            writeln!(
                out,
                "\n{:<24}  {:>7}  {:>10}  last poll",
                "consumer", "pending", "idle"
            )?;
            for c in &s.consumers {
                writeln!(
                    out,
                    "{:<24}  {:>7}  {:>10}  {}",
                    shown(&c.name),
                    c.pending,
                    millis(c.idle_ms),
                    instant(c.last_poll_ms)
                )?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

async fn parked(store: &EventStore, a: ParkedArgs) -> Result<()> {
    let page = store
        .parked(&a.g.aggregate_type, &a.g.group, None, a.limit)
        .await?;
    if a.json {
        output::json(&page)?;
        return Ok(());
    }
    if page.events.is_empty() {
        return Ok(outln!("no parked events in group {}", shown(&a.g.group))?);
    }
    output::with_stdout(|out| {
        for p in &page.events {
            let reason = serde_json::to_value(p.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match &p.event {
                Some(e) => writeln!(
                    out,
                    "{}/{}  {}/{}@{}  {}  {reason} after {} deliveries",
                    p.partition,
                    p.position,
                    shown(&e.aggregate_type),
                    shown(&e.aggregate_id),
                    e.revision,
                    shown(&e.event_type),
                    p.delivery_count
                )?,
                None => writeln!(
                    out,
                    "{}/{}  (removed by the category trim)  {reason} after {} deliveries",
                    p.partition, p.position, p.delivery_count
                )?,
            }
            if let Some(err) = &p.last_error {
                writeln!(out, "    last error: {}", shown(err))?;
            }
            if let Some(e) = &p.event {
                writeln!(out, "    data: {}", shown(&e.data))?;
            }
        }
        if page.next.is_some() {
            writeln!(out, "... more parked events (--limit, or --json)")?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Untrusted text (names, event data, a worker's error) as it may reach a
/// terminal: cut, with control and bidi characters escaped (the sandbox's rule for
/// a reducer's text).
fn shown(s: &str) -> String {
    streamfold::text::shown(s, SHOWN_BYTES)
}

/// `30s`, `1500ms`, `2m`.
fn millis(ms: u64) -> String {
    match ms {
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms >= 1_000 && ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// Unix milliseconds as RFC 3339.
fn instant(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || ms.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
}

/// `HOSTNAME-PID`, made a valid consumer name.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '{' || c == '}' {
                '-'
            } else {
                c
            }
        })
        .take(100)
        .collect();
    let host = if host.is_empty() {
        "streamfold".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Set once Ctrl-C or SIGTERM arrives (both caught from the start, before any
/// event is fetched).
fn stop_signal() -> Result<tokio::sync::watch::Receiver<bool>> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(true);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn consume(store: &EventStore, a: ConsumeArgs) -> Result<()> {
    let (t, group) = (&a.g.aggregate_type, &a.g.group);
    let consumer = a.consumer.clone().unwrap_or_else(default_consumer);
    streamfold::validate_group_name("consumer", &consumer)?;
    // Fails early on an unknown group.
    store.group(t, group).await?;
    let mut stop = stop_signal()?;
    let (mut acked, mut nacked) = (0u64, 0u64);
    'fetching: while !*stop.borrow() {
        // A long poll by polling, so that a signal ends the wait at once (and never
        // drops a fetch whose events were handed out).
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let batch = loop {
            let got = store.fetch(t, group, &consumer, a.max).await?;
            let left = a.wait.saturating_sub(started.elapsed());
            if !got.is_empty() || left.is_zero() {
                break got;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left)) => {}
                _ = stop.changed() => break 'fetching,
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        if batch.is_empty() && a.once {
            break;
        }
        for d in &batch {
            if *stop.borrow() {
                // Not handled: back to the group at once.
                store
                    .nack(
                        t,
                        group,
                        &[&d.delivery],
                        NackAction::Retry(Duration::ZERO),
                        None,
                    )
                    .await?;
                continue;
            }
            match handle(&a.cmd, d).await {
                Ok(()) => {
                    store.ack(t, group, &[&d.delivery]).await?;
                    acked += 1;
                }
                Err(Failed::Handler(reason)) => {
                    tracing::warn!(
                        "{}/{}@{} ({}) nacked for retry (delivery {}): {}",
                        shown(&d.event.aggregate_type),
                        shown(&d.event.aggregate_id),
                        d.event.revision,
                        shown(&d.event.event_type),
                        d.delivery_count,
                        shown(&reason)
                    );
                    store
                        .nack(
                            t,
                            group,
                            &[&d.delivery],
                            NackAction::Retry(Duration::ZERO),
                            Some(&reason),
                        )
                        .await?;
                    nacked += 1;
                }
                Err(Failed::Spawn(e)) => {
                    let reason = format!("cannot run {}: {e}", a.cmd[0]);
                    let _ = store
                        .nack(
                            t,
                            group,
                            &[&d.delivery],
                            NackAction::Retry(Duration::ZERO),
                            Some(&reason),
                        )
                        .await;
                    return Err(e).with_context(|| format!("cannot run {:?}", a.cmd[0]));
                }
            }
        }
    }
    outln!(
        "consumed {} events: {acked} acked, {nacked} nacked",
        acked + nacked
    )?;
    Ok(())
}

enum Failed {
    /// The command ran and failed: the reason to nack with.
    Handler(String),
    /// The command could not be started.
    Spawn(std::io::Error),
}

/// Runs the command on one delivery: the event as JSON on its stdin, its stderr
/// passed on (its last line kept as the reason of a failure).
async fn handle(cmd: &[String], d: &Delivery) -> Result<(), Failed> {
    let e = &d.event;
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("STREAMFOLD_DELIVERY", &d.delivery)
        .env("STREAMFOLD_DELIVERY_COUNT", d.delivery_count.to_string())
        .env("STREAMFOLD_AGGREGATE_TYPE", &e.aggregate_type)
        .env("STREAMFOLD_AGGREGATE_ID", &e.aggregate_id)
        .env("STREAMFOLD_REVISION", e.revision.to_string())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Failed::Spawn)?;
    let json = serde_json::to_vec(e).expect("an event serializes");
    let mut stdin = child.stdin.take().expect("piped");
    // A command that does not read its input is not a failure of ours.
    let writing = tokio::spawn(async move {
        let _ = stdin.write_all(&json).await;
        let _ = stdin.write_all(b"\n").await;
    });
    let stderr = child.stderr.take().expect("piped");
    let last = last_line(stderr);
    let (status, last) = tokio::join!(child.wait(), last);
    let _ = writing.await;
    let status = status.map_err(Failed::Spawn)?;
    if status.success() {
        return Ok(());
    }
    let mut reason: String = last.trim().chars().take(MAX_REASON).collect();
    if reason.is_empty() {
        reason = format!("the command exited with {status}");
    }
    Err(Failed::Handler(reason))
}

/// Passes `stderr` on to ours and returns its last non-blank line (bounded).
async fn last_line(mut stderr: tokio::process::ChildStderr) -> String {
    const KEEP: usize = 4 * MAX_REASON;
    let (mut current, mut last) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 8192];
    let mut ours = tokio::io::stderr();
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = ours.write_all(&buf[..n]).await;
        for &b in &buf[..n] {
            if b == b'\n' {
                if current.iter().any(|c: &u8| !c.is_ascii_whitespace()) {
                    last = std::mem::take(&mut current);
                }
                current.clear();
            } else if current.len() < KEEP {
                current.push(b);
            }
        }
    }
    let _ = ours.flush().await;
    if current.iter().any(|c| !c.is_ascii_whitespace()) {
        last = current;
    }
    String::from_utf8_lossy(&last).into_owned()
}
