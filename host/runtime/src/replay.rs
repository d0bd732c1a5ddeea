//! Replay: latest valid snapshot + the rest of the history, read in pages and
//! folded page by page in a reducer session (on a warm instance unless the runtime
//! or the plugin says fresh).
//!
//! Reading and folding overlap: a task fetches page N+1 from Redis while the
//! reducer (on tokio's blocking pool, since Wasmtime calls are synchronous)
//! folds page N. The channel between them holds two pages, which bounds memory
//! however long the history is.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use streamfold_sandbox::{Plugin, PluginInfo, Session, SessionEvent};
use streamfold_store::{History, Page, ReadOptions, Snapshot};
use tokio::sync::mpsc;

use crate::Runtime;
use crate::error::{Error, Result};
use crate::state_cache::Held;

/// Entries in the first page of a replay that may start from a snapshot: read while
/// the snapshot is looked up, so an aggregate this small (most are) costs one round
/// trip's wait, and thrown away when a snapshot is found.
const SPECULATIVE_PAGE: usize = 64;
/// A whole history of at most this many events is folded on the calling task...
const INLINE_EVENTS: usize = SPECULATIVE_PAGE;
/// ...with this budget per call into the reducer (the engine's epoch ticks every
/// 5 ms, so a reducer that overruns it is stopped within 10 ms), then on a blocking
/// thread with the full one.
const INLINE_BUDGET: std::time::Duration = std::time::Duration::from_millis(10);

/// What to replay, and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    at_revision: Option<u64>,
    as_of: Option<DateTime<Utc>>,
    use_snapshots: bool,
    plugin: Option<Arc<Plugin>>,
    instance: Pick,
}

/// Which instance a replay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// As the runtime's policy and the plugin say.
    Policy,
    /// A fresh one.
    Fresh,
    /// One that served another aggregate before.
    Warm,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            at_revision: None,
            as_of: None,
            use_snapshots: true,
            plugin: None,
            instance: Pick::Policy,
        }
    }
}

impl ReplayOptions {
    /// The state just after the event with this revision (time travel by revision).
    /// With [`as_of`](Self::as_of) too, the state when the first of the two was
    /// reached.
    pub fn at_revision(mut self, revision: u64) -> Self {
        self.at_revision = Some(revision);
        self
    }
    /// The state as of this instant: events appended at or before it (time travel by time).
    pub fn as_of(mut self, t: DateTime<Utc>) -> Self {
        self.as_of = Some(t);
        self
    }
    /// Whether to start from a snapshot (default: yes). Off replays every event,
    /// which is how to check a snapshot, or a reducer, from scratch.
    pub fn use_snapshots(mut self, on: bool) -> Self {
        self.use_snapshots = on;
        self
    }
    /// Replays through this plugin instead of the type's active one (to compare a
    /// candidate with the active version, say).
    pub fn plugin(mut self, plugin: Arc<Plugin>) -> Self {
        self.plugin = Some(plugin);
        self
    }

    /// Replays on a fresh instance, whatever the runtime's [`Instances`]
    /// policy (to tell whether a reducer's results depend on what its instance
    /// served before, say).
    ///
    /// [`Instances`]: crate::Instances
    pub fn fresh_instance(mut self, on: bool) -> Self {
        self.instance = if on { Pick::Fresh } else { Pick::Policy };
        self
    }

    /// Replays on an instance that has served another aggregate before, whatever
    /// the policy (the other side of [`fresh_instance`](Self::fresh_instance)).
    pub fn warm_instance(mut self, on: bool) -> Self {
        self.instance = if on { Pick::Warm } else { Pick::Policy };
        self
    }

    fn time_travel(&self) -> bool {
        self.at_revision.is_some() || self.as_of.is_some()
    }
}

/// A replayed state.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The state, exactly as the reducer serialized it (a JSON document).
    pub state: String,
    /// The revision of the last event the state includes.
    pub revision: u64,
    /// The stream position of that event.
    pub position: String,
    /// The reducer that made it.
    pub plugin: PluginInfo,
    /// The stored snapshot the state descends from, if any (its revision): the
    /// replay started from it, or from a state held in memory that did (see
    /// [`cached_revision`](Self::cached_revision)).
    pub snapshot_revision: Option<u64>,
    /// The revision of the state the runtime held in memory (its state cache, see
    /// [`RuntimeConfig::state_cache_bytes`](crate::RuntimeConfig)) that the replay
    /// started from, if it did: only the events after it were read and folded.
    pub cached_revision: Option<u64>,
    /// Events read from Redis after the snapshot (or the held state).
    pub events_read: u64,
    /// Of those, the events the reducer handles (the others were skipped).
    pub events_applied: u64,
    /// Whether this replay saved a new snapshot.
    pub snapshot_saved: bool,
}

pub(super) async fn replay(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    options: ReplayOptions,
) -> Result<Replayed> {
    let plugin = match &options.plugin {
        Some(p) => p.clone(),
        None => rt.active_plugin(aggregate_type).await?,
    };
    if plugin.info().aggregate_type != aggregate_type {
        return Err(Error::invalid(format!(
            "reducer {} folds {:?} aggregates, not {aggregate_type:?}",
            plugin.info().label(),
            plugin.info().aggregate_type
        )));
    }
    let digest = plugin.info().digest.as_str();
    let cache = rt.states();
    // The current state through the active reducer, as the runtime's policy says:
    // a state held in memory stands in for a snapshot (and is newer than any).
    // A chosen reducer or instance is there to be compared: it replays.
    let cacheable = cache.enabled()
        && !options.time_travel()
        && options.use_snapshots
        && options.plugin.is_none()
        && options.instance == Pick::Policy;
    let resumed = if cacheable {
        from_held(rt, aggregate_type, aggregate_id, plugin.clone(), false).await?
    } else {
        None
    };
    let (folded, snapshot_revision, cached_revision) = match resumed {
        Some((folded, _, held)) => (folded, held.stored_snapshot, Some(held.revision)),
        None => {
            let (folded, _, snapshot) = fold_history(
                rt,
                aggregate_type,
                aggregate_id,
                plugin.clone(),
                &options,
                false,
            )
            .await?;
            if folded.events_read == 0 && snapshot.is_none() {
                return Err(Error::not_found(
                    match (options.at_revision, options.as_of) {
                        (_, Some(t)) => {
                            format!(
                                "aggregate {aggregate_type}/{aggregate_id} as of {t} (no events by then)"
                            )
                        }
                        _ => format!("aggregate {aggregate_type}/{aggregate_id} (no events)"),
                    },
                ));
            }
            (folded, snapshot.map(|s| s.revision), None)
        }
    };

    // A revision not reached is missing, unless an instant came first.
    if let Some(r) = options
        .at_revision
        .filter(|r| folded.revision < *r && options.as_of.is_none())
    {
        return Err(Error::not_found(format!(
            "revision {r} of {aggregate_type}/{aggregate_id} (its last revision is {})",
            folded.revision
        )));
    }

    let mut replayed = Replayed {
        state: folded.state,
        revision: folded.revision,
        position: folded.position,
        plugin: plugin.info().clone(),
        snapshot_revision,
        cached_revision,
        events_read: folded.events_read,
        events_applied: folded.events_applied,
        snapshot_saved: false,
    };
    let since_snapshot = replayed.revision - replayed.snapshot_revision.unwrap_or(0);
    if !options.time_travel()
        && options.plugin.is_none()
        && rt
            .config()
            .snapshot_every
            .is_some_and(|n| since_snapshot >= n)
    {
        save_snapshot(rt, aggregate_type, aggregate_id, &replayed).await?;
        replayed.snapshot_saved = true;
    }
    if cacheable && let Some(event_id) = folded.last_event_id {
        cache.keep(
            aggregate_type,
            aggregate_id,
            digest,
            Held {
                state: replayed.state.clone(),
                revision: replayed.revision,
                position: replayed.position.clone(),
                event_id,
                stored_snapshot: if replayed.snapshot_saved {
                    Some(replayed.revision)
                } else {
                    replayed.snapshot_revision
                },
            },
        );
    }
    Ok(replayed)
}

/// The current state through `plugin` from the state the runtime holds for it, if
/// it holds one and that one is current (see [`resume`]); with the session if
/// `keep_session`, and the held entry it started from. `None` means: replay as
/// usual. A reducer that fails from its held state (on a new event, or one whose
/// restore cannot read its own state) gets that usual replay too, as it would
/// without the cache: the answer is that replay's.
pub(crate) async fn from_held(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    plugin: Arc<Plugin>,
    keep_session: bool,
) -> Result<Option<(Folded, Option<Session>, Arc<Held>)>> {
    let cache = rt.states();
    let digest = plugin.info().digest.clone();
    let Some(held) = cache.get(aggregate_type, aggregate_id, &digest) else {
        return Ok(None);
    };
    let resumed = match resume(
        rt,
        aggregate_type,
        aggregate_id,
        plugin,
        &held,
        keep_session,
    )
    .await
    {
        Err(e) if e.reducer_failure().is_some() => None,
        resumed => resumed?,
    };
    match resumed {
        Some((folded, session)) => Ok(Some((folded, session, held))),
        None => {
            cache.forget(aggregate_type, aggregate_id, &digest);
            Ok(None)
        }
    }
}

/// The current state from a state held in memory: one read from its last entry
/// (inclusive) that checks the entry is still there, the same event, and brings
/// what follows it, folded onto the held state if anything does (or if the session
/// is to be kept). `None` when the held state is stale.
async fn resume(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    plugin: Arc<Plugin>,
    held: &Held,
    keep_session: bool,
) -> Result<Option<(Folded, Option<Session>)>> {
    let mut history = rt.store().history(
        aggregate_type,
        aggregate_id,
        ReadOptions::new()
            .from_entry(held.position.clone(), held.revision)
            .first_page_size(SPECULATIVE_PAGE),
    );
    let Some(mut page) = history.next_page().await? else {
        return Ok(None);
    };
    let same = page.get(0).is_some_and(|e| {
        e.position == held.position && e.revision == held.revision && e.event_id == held.event_id
    });
    if !same {
        return Ok(None);
    }
    page.drop_first();
    if page.is_empty() && history.is_done() && !keep_session {
        // Nothing since: no reducer call at all.
        let folded = Folded {
            state: held.state.clone(),
            revision: held.revision,
            position: held.position.clone(),
            events_read: 0,
            events_applied: 0,
            last_event_id: None,
        };
        return Ok(Some((folded, None)));
    }
    let start = Snapshot::new(
        held.state.clone(),
        held.revision,
        held.position.clone(),
        plugin.info().digest.clone(),
    );
    let first = (!page.is_empty()).then_some(page);
    let folded = fold_from(
        rt,
        aggregate_type,
        aggregate_id,
        plugin,
        Pick::Policy,
        Some(&start),
        history,
        first,
        keep_session,
    )
    .await?;
    Ok(Some(folded))
}

/// The fold of [`replay`], for callers that go on with the session (live
/// subscriptions): the latest valid snapshot of `plugin` (as `options` allow), then
/// the rest of the history (to `options`' bound) in pages, folded on a blocking
/// thread. Returns what was folded, the session if `keep_session` (else it is dropped
/// on that thread), and the snapshot it started from. No checks, no snapshot saved.
pub(crate) async fn fold_history(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    plugin: Arc<Plugin>,
    options: &ReplayOptions,
    keep_session: bool,
) -> Result<(Folded, Option<Session>, Option<Snapshot>)> {
    let store = rt.store();
    let mut read = ReadOptions::default();
    if let Some(r) = options.at_revision {
        read = read.to_revision(r);
    }
    if let Some(t) = options.as_of {
        read = read.as_of(t);
    }
    // Most aggregates are small and have no snapshot. Ask for the snapshot and the
    // start of the history at once (both in flight together: one round trip's
    // wait), and keep that start unless a snapshot lets the replay begin later.
    // The first page is small, so reading it for nothing costs little.
    let mut history = store.history(
        aggregate_type,
        aggregate_id,
        read.clone().first_page_size(SPECULATIVE_PAGE),
    );
    let (snapshot, first) = if options.use_snapshots {
        let digest = &plugin.info().digest;
        let (snapshot, first) = tokio::join!(
            store.load_snapshot(aggregate_type, aggregate_id, digest),
            history.next_page()
        );
        let snapshot = snapshot?
            .filter(|s| options.at_revision.is_none_or(|r| s.revision <= r))
            .filter(|s| {
                options.as_of.is_none_or(|t| {
                    s.stored_at_ms().is_some_and(|ms| {
                        i64::try_from(ms).is_ok_and(|ms| ms <= t.timestamp_millis())
                    })
                })
            });
        match snapshot {
            Some(s) => {
                history = store.history(
                    aggregate_type,
                    aggregate_id,
                    read.after(s.position.clone(), s.revision),
                );
                (Some(s), history.next_page().await?)
            }
            None => (None, first?),
        }
    } else {
        (None, history.next_page().await?)
    };
    let (folded, session) = fold_from(
        rt,
        aggregate_type,
        aggregate_id,
        plugin,
        options.instance,
        snapshot.as_ref(),
        history,
        first,
        keep_session,
    )
    .await?;
    Ok((folded, session, snapshot))
}

/// Folds `start` (restored, if any), then `first` and the rest of `history`, on an
/// instance picked as `pick` says.
#[allow(clippy::too_many_arguments)]
async fn fold_from(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    plugin: Arc<Plugin>,
    pick: Pick,
    start: Option<&Snapshot>,
    mut history: History,
    first: Option<Page>,
    keep_session: bool,
) -> Result<(Folded, Option<Session>)> {
    let sandbox = rt.sandbox().clone();
    let (plugin_, id, snap) = (plugin.clone(), aggregate_id.to_string(), start.cloned());
    let aggregate_type_ = aggregate_type.to_string();
    let start = move || match pick {
        Pick::Policy => sandbox.session(plugin_.clone(), &aggregate_type_, &id),
        Pick::Fresh => sandbox.fresh_session(plugin_.clone(), &aggregate_type_, &id),
        Pick::Warm => sandbox.warm_session(plugin_.clone(), &aggregate_type_, &id),
    };
    // When the first page is the whole history, fold it in one blocking call with no
    // reader task.
    let folded = if history.is_done() {
        // A small history is folded right here, on the caller's task, within a
        // short budget: handing it to a blocking thread and back costs more than the
        // fold (two thread wake-ups; about half of the context switches of a state
        // read through the server). A reducer that overruns the budget (a spin, a
        // very slow one) is stopped and the replay starts over on a blocking
        // thread with the full budget: it is deterministic and writes nothing.
        if first.as_ref().is_none_or(|p| p.len() <= INLINE_EVENTS) {
            // The page is lent: a fallback folds it again.
            let mut page = first.as_ref().map(Ok);
            let inline = start().map_err(Error::from).and_then(|mut session| {
                let full = session.call_timeout();
                session.set_call_timeout(full.min(INLINE_BUDGET));
                let (folded, session) = fold(session, snap.as_ref(), || page.take(), keep_session)?;
                Ok((
                    folded,
                    session.map(|mut s| {
                        s.set_call_timeout(full);
                        s
                    }),
                ))
            });
            match inline {
                Err(e) if e.reducer_failure().is_some_and(|f| f.is_timeout()) => {}
                done => return done,
            }
        }
        let mut first = first.map(Ok);
        tokio::task::spawn_blocking(move || {
            fold(start()?, snap.as_ref(), || first.take(), keep_session)
        })
        .await
        .map_err(|e| Error::task("replay", e))
    } else {
        // Longer: a task fetches page N+1 while the reducer folds page N.
        let (tx, mut rx) = mpsc::channel::<streamfold_store::Result<Page>>(2);
        let fetch = tokio::spawn(async move {
            if let Some(page) = first
                && tx.send(Ok(page)).await.is_err()
            {
                return;
            }
            loop {
                let page = history.next_page().await;
                let last = !matches!(page, Ok(Some(_)));
                match page.transpose() {
                    Some(page) => {
                        if tx.send(page).await.is_err() || last {
                            break;
                        }
                    }
                    None => break,
                }
            }
        });
        let folded = tokio::task::spawn_blocking(move || {
            fold(start()?, snap.as_ref(), || rx.blocking_recv(), keep_session)
        })
        .await
        .map_err(|e| Error::task("replay", e));
        fetch.abort();
        folded
    };
    folded?
}

pub(super) async fn save_snapshot(
    rt: &Runtime,
    aggregate_type: &str,
    aggregate_id: &str,
    replayed: &Replayed,
) -> Result<()> {
    let snapshot = Snapshot::new(
        replayed.state.clone(),
        replayed.revision,
        replayed.position.clone(),
        replayed.plugin.digest.clone(),
    );
    rt.store()
        .save_snapshot(aggregate_type, aggregate_id, &snapshot)
        .await?;
    rt.states().snapshot_saved(
        aggregate_type,
        aggregate_id,
        &replayed.plugin.digest,
        replayed.revision,
    );
    Ok(())
}

pub(crate) struct Folded {
    pub(crate) state: String,
    pub(crate) revision: u64,
    pub(crate) position: String,
    pub(crate) events_read: u64,
    pub(crate) events_applied: u64,
    /// The id of the last event folded (`None` when none was).
    pub(crate) last_event_id: Option<String>,
}

/// Runs on a blocking thread: a session, the snapshot restored, every page
/// applied as it arrives, the state taken; the session kept if asked for.
fn fold<P: std::borrow::Borrow<Page>>(
    mut session: Session,
    snapshot: Option<&Snapshot>,
    mut next_page: impl FnMut() -> Option<streamfold_store::Result<P>>,
    keep_session: bool,
) -> Result<(Folded, Option<Session>)> {
    if let Some(s) = snapshot {
        session.restore(&s.state, s.revision, &s.position)?;
    }
    let mut events_read = 0u64;
    let mut last_event_id = None;
    while let Some(page) = next_page() {
        let page = page?;
        let page = page.borrow();
        events_read += page.len() as u64;
        if let Some(last) = page.last() {
            last_event_id = Some(last.event_id.to_owned());
        }
        session.apply(page.iter().map(|e| SessionEvent {
            revision: e.revision,
            position: e.position,
            event_id: e.event_id,
            event_type: e.event_type,
            data: e.data,
            timestamp: e.timestamp,
            version: e.version,
        }))?;
    }
    let folded = Folded {
        state: session.state()?,
        revision: session.revision(),
        position: session.position().to_owned(),
        events_read,
        events_applied: session.events_applied(),
        last_event_id,
    };
    Ok((folded, keep_session.then_some(session)))
}
