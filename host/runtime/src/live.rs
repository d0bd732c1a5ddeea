//! Live state: an aggregate's events as they are appended, each with the state after
//! it, from one reducer session kept open for the subscription (see [`LiveState`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use streamfold_sandbox::{Plugin, PluginInfo, Session, SessionEvent};
use streamfold_store::{Live, RecordedEvent, SubscribeFrom, SubscribeOptions, Subscription};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Runtime;
use crate::error::{Error, Result};
use crate::replay::{ReplayOptions, fold_history, from_held};

/// Events folded in one call to the blocking pool, at most: what the store
/// subscription has ready, up to this many.
const MAX_BATCH: usize = 32;
/// Updates the task may compute ahead of the consumer.
const UPDATES_AHEAD: usize = 8;

/// What a [`LiveState`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveUpdate {
    /// The state the subscription starts from, before any event it delivers. Sent
    /// once, first.
    Start {
        /// The state, as the reducer serialized it (a JSON document).
        state: String,
        /// The revision of the last event it includes (0: none).
        revision: u64,
        /// The position the subscription continues after: the start position given,
        /// else the position of that last event; `None` from the beginning of the
        /// aggregate.
        position: Option<String>,
        /// The reducer that made it.
        plugin: PluginInfo,
    },
    /// An event, and the state right after it.
    Event {
        /// The event.
        event: RecordedEvent,
        /// The state after it.
        state: String,
    },
    /// Every event stored when the subscription started has been delivered; what
    /// follows is live (see [`Live::CaughtUp`]).
    CaughtUp {
        /// The revision of the last event delivered (or of the start state).
        revision: u64,
        /// Its position (see [`Live::CaughtUp`]).
        position: Option<String>,
    },
    /// The type's active reducer changed: the session was rebuilt with the new one
    /// (latest valid snapshot of it, then the history to the same revision). This is
    /// the state at that revision as the new reducer makes it; the states of the
    /// events that follow come from it.
    ReducerChanged {
        /// The state, as the new reducer serialized it.
        state: String,
        /// The revision of the last event it includes (the last one delivered).
        revision: u64,
        /// The position of that event (`None` if there is none yet).
        position: Option<String>,
        /// The new reducer.
        plugin: PluginInfo,
    },
}

/// A live subscription to an aggregate's state, from [`Runtime::subscribe_state`].
///
/// # What it yields
///
/// First [`LiveUpdate::Start`]: the state the subscription starts from. Then each event
/// stored after the start position, with the state after it ([`LiveUpdate::Event`]),
/// a [`LiveUpdate::CaughtUp`] at the boundary between what was already stored and
/// what is appended live, exactly as the store's [`Subscription`] delivers them (no
/// gap, no duplicate, across reconnects). Where it starts follows the options' start:
///
/// - [`SubscribeOptions::from_end`]: the current state (the latest valid snapshot of
///   the active reducer and a replay of the rest, as [`Runtime::state`] does), then the
///   events appended from then on;
/// - [`SubscribeOptions::after`]`(position)`: the state at that position (a client
///   resuming after the last event it saw), then the events after it;
/// - the default, the beginning: the reducer's empty state, then every event.
///
/// # How states are made
///
/// One reducer session is started for the subscription and kept: each new event is
/// applied to it incrementally (never a replay per event), and its state is taken
/// after each event the reducer handles (for one it skips, the previous state is
/// repeated). Reducer calls run on tokio's blocking pool, in batches of what the store
/// subscription has ready (up to 32 events), never on the async threads. So a pushed
/// state equals what [`Runtime::state`] at that revision gives, as long as the reducer
/// is deterministic.
///
/// If the reducer fails (its own error, a trap, a limit), the subscription yields that
/// error ([`Error::reducer_failure`] has the details) and ends. A failure of the store
/// subscription ends it the same way (see [`Subscription`] for what it retries).
///
/// # Hot reload
///
/// Before each batch of events the type's active reducer is checked (in memory when
/// the runtime follows activations, [`Runtime::follow_activations`]; otherwise one
/// small Redis read, as every [`Runtime::state`] call does). If it changed, the
/// session is rebuilt with the new reducer at the revision reached, a
/// [`LiveUpdate::ReducerChanged`] carries the new reducer's state there, and the batch
/// is folded by the new session. A change is noticed at the next event, not while the
/// aggregate is quiet. If the check itself fails (Redis away), the current session
/// goes on.
///
/// # Shape
///
/// A task per subscription computes updates into a channel of eight;
/// [`next`](Self::next) is cancel-safe and `LiveState` is a [`futures::Stream`] of
/// `Result<`[`LiveUpdate`]`>`. Dropping it ends the subscription (its session is
/// dropped on the blocking pool).
#[derive(Debug)]
pub struct LiveState {
    rx: mpsc::Receiver<Result<LiveUpdate>>,
    task: JoinHandle<()>,
    done: bool,
}

impl Drop for LiveState {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveState {
    /// The next update; `None` once the subscription has ended (after an error).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<LiveUpdate>> {
        std::future::poll_fn(|cx| self.poll_update(cx)).await
    }

    fn poll_update(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<LiveUpdate>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.rx.poll_recv(cx));
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        Poll::Ready(item)
    }
}

impl futures::Stream for LiveState {
    type Item = Result<LiveUpdate>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_update(cx)
    }
}

impl Runtime {
    /// Follows an aggregate's state live: a reducer session of the type's active
    /// reducer, started once where `options` say and fed each event as it is appended
    /// (see [`LiveState`]). `options` also tune the store subscription under it (page
    /// size, block timeout, how long to wait for Redis).
    ///
    /// Fails at once if the type has no active reducer, the arguments are bad, or the
    /// start state cannot be made (Redis unreachable, a reducer failure). The aggregate
    /// need not have events yet. Must be called within a tokio runtime.
    pub async fn subscribe_state(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        options: SubscribeOptions,
    ) -> Result<LiveState> {
        let store = self.store();
        // Validates the type and id before anything else is asked.
        store.keys(aggregate_type, aggregate_id)?;
        let plugin = self.active_plugin(aggregate_type).await?;
        let (replay, position) = match options.start() {
            SubscribeFrom::Beginning => (Some(ReplayOptions::default().at_revision(0)), None),
            SubscribeFrom::After { position, revision } => {
                let revision = match revision {
                    Some(r) => *r,
                    None => {
                        store
                            .revision_at(aggregate_type, aggregate_id, position)
                            .await?
                    }
                };
                let at = ReplayOptions::default().at_revision(revision);
                (Some(at), Some((position.clone(), revision)))
            }
            SubscribeFrom::End => (None, None),
            _ => {
                return Err(Error::invalid(
                    "a live state subscription cannot start there",
                ));
            }
        };
        // From the end: from the state the runtime holds, if it is current (as a
        // state read would), else the usual fold (a snapshot, then the history).
        let held = match replay {
            None => from_held(self, aggregate_type, aggregate_id, plugin.clone(), true).await?,
            Some(_) => None,
        };
        let (folded, session) = match held {
            Some((folded, session, _)) => (folded, session),
            None => {
                let (folded, session, _) = fold_history(
                    self,
                    aggregate_type,
                    aggregate_id,
                    plugin.clone(),
                    &replay.unwrap_or_default(),
                    true,
                )
                .await?;
                (folded, session)
            }
        };
        let session = session.expect("the fold keeps the session when asked");
        let session = OffThread(Some(session));
        // Where the store subscription continues: after the start position given, or
        // after the last event folded.
        let (after, revision) = match position {
            Some((position, revision)) => {
                if folded.revision < revision {
                    return Err(Error::not_found(format!(
                        "revision {revision} of {aggregate_type}/{aggregate_id} (its last revision is {})",
                        folded.revision
                    )));
                }
                (Some(position), revision)
            }
            None if folded.revision > 0 => (Some(folded.position.clone()), folded.revision),
            None => (None, 0),
        };
        let sub_options = match &after {
            Some(p) => options.after_revision(p.clone(), revision),
            None => options,
        };
        let sub = store
            .subscribe(aggregate_type, aggregate_id, sub_options)
            .await?;

        let start = LiveUpdate::Start {
            state: folded.state.clone(),
            revision,
            position: after,
            plugin: plugin.info().clone(),
        };
        let (tx, rx) = mpsc::channel(UPDATES_AHEAD);
        let follower = Follower {
            rt: self.clone(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sub,
            session,
            state: folded.state,
            tx,
        };
        let task = tokio::spawn(follower.run(start));
        Ok(LiveState {
            rx,
            task,
            done: false,
        })
    }
}

/// A session that is dropped on the blocking pool (freeing an instance resets its
/// memory), unless there is no runtime to drop it on.
struct OffThread(Option<Session>);

impl OffThread {
    fn get(&mut self) -> &mut Session {
        self.0
            .as_mut()
            .expect("a live session is only taken to be put back")
    }
}

impl Drop for OffThread {
    fn drop(&mut self) {
        if let Some(session) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn_blocking(move || drop(session));
        }
    }
}

struct Follower {
    rt: Runtime,
    aggregate_type: String,
    aggregate_id: String,
    sub: Subscription,
    session: OffThread,
    /// The state after the last event folded (repeated for events the reducer skips).
    state: String,
    tx: mpsc::Sender<Result<LiveUpdate>>,
}

/// Why the task stops: the consumer is gone, or the subscription failed.
enum Stop {
    Closed,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl Follower {
    async fn run(mut self, start: LiveUpdate) {
        let result = match self.send(start).await {
            Ok(()) => self.follow().await,
            Err(stop) => Err(stop),
        };
        if let Err(Stop::Failed(e)) = result {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn send(&mut self, update: LiveUpdate) -> Result<(), Stop> {
        self.tx.send(Ok(update)).await.map_err(|_| Stop::Closed)
    }

    async fn follow(&mut self) -> Result<(), Stop> {
        loop {
            let Some(first) = self.sub.next().await else {
                return Ok(()); // ended (only after an error, already passed on)
            };
            let mut batch = Vec::new();
            let mut after = None;
            match first {
                Ok(Live::Event(e)) => batch.push(e),
                other => after = Some(other),
            }
            // Whatever else is ready now, without waiting.
            while after.is_none() && batch.len() < MAX_BATCH {
                match self.sub.next().now_or_never() {
                    Some(Some(Ok(Live::Event(e)))) => batch.push(e),
                    Some(Some(other)) => after = Some(other),
                    Some(None) | None => break,
                }
            }
            if !batch.is_empty() {
                self.reload_if_changed().await?;
                self.fold(batch).await?;
            }
            match after {
                Some(Ok(Live::CaughtUp { position })) => {
                    let revision = self.session.get().revision();
                    self.send(LiveUpdate::CaughtUp { revision, position })
                        .await?;
                }
                Some(Err(e)) => return Err(Stop::Failed(e.into())),
                // Events were taken above; other signals mean nothing to a state.
                Some(Ok(_)) | None => {}
            }
        }
    }

    /// Folds a batch on the blocking pool and sends an update per event; a reducer
    /// failure is sent after the updates of the events before it.
    async fn fold(&mut self, batch: Vec<RecordedEvent>) -> Result<(), Stop> {
        let session = self.session.0.take().expect("a live session is in place");
        let state = std::mem::take(&mut self.state);
        let folded = tokio::task::spawn_blocking(move || fold_events(session, state, batch))
            .await
            .map_err(|e| Error::task("live state", e))?;
        let (session, state, updates, failure) = folded;
        self.session.0 = Some(session);
        self.state = state;
        for (event, state) in updates {
            self.send(LiveUpdate::Event { event, state }).await?;
        }
        match failure {
            Some(e) => Err(Stop::Failed(e)),
            None => Ok(()),
        }
    }

    /// Rebuilds the session if the type's active reducer is no longer the session's.
    async fn reload_if_changed(&mut self) -> Result<(), Stop> {
        let current = self.session.get().plugin().info().digest.clone();
        let active = match self.rt.active_digest(&self.aggregate_type).await {
            Ok(Some(d)) if d != current => d,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(
                    aggregate_type = %self.aggregate_type,
                    "checking the active reducer for a live state: {e}; keeping {current}"
                );
                return Ok(());
            }
        };
        let plugin: Arc<Plugin> = self.rt.plugin(&active).await?;
        let revision = self.session.get().revision();
        let (folded, session, _) = fold_history(
            &self.rt,
            &self.aggregate_type,
            &self.aggregate_id,
            plugin.clone(),
            &ReplayOptions::default().at_revision(revision),
            true,
        )
        .await?;
        let session = session.expect("fold_history keeps the session when asked");
        if session.revision() != revision {
            return Err(Stop::Failed(Error::corrupt(
                format!("{}/{}", self.aggregate_type, self.aggregate_id),
                format!(
                    "replaying to revision {revision} for the new reducer reached revision {}",
                    session.revision()
                ),
            )));
        }
        tracing::info!(
            aggregate_type = %self.aggregate_type,
            aggregate_id = %self.aggregate_id,
            plugin = %plugin.info().label(),
            revision,
            "live state continues with the newly active reducer"
        );
        // The old session is dropped on the blocking pool.
        let _old = std::mem::replace(&mut self.session, OffThread(Some(session)));
        self.state = folded.state.clone();
        self.send(LiveUpdate::ReducerChanged {
            state: folded.state,
            revision,
            position: (revision > 0).then_some(folded.position),
            plugin: plugin.info().clone(),
        })
        .await
    }
}

type FoldedBatch = (Session, String, Vec<(RecordedEvent, String)>, Option<Error>);

/// Runs on the blocking pool: each event applied, the state taken after it (or the
/// last one repeated, for an event the reducer skips).
fn fold_events(mut session: Session, mut state: String, batch: Vec<RecordedEvent>) -> FoldedBatch {
    let mut updates = Vec::with_capacity(batch.len());
    for event in batch {
        let applied = session.apply([SessionEvent {
            revision: event.revision,
            position: &event.position,
            event_id: &event.event_id,
            event_type: &event.event_type,
            data: &event.data,
            timestamp: &event.timestamp,
            version: &event.version,
        }]);
        let next = match applied {
            Ok(0) => Ok(state.clone()),
            Ok(_) => session.state(),
            Err(e) => Err(e),
        };
        match next {
            Ok(next) => {
                state = next;
                updates.push((event, state.clone()));
            }
            Err(e) => return (session, state, updates, Some(e.into())),
        }
    }
    (session, state, updates, None)
}
