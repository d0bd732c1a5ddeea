//! The conformance suite: every reducer of an aggregate type, whatever language it
//! is written in, replays the same table of histories in the real host and must
//! agree with the expected states and errors.
//!
//! The tables are data, one file per type (`tests/conformance/<type>.json`); see
//! `tests/conformance/README.md` for their format. For each case, each reducer:
//!
//! - replays the history from scratch on a warm instance (one that served the
//!   cases before it), and again on a fresh one, which must print the same bytes;
//!   the state must equal the expected one after
//!   JSON normalisation (parsed and printed again by serde_json: key order kept,
//!   integers exact up to 64 bits), or the replay must fail with the expected error
//!   kind at the expected revision (and message, when the case gives one);
//! - must print exactly the bytes the Rust reducer prints (unless the case says
//!   `"same_bytes": false`);
//! - replays it again from a snapshot (`Runtime::snapshot` half way, the rest
//!   appended after), which must give the same state.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration as TimeDelta, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use streamfold::{ExpectedRevision, MAX_BATCH, NewEvent};
use streamfold::{FailedEvent, FailureCause, Plugin};
use streamfold::{RegisterOptions, ReplayOptions, Runtime, RuntimeConfig};
use streamfold_test_support::Env;
use streamfold_tests::plugins;

/// One table: `tests/conformance/<type>.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(rename = "//", default)]
    _comment: Option<Value>,
    aggregate_type: String,
    handles: Vec<String>,
    cases: Vec<Case>,
}

/// One history and what it must give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Events: `[type, data]`, `{"type", "data" | "data_text", "version", "at"}`, or
    /// `{"repeat": n, "events": [...]}` (with `{n}` in data replaced by 1..=n).
    events: Vec<Box<RawValue>>,
    /// The expected state, when the replay must succeed: JSON, or its text as a
    /// JSON string.
    state: Option<Box<RawValue>>,
    /// The expected failure, when it must not.
    error: Option<ExpectedError>,
    /// Whether every reducer must print the Rust reducer's very bytes. Default: yes.
    #[serde(default = "yes")]
    same_bytes: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    /// `invalid-data`, `invalid-snapshot` or `rule-violation`.
    kind: String,
    /// The failing event's revision.
    revision: u64,
    /// The exact message, if every reducer must give the same.
    message: Option<String>,
}

/// One event spelled out in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullEvent {
    #[serde(rename = "type")]
    event_type: String,
    data: Option<Box<RawValue>>,
    /// The payload as text, for payloads that are not JSON (or not JSON the store
    /// accepts): such histories are written to Redis directly.
    data_text: Option<String>,
    /// The schema version.
    version: Option<String>,
    /// The append time (RFC 3339); default: 06:00:00 plus the revision in seconds.
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeat {
    repeat: u64,
    events: Vec<Box<RawValue>>,
}

/// An event of a case, expanded.
#[derive(Debug, Clone)]
struct Event {
    event_type: String,
    data: String,
    version: Option<String>,
    /// Set by `events_of`.
    at: Option<DateTime<Utc>>,
}

/// The reducers of each type, the Rust reference first.
fn reducers(aggregate_type: &str) -> Vec<(&'static str, &'static str)> {
    match aggregate_type {
        "user" => vec![
            ("user (Rust)", plugins::USER),
            ("user-js (JavaScript)", plugins::USER_JS),
            ("user-py (Python)", plugins::USER_PY),
        ],
        "cart" => vec![
            ("cart (Rust)", plugins::CART),
            ("cart-py (Python)", plugins::CART_PY),
        ],
        other => panic!("no reducers listed for {other:?}"),
    }
}

/// Expands `{{N*TEXT}}` (TEXT repeated N times) and `{n}` (the repetition).
fn expand(text: &str, n: Option<u64>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").expect("{{ without }}") + start;
        let (count, unit) = rest[start + 2..end]
            .split_once('*')
            .expect("{{N*TEXT}} needs a '*'");
        out.push_str(&rest[..start]);
        out.push_str(&unit.repeat(count.parse().expect("{{N*TEXT}}: N is a number")));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    match n {
        Some(n) => out.replace("{n}", &n.to_string()),
        None => out,
    }
}

fn expand_events(specs: &[Box<RawValue>], n: Option<u64>, out: &mut Vec<Event>) {
    for spec in specs {
        let text = spec.get();
        if text.starts_with('[') {
            let (event_type, data): (String, Box<RawValue>) =
                serde_json::from_str(text).expect("an event is [type, data]");
            out.push(Event {
                event_type,
                data: expand(data.get(), n),
                version: None,
                at: None,
            });
        } else if text.contains("\"repeat\"") && !text.contains("\"type\"") {
            let group: Repeat = serde_json::from_str(text).expect("a repeat group");
            for i in 1..=group.repeat {
                expand_events(&group.events, Some(i), out);
            }
        } else {
            let e: FullEvent = serde_json::from_str(text).expect("an event");
            let data = match (&e.data, &e.data_text) {
                (Some(d), None) => d.get().to_owned(),
                (None, Some(t)) => t.clone(),
                _ => panic!("an event has one of data and data_text: {text}"),
            };
            out.push(Event {
                event_type: e.event_type,
                data: expand(&data, n),
                version: e.version,
                at: e.at.map(|at| {
                    DateTime::parse_from_rfc3339(&at)
                        .expect("at is RFC 3339")
                        .to_utc()
                }),
            });
        }
    }
}

fn events_of(case: &Case) -> Vec<Event> {
    let mut events = Vec::new();
    expand_events(&case.events, None, &mut events);
    let start: DateTime<Utc> = "2026-11-26T06:00:00Z".parse().expect("a time");
    for (i, e) in (1..).zip(events.iter_mut()) {
        e.at.get_or_insert(start + TimeDelta::seconds(i));
    }
    events
}

fn new_event(e: &Event) -> Option<NewEvent> {
    let mut ne = NewEvent::from_json_text(&e.event_type, &e.data)
        .ok()?
        .with_timestamp(e.at.expect("set by events_of"));
    if let Some(v) = &e.version {
        ne = ne.with_version(v);
    }
    Some(ne)
}

/// Appends `events` to `type/id`: through the store, or, if the store refuses a
/// payload (not JSON), written to the aggregate's stream directly, as another
/// program could. Returns whether it went through the store.
async fn append(env: &Env, aggregate_type: &str, id: &str, events: &[Event]) -> bool {
    if let Some(batch) = events.iter().map(new_event).collect::<Option<Vec<_>>>() {
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let chunk: Vec<_> = batch.by_ref().take(MAX_BATCH).collect();
            env.store
                .append(aggregate_type, id, chunk, ExpectedRevision::Any)
                .await
                .expect("append");
        }
        return true;
    }
    let stream = env
        .store
        .keys(aggregate_type, id)
        .expect("valid keys")
        .stream;
    let mut con = env.raw().await;
    for (revision, e) in (1u64..).zip(events) {
        let fields = [
            ("event_id", uuid::Uuid::new_v4().to_string()),
            ("aggregate_type", aggregate_type.to_owned()),
            ("aggregate_id", id.to_owned()),
            ("event_type", e.event_type.clone()),
            ("data", e.data.clone()),
            (
                "timestamp",
                e.at.expect("set by events_of")
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("version", e.version.clone().unwrap_or_else(|| "1".into())),
            ("revision", revision.to_string()),
        ];
        let _: String = redis::AsyncCommands::xadd(&mut con, &stream, "*", &fields)
            .await
            .expect("XADD");
    }
    false
}

/// The state as serde_json prints it: compact, key order kept, numbers in its form.
fn normalise(state: &str) -> Result<String, String> {
    serde_json::from_str::<Value>(state)
        .map(|v| v.to_string())
        .map_err(|e| format!("not JSON ({e})"))
}

/// A short view of a long text.
fn clip(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_owned();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A runtime whose compiled code is shared by every test run (`target/test-code-cache`):
/// the JavaScript and Python components compile once, then load in milliseconds.
fn runtime(env: &Env) -> Runtime {
    let config = RuntimeConfig::default()
        .cache_dir(Some(plugins::code_cache_dir()))
        .snapshot_every(None);
    Runtime::new(env.store.clone(), config).expect("runtime starts")
}

/// Runs the table `tests/conformance/<aggregate_type>.json` over every reducer of
/// the type; panics with every disagreement found.
async fn conform(aggregate_type: &str) {
    let path = format!(
        "{}/conformance/{aggregate_type}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let table: Table = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(table.aggregate_type, aggregate_type);

    let env = Env::start().await;
    let rt = runtime(&env);
    let mut problems = Vec::new();
    let mut loaded: Vec<(&str, Vec<u8>, Arc<Plugin>)> = Vec::new();
    for (name, path) in reducers(aggregate_type) {
        let bytes = plugins::read(path);
        let (plugin, _) = rt
            .load_async(bytes.clone().into())
            .await
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        let info = plugin.info();
        if info.aggregate_type != table.aggregate_type || info.handles != table.handles {
            problems.push(format!(
                "{name}: info says aggregate type {:?}, handles {:?}; the table wants {:?}, {:?}",
                info.aggregate_type, info.handles, table.aggregate_type, table.handles
            ));
        }
        loaded.push((name, bytes, plugin));
    }

    // Every case, from scratch.
    let mut histories = Vec::new();
    for (index, case) in table.cases.iter().enumerate() {
        assert!(
            case.state.is_some() != case.error.is_some(),
            "case {:?}: give either a state or an error",
            case.name
        );
        let events = events_of(case);
        let id = format!("case-{index}");
        let stored = append(&env, aggregate_type, &id, &events).await;
        let expected = case.state.as_ref().map(|s| {
            // A JSON string is the state's text (for states the table cannot hold
            // as JSON before `{{N*TEXT}}` is expanded).
            let text = match serde_json::from_str::<String>(s.get()) {
                Ok(text) => text,
                Err(_) => s.get().to_owned(),
            };
            normalise(&expand(&text, None))
                .unwrap_or_else(|e| panic!("case {:?}: expected state is {e}", case.name))
        });
        let mut reference: Option<String> = None;
        for (name, _, plugin) in &loaded {
            let what = format!("case {:?} ({} events), {name}", case.name, events.len());
            let replayed = rt
                .state(
                    aggregate_type,
                    &id,
                    ReplayOptions::default()
                        .plugin(plugin.clone())
                        .use_snapshots(false),
                )
                .await;
            // That ran on a warm instance (the default, which served the cases
            // before); a fresh instance must print exactly the same state.
            if let Ok(r) = &replayed {
                let fresh = rt
                    .state(
                        aggregate_type,
                        &id,
                        ReplayOptions::default()
                            .plugin(plugin.clone())
                            .use_snapshots(false)
                            .fresh_instance(true),
                    )
                    .await;
                match fresh {
                    Ok(f) if f.state == r.state => {}
                    Ok(f) => problems.push(format!(
                        "{what}: a fresh instance prints\n      {}\n    a warm one\n      {}",
                        clip(&f.state),
                        clip(&r.state)
                    )),
                    Err(e) => problems.push(format!("{what}: fails on a fresh instance: {e}")),
                }
            }
            match (replayed, &expected, &case.error) {
                (Ok(r), Some(expected), _) => {
                    match normalise(&r.state) {
                        Ok(state) if &state == expected => {}
                        Ok(state) => problems.push(format!(
                            "{what}: state\n      {}\n    expected\n      {}",
                            clip(&state),
                            clip(expected)
                        )),
                        Err(e) => {
                            problems.push(format!("{what}: state is {e}: {}", clip(&r.state)))
                        }
                    }
                    if r.revision != events.len() as u64 {
                        problems.push(format!("{what}: replayed to revision {}", r.revision));
                    }
                    match &reference {
                        None => reference = Some(r.state),
                        Some(bytes) if case.same_bytes && *bytes != r.state => {
                            problems.push(format!(
                                "{what}: prints\n      {}\n    the Rust reducer prints\n      {}",
                                clip(&r.state),
                                clip(bytes)
                            ))
                        }
                        Some(_) => {}
                    }
                }
                (Ok(r), None, Some(want)) => problems.push(format!(
                    "{what}: replayed to {} instead of failing with {} at revision {}",
                    clip(&r.state),
                    want.kind,
                    want.revision
                )),
                (Err(err), _, Some(want)) => {
                    let failure = err.reducer_failure();
                    let got = failure.map(|f| (&f.cause, &f.event));
                    match got {
                        Some((
                            FailureCause::Rejected { reason, message },
                            Some(FailedEvent::Event { revision, .. }),
                        )) => {
                            let kind = serde_json::to_value(reason).expect("a kind");
                            if kind != want.kind.as_str()
                                || *revision != want.revision
                                || want.message.as_ref().is_some_and(|m| m != message)
                            {
                                problems.push(format!(
                                    "{what}: failed with {kind} at revision {revision} ({message:?}); expected {} at revision {}{}",
                                    want.kind,
                                    want.revision,
                                    want.message.as_ref().map(|m| format!(" ({m:?})")).unwrap_or_default()
                                ));
                            }
                        }
                        _ => problems.push(format!("{what}: failed in another way: {err}")),
                    }
                }
                (Err(err), Some(_), None) => problems.push(format!("{what}: failed: {err}")),
                (_, None, None) => unreachable!("checked above"),
            }
        }
        if stored && expected.is_some() && events.len() >= 2 {
            histories.push((index, events, expected));
        }
    }

    // Snapshot, then tail: half the history, a snapshot made by the runtime with the
    // reducer active, the other half appended; the replay from the snapshot must
    // give the same state.
    for (r, (name, bytes, plugin)) in loaded.iter().enumerate() {
        rt.register(bytes.clone(), RegisterOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name} does not register: {e}"));
        for (index, events, expected) in &histories {
            let case = &table.cases[*index].name;
            let what = format!("case {case:?}, {name}, from a snapshot");
            let id = format!("case-{index}-snapshot-{r}");
            let half = events.len() / 2;
            append(&env, aggregate_type, &id, &events[..half]).await;
            if let Err(e) = rt.snapshot(aggregate_type, &id).await {
                problems.push(format!("{what}: the snapshot failed: {e}"));
                continue;
            }
            append(&env, aggregate_type, &id, &events[half..]).await;
            let options = ReplayOptions::default().plugin(plugin.clone());
            match rt.state(aggregate_type, &id, options).await {
                Ok(r) if r.snapshot_revision != Some(half as u64) => problems.push(format!(
                    "{what}: started from the snapshot at {:?}, not at {half}",
                    r.snapshot_revision
                )),
                Ok(r) if normalise(&r.state).ok().as_ref() != expected.as_ref() => {
                    problems.push(format!(
                        "{what}: state\n      {}\n    expected\n      {}",
                        clip(&r.state),
                        clip(expected.as_deref().unwrap_or_default())
                    ))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{what}: failed: {e}")),
            }
        }
    }

    if !problems.is_empty() {
        let mut report = format!("{} disagreement(s) with {path}:\n", problems.len());
        for p in &problems {
            let _ = writeln!(report, "  - {p}");
        }
        panic!("{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_reducers_conform() {
    conform("user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_reducers_conform() {
    conform("cart").await;
}
