//! Running projections: [`Runtime::run_projections`] and the runner of one version.
//!
//! **The supervisor** (one per host, `run_projections`) re-reads the projection
//! registry every [`RuntimeConfig::projection_check_every`](crate::RuntimeConfig)
//! and keeps one runner task per wanted version: the serving and the active version
//! of every projection (two while a new version builds beside the serving one).
//! Versions no longer wanted are stopped (their lease released).
//!
//! **A runner** loops: take the version's lease (or wait while another host holds
//! it, trying again every fifth of the lease time), then work under it until the
//! lease is lost (a renewal says so, or a commit is fenced) or it is stopped. A
//! renewal task extends the lease every third of its time; a runner that cannot
//! renew for a whole lease time gives up. Under the lease:
//! 1. hold the source categories' trim at the checkpoint (so the trim never drops
//!    an event the version has not folded), and note whether the trim already got
//!    ahead of the checkpoint (status `trimmed`);
//! 2. read a page of the merged source partitions after the checkpoint, fold it in
//!    the sandbox on a fresh instance (a blocking thread; `get`s read the committed
//!    documents, from the runner's cache of the documents it read and committed
//!    under this lease when it has them, see `source::DocCache`), and commit the writes with the checkpoint advance in one fenced
//!    script (effectively once: a crash before the commit re-reads the same page);
//! 3. when a read finds nothing, the version is live: switch reads to it if it is
//!    the active version and another one serves, and wait for the categories to
//!    change (the store's shared `XREAD BLOCK` watchers; at most a second).
//!
//! **Failures.** A batch that fails names the event (or, for a trap or a limit, only
//! the batch: then it is halved until one event is left). The events before it are
//! committed; then, with `on_error: stop`, the failure is committed (status names
//! the event; reads keep the last commit) and the runner waits for a resume; with
//! `skip`, the event goes to the dead letters in the commit that moves past it.
//! Errors that are not the projection's (Redis away, a `get` that failed) are
//! retried with a growing pause, under the same lease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamfold_sandbox::{BatchWrites, DocumentSource, FailedProjectionEvent, Projection};
use streamfold_store::{
    CategoryWatch, Checkpoint, CommitBatch, DeadLetter, DocWrite, Lease, Pointer,
    ProjectionFailure as Stop, ProjectionVersion, SourceEvent, SourceStream,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::registry;
use super::source::{DocCache, StoreDocs, view};
use crate::Runtime;
use crate::error::{Error, Result};

/// The trim holder name of a version: `p:NAME:VID`.
pub(crate) fn trim_holder(name: &str, vid: &str) -> String {
    format!("p:{name}:{vid}")
}

/// The longest error text kept for a failure or a dead letter, in bytes (the store
/// takes 4,096 characters).
const ERROR_BYTES: usize = 2_000;

/// The longest wait of a live runner before it looks around (pointers, resume).
const IDLE: Duration = Duration::from_secs(1);

/// A runner task; dropping it aborts the task (a supervisor that is dropped or
/// aborted takes its runners with it).
struct RunnerHandle {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.join.abort();
    }
}

impl Runtime {
    /// Runs the projections until `shutdown` completes: every host may run this (a
    /// `serve`, a dedicated `projection run` process); the leases decide which one
    /// runs each version. Discovers activations by re-reading the registry every
    /// [`projection_check_every`](crate::RuntimeConfig::projection_check_every) and
    /// runs the serving and the active version of every projection, each under its
    /// lease (see the module docs of `projections::runner`). On shutdown, the runners
    /// stop and release their leases (another host takes over at once), then this
    /// returns. Dropping (aborting) the future instead stops the runners without
    /// releasing: another host takes over when the leases expire.
    ///
    /// One call at a time per runtime (its clones included): they would share one
    /// lease holder name and take the leases from each other. A second call while
    /// one runs is [invalid input](crate::ErrorKind::InvalidInput).
    pub async fn run_projections(&self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let _running = RunningFlag::take(self)?;
        let mut running: HashMap<(String, String), RunnerHandle> = HashMap::new();
        let mut stopping: Vec<RunnerHandle> = Vec::new();
        let mut tick = tokio::time::interval(self.config().projection_check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let wanted = match self.wanted_versions().await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("reading the projection registry: {e}");
                    continue;
                }
            };
            let gone: Vec<_> = running
                .iter()
                .filter(|(k, h)| !wanted.contains(*k) || h.join.is_finished())
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                if let Some(h) = running.remove(&k) {
                    let _ = h.stop.send(true);
                    stopping.push(h);
                }
            }
            stopping.retain(|h| !h.join.is_finished());
            for k in wanted {
                if running.contains_key(&k) {
                    continue;
                }
                let (stop, rx) = watch::channel(false);
                let join = tokio::spawn(run_version(self.clone(), k.0.clone(), k.1.clone(), rx));
                running.insert(k, RunnerHandle { stop, join });
            }
        }
        // Stop every runner, let each release its lease, wait (bounded) for them.
        let mut all: Vec<RunnerHandle> = running.into_values().chain(stopping).collect();
        for h in &all {
            let _ = h.stop.send(true);
        }
        let wait = self.config().projection_lease_ttl;
        let _ = tokio::time::timeout(wait, async {
            for h in &mut all {
                let _ = (&mut h.join).await;
            }
        })
        .await;
        Ok(())
    }

    /// `(name, vid)` of every serving and active version.
    async fn wanted_versions(&self) -> Result<HashSet<(String, String)>> {
        let mut out = HashSet::new();
        for info in self.store().list_projections().await? {
            for vid in info.serving.iter().chain(info.active.iter()) {
                out.insert((info.name.clone(), vid.clone()));
            }
        }
        Ok(out)
    }
}

/// Set while `run_projections` runs on a runtime; cleared when it ends or is dropped.
struct RunningFlag(Runtime);

impl RunningFlag {
    fn take(rt: &Runtime) -> Result<Self> {
        if rt.inner.running_projections.swap(true, Ordering::SeqCst) {
            return Err(Error::invalid(
                "this runtime runs its projections already (one run_projections at a time)",
            ));
        }
        Ok(RunningFlag(rt.clone()))
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0
            .inner
            .running_projections
            .store(false, Ordering::SeqCst);
    }
}

/// How a stint under one lease ended.
enum End {
    /// Told to stop: release the lease.
    Stopped,
    /// The lease is gone (expired, taken, reset): try to take it again.
    Lost,
}

/// Runs one version: takes its lease when free, works under it, until stopped.
async fn run_version(rt: Runtime, name: String, vid: String, mut stop: watch::Receiver<bool>) {
    let ttl = rt.config().projection_lease_ttl;
    let retry = (ttl / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let version = match rt.store().projection(&name, &vid) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(projection = %name, vid = %vid, "cannot run: {e}");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        // The supervisor's view may be a second old: never take the lease of a
        // version that is neither serving nor active any more (it may be removed,
        // and a runner would write its keys anew).
        match still_wanted(&rt, &name, &vid).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(projection = %name, vid = %vid, "reading the pointers: {e}");
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(retry) => {}
                }
                continue;
            }
        }
        // Compiled before the lease is taken: a standby host takes over at once.
        if let Err(e) = rt.projection_component(&vid).await {
            tracing::warn!(projection = %name, vid = %vid, "cannot load the component: {e}");
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        match version.acquire_lease(&rt.inner.holder, ttl).await {
            Ok(Some(lease)) => {
                tracing::info!(projection = %name, vid = %vid, token = lease.token, "lease taken");
                rt.count_projection(&name, &vid, |c| c.leases_taken += 1);
                match hold(&rt, &version, lease.clone(), &mut stop).await {
                    End::Stopped => {
                        let _ = version.release_lease(&lease).await;
                        return;
                    }
                    End::Lost => {
                        tracing::info!(projection = %name, vid = %vid, "lease lost");
                        rt.count_projection(&name, &vid, |c| c.leases_lost += 1);
                        continue;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(projection = %name, vid = %vid, "taking the lease: {e}"),
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// Whether `vid` is still the serving or the active version of `name`.
async fn still_wanted(rt: &Runtime, name: &str, vid: &str) -> Result<bool> {
    let store = rt.store();
    Ok(store
        .projection_pointer(name, Pointer::Active)
        .await?
        .as_deref()
        == Some(vid)
        || store
            .projection_pointer(name, Pointer::Serving)
            .await?
            .as_deref()
            == Some(vid))
}

/// Works under `lease` until it is lost or the runner is stopped.
async fn hold(
    rt: &Runtime,
    version: &ProjectionVersion,
    lease: Lease,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let events_done = Arc::new(AtomicU64::new(0));
    let renewer = tokio::spawn(renew(
        rt.clone(),
        version.clone(),
        lease.clone(),
        events_done.clone(),
    ));
    let mut renewer = AbortOnDrop(renewer);
    let mut worker = Worker {
        rt: rt.clone(),
        version: version.clone(),
        lease,
        events_done,
        component: None,
        sources: Vec::new(),
        last_look: None,
        resume_seen: 0,
        cache: Arc::new(Mutex::new(DocCache::new(0, false))),
    };
    let mut pause = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            _ = stop.changed() => return End::Stopped,
            _ = &mut renewer.0 => return End::Lost,
            r = worker.work() => r,
        };
        let Err(e) = outcome;
        if e.is_fenced() {
            return End::Lost;
        }
        tracing::warn!(
            projection = %version.name(),
            vid = %version.vid(),
            "projection runner error (retrying in {pause:?}): {e}"
        );
        tokio::select! {
            _ = stop.changed() => return End::Stopped,
            _ = &mut renewer.0 => return End::Lost,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every third of its time, and writes the runner's rate; returns
/// when the lease is lost (or could not be renewed for a whole lease time).
async fn renew(rt: Runtime, version: ProjectionVersion, lease: Lease, events: Arc<AtomicU64>) {
    let ttl = rt.config().projection_lease_ttl;
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    let mut last_count = 0u64;
    let mut last_at = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match version.renew_lease(&lease, ttl).await {
            Ok(true) => last_ok = Instant::now(),
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(projection = %version.name(), "renewing the lease: {e}");
                if last_ok.elapsed() >= ttl {
                    return;
                }
            }
        }
        let n = events.load(Ordering::Relaxed);
        let secs = last_at.elapsed().as_secs_f64();
        if secs > 0.0 {
            let eps = n.saturating_sub(last_count) as f64 / secs;
            let _ = registry::set_rate(&rt, version.name(), version.vid(), eps).await;
        }
        last_count = n;
        last_at = Instant::now();
    }
}

/// What a batch that failed says.
struct BatchFailure {
    /// The event (index into the page) when the projection named it.
    index: Option<usize>,
    /// Why, bounded and escaped.
    message: String,
}

/// How folding a page ended.
enum Folded {
    /// Everything in it is committed.
    Done,
    /// The projection stopped at an event (the failure is committed).
    Stopped,
}

struct Worker {
    rt: Runtime,
    version: ProjectionVersion,
    lease: Lease,
    events_done: Arc<AtomicU64>,
    component: Option<Arc<Projection>>,
    sources: Vec<SourceStream>,
    last_look: Option<Instant>,
    /// The projection's resume counter as last seen: a failure waits until it
    /// moves (a resume requested while a batch ran retries at once).
    resume_seen: u64,
    /// The committed documents this runner knows; made anew with each checkpoint
    /// read (at the start of `work`).
    cache: Arc<Mutex<DocCache>>,
}

impl Worker {
    fn name(&self) -> &str {
        self.version.name()
    }

    fn vid(&self) -> &str {
        self.version.vid()
    }

    /// Runs until an error (never returns otherwise).
    async fn work(&mut self) -> Result<Infallible> {
        let rt = self.rt.clone();
        let store = rt.store();
        self.resume_seen = registry::resume_generation(&rt, self.name()).await?;
        let component = rt.projection_component(self.vid()).await?;
        let types: Vec<String> = component.info().sources.clone();
        let type_refs: Vec<&str> = types.iter().map(String::as_str).collect();
        self.component = Some(component);
        self.sources = store.projection_sources(&type_refs).await?;
        let mut ckpt = self.version.checkpoint().await?;
        self.cache = Arc::new(Mutex::new(DocCache::new(
            rt.config().projection_cache_bytes,
            ckpt.is_empty(),
        )));
        let holder = trim_holder(self.name(), self.vid());
        for s in &self.sources {
            hold_trim(&rt, s, &holder, ckpt.get(&s.key).map(String::as_str)).await?;
        }
        let trimmed = store
            .trimmed_projection_sources(&self.sources, &ckpt)
            .await?;
        if !trimmed.is_empty() {
            let streams: Vec<&str> = trimmed.iter().map(|s| s.key.as_str()).collect();
            let text = format!(
                "the category trim dropped events of {} before this version read them: they are not in its read model",
                streams.join(", ")
            );
            tracing::warn!(projection = %self.name(), vid = %self.vid(), "{text}");
            registry::set_trimmed(&rt, self.name(), self.vid(), &text).await?;
        }
        let mut watches: Vec<CategoryWatch> = types
            .iter()
            .map(|t| store.watch_category(t))
            .collect::<std::result::Result<_, _>>()?;
        if let Some(failure) = self.version.status().await?.failure {
            // A resume asked for after the failure (while no runner ran, say) counts.
            let asked = registry::resume_asked_at(&rt, self.name()).await?;
            if asked.is_none_or(|at| at < failure.at_ms) {
                self.wait_resume().await?;
            }
        }
        let batch = rt.config().projection_batch.max(1);
        loop {
            for w in &mut watches {
                w.mark_seen();
            }
            let events = store
                .read_projection_sources(&self.sources, &ckpt, batch)
                .await?;
            if events.is_empty() {
                self.look_around().await?;
                let waits = watches.iter_mut().map(|w| Box::pin(w.changed(IDLE)));
                futures::future::select_all(waits).await;
                continue;
            }
            let reached_the_end = events.len() < batch;
            match self.fold(&mut ckpt, events).await? {
                Folded::Stopped => self.wait_resume().await?,
                // The page was not full: this is the end of the sources as they were
                // when read. Under a steady stream of appends a read is seldom empty,
                // so this counts as caught up too.
                Folded::Done if reached_the_end => self.look_around().await?,
                Folded::Done => {}
            }
        }
    }

    /// Caught up: if this is the active version and another one serves, switch
    /// reads to it (compare-and-set). At most twice a second.
    async fn look_around(&mut self) -> Result<()> {
        if self
            .last_look
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return Ok(());
        }
        self.last_look = Some(Instant::now());
        let store = self.rt.store();
        let active = store
            .projection_pointer(self.name(), Pointer::Active)
            .await?;
        let serving = store
            .projection_pointer(self.name(), Pointer::Serving)
            .await?;
        if active.as_deref() == Some(self.vid()) && serving.as_deref() != Some(self.vid()) {
            match store
                .set_projection_pointer(
                    self.name(),
                    Pointer::Serving,
                    serving.as_deref(),
                    Some(self.vid()),
                )
                .await
            {
                Ok(()) => tracing::info!(
                    projection = %self.name(),
                    vid = %self.vid(),
                    "caught up: reads switched to this version"
                ),
                Err(e) if e.is_conflict() => {} // moved meanwhile: look again later
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Waits until the projection's resume counter moves from the one last seen.
    async fn wait_resume(&mut self) -> Result<()> {
        loop {
            let now = registry::resume_generation(&self.rt, self.name()).await?;
            if now != self.resume_seen {
                self.resume_seen = now;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Folds one page, committing as it goes (see the module docs for failures).
    async fn fold(&mut self, ckpt: &mut Checkpoint, events: Vec<SourceEvent>) -> Result<Folded> {
        let events = Arc::new(events);
        let n = events.len();
        let mut start = 0;
        // While narrowing down a failure (or a batch too large to commit): the most
        // events to try at once. Kept after a success, so that a trap or a limit
        // somewhere ahead costs about log2(n) failed batches, not log2(n) squared.
        let mut window: Option<usize> = None;
        while start < n {
            let take = window.map_or(n - start, |w| w.clamp(1, n - start));
            let end = start + take;
            let failed_at = match self.apply(&events, start..end).await? {
                Ok(writes) => match self
                    .commit(ckpt, &events[start..end], Some(writes), None, None)
                    .await
                {
                    Ok(()) => {
                        start = end;
                        continue;
                    }
                    // Too much for one commit: smaller batches.
                    Err(e) if e.is_invalid_input() && take > 1 => {
                        window = Some(take / 2);
                        continue;
                    }
                    Err(e) if e.is_invalid_input() => {
                        (start, crate::text::shown(&e.to_string(), ERROR_BYTES))
                    }
                    Err(e) => return Err(e),
                },
                Err(failure) => match failure.index {
                    // Commit the events before it first.
                    Some(i) if i > start && i < end => {
                        window = Some(i - start);
                        continue;
                    }
                    Some(i) if i == start => (i, failure.message),
                    // A trap or a limit somewhere in the batch: narrow it down.
                    _ if take > 1 => {
                        window = Some(take / 2);
                        continue;
                    }
                    _ => (start, failure.message),
                },
            };
            let (at, message) = failed_at;
            if let Folded::Stopped = self.fail_one(ckpt, &events[at], message).await? {
                return Ok(Folded::Stopped);
            }
            start = at + 1;
            window = None;
        }
        Ok(Folded::Done)
    }

    /// The projection failed on `event` (the first one after the checkpoint): stop
    /// there, or dead-letter it and move on, as the projection's `on_error` says.
    async fn fail_one(
        &mut self,
        ckpt: &mut Checkpoint,
        event: &SourceEvent,
        message: String,
    ) -> Result<Folded> {
        match registry::on_error(&self.rt, self.name()).await? {
            super::OnError::Skip => {
                tracing::warn!(
                    projection = %self.name(),
                    vid = %self.vid(),
                    position = %event.event.position,
                    "event dead-lettered: {message}"
                );
                let dead = DeadLetter {
                    stream: event.stream.clone(),
                    event: event.event.clone(),
                    error: message,
                };
                self.commit(ckpt, std::slice::from_ref(event), None, Some(dead), None)
                    .await?;
                Ok(Folded::Done)
            }
            super::OnError::Stop => {
                tracing::error!(
                    projection = %self.name(),
                    vid = %self.vid(),
                    position = %event.event.position,
                    "projection stopped: {message}"
                );
                let stop = Stop::on(event.stream.clone(), &event.event, message);
                self.commit(ckpt, &[], None, None, Some(stop)).await?;
                Ok(Folded::Stopped)
            }
        }
    }

    /// Runs `range` of the page in the sandbox on a blocking thread.
    async fn apply(
        &self,
        events: &Arc<Vec<SourceEvent>>,
        range: Range<usize>,
    ) -> Result<std::result::Result<BatchWrites, BatchFailure>> {
        let component = self.component.clone().expect("loaded before folding");
        let events = events.clone();
        let docs: Arc<dyn DocumentSource> = Arc::new(StoreDocs {
            version: self.version.clone(),
            handle: tokio::runtime::Handle::current(),
            cache: self.cache.clone(),
        });
        let start = range.start;
        let result = tokio::task::spawn_blocking(move || {
            let views: Vec<_> = events[range].iter().map(view).collect();
            component.apply_batch(&views, docs)
        })
        .await
        .map_err(|e| Error::task("projection batch", e))?;
        match result {
            Ok(writes) => Ok(Ok(writes)),
            Err(e) => match e.projection_failure() {
                Some(f) => {
                    let index = match &f.event {
                        Some(FailedProjectionEvent::Event { index, .. }) => Some(start + index),
                        _ => None,
                    };
                    Ok(Err(BatchFailure {
                        index,
                        message: crate::text::shown(&f.cause.to_string(), ERROR_BYTES),
                    }))
                }
                None => Err(e.into()),
            },
        }
    }

    /// Commits `slice` (consecutive events right after the checkpoint) with the
    /// batch's writes, a dead letter or a failure, in one fenced step, and moves the
    /// trim holds of the streams it advanced.
    async fn commit(
        &mut self,
        ckpt: &mut Checkpoint,
        slice: &[SourceEvent],
        writes: Option<BatchWrites>,
        dead: Option<DeadLetter>,
        failure: Option<Stop>,
    ) -> Result<()> {
        let mut advance: Checkpoint = BTreeMap::new();
        for e in slice {
            advance.insert(e.stream.clone(), e.event.position.clone());
        }
        let position = slice
            .last()
            .map(|e| e.event.position.clone())
            .unwrap_or_default();
        let writes: Vec<DocWrite> = writes
            .map(|w| {
                w.writes
                    .into_iter()
                    .map(|(key, doc)| DocWrite {
                        key,
                        doc,
                        position: position.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let batch = CommitBatch {
            expected: ckpt.clone(),
            advance: advance.clone(),
            events: slice.len() as u64,
            writes,
            dead_letters: dead.into_iter().collect(),
            failure,
            changes_max_len: None,
        };
        // A stream folded from for the first time: note how many of its entries were
        // gone before (the lag in events counts from there). Nothing it has not
        // folded is trimmed meanwhile: its trim hold keeps them.
        let firsts: Vec<&SourceStream> = self
            .sources
            .iter()
            .filter(|s| advance.contains_key(&s.key) && !ckpt.contains_key(&s.key))
            .collect();
        if !firsts.is_empty() {
            let firsts: Vec<SourceStream> = firsts.into_iter().cloned().collect();
            for lag in self.rt.store().projection_lag(&firsts, ckpt).await? {
                let base = lag.added.saturating_sub(lag.length);
                registry::set_base(&self.rt, self.name(), self.vid(), &lag.stream, base).await?;
            }
        }
        let started = Instant::now();
        let outcome = self.version.commit(&self.lease, &batch).await?;
        // Committed: the written documents move into the cache.
        self.cache
            .lock()
            .expect("cache lock")
            .committed(batch.writes.into_iter().map(|w| (w.key, w.doc)));
        let took = started.elapsed().as_secs_f64();
        self.rt.count_projection(self.name(), self.vid(), |c| {
            c.batches += 1;
            c.events += slice.len() as u64;
            c.commit_seconds += took;
        });
        *ckpt = outcome.checkpoint;
        self.events_done
            .fetch_add(slice.len() as u64, Ordering::Relaxed);
        let holder = trim_holder(self.name(), self.vid());
        for (stream, position) in &advance {
            if let Some(s) = self.sources.iter().find(|s| &s.key == stream) {
                hold_trim(&self.rt, s, &holder, Some(position)).await?;
            }
        }
        Ok(())
    }
}

/// Holds a source partition's trim after `handled` (the seed layout has no holds:
/// nothing to do there).
async fn hold_trim(
    rt: &Runtime,
    s: &SourceStream,
    holder: &str,
    handled: Option<&str>,
) -> Result<()> {
    match rt
        .store()
        .hold_trim(&s.aggregate_type, s.partition, holder, handled)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_invalid_input() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
