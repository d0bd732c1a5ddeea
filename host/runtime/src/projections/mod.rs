//! Projections: register, activate and run projection components (the
//! `projection-plugin` world), effectively once, and read their read models.
//!
//! - [`registry`]: component bytes in the plugin blob store (by digest), version
//!   metadata in the store's projection registry (version id = digest), and a few
//!   runtime settings per projection (`on_error`, resume requests, rates).
//! - [`runner`]: [`Runtime::run_projections`], the supervisor every host runs: it
//!   finds the serving and active version of every projection, and runs each under
//!   its lease (one host at a time), catching up in pages, then following live.
//! - [`source`]: what a batch reads the read model from (the committed documents in
//!   Redis), and the conversion of source events for the sandbox.
//! - [`status`]: per projection and version: state, position, lag, rate, failure.
//!
//! The admin calls ([`Runtime::register_projection`], …) and the reads
//! ([`Runtime::projection_doc`], …) are here.

pub(crate) mod registry;
pub(crate) mod runner;
pub(crate) mod source;
pub(crate) mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamfold_sandbox::{Projection, ProjectionInfo};
use streamfold_store::{
    Change, ChangeFeed, MAX_CHANGES_PAGE, Pointer, ProjectionVersion, StoredDeadLetter,
};

use crate::Runtime;
use crate::error::{Error, Result};

pub use status::{LIVE_LAG_MS, ProjectionSummary, RunState, VersionStatus};

/// What a projection does when it fails on an event (its own error, a trap, a
/// limit): set per projection, at registration or activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the event: the status names it, reads keep serving the last committed
    /// state, and [`Runtime::resume_projection`] (or a fixed version) goes on.
    #[default]
    Stop,
    /// Record the event and the error in the version's dead letters (in the same
    /// commit as the events around it) and go on.
    Skip,
}

impl OnError {
    /// `"stop"` or `"skip"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Stop => "stop",
            OnError::Skip => "skip",
        }
    }
}

impl std::str::FromStr for OnError {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stop" => Ok(OnError::Stop),
            "skip" => Ok(OnError::Skip),
            other => Err(Error::invalid(format!(
                "on_error is \"stop\" or \"skip\", not {:?}",
                crate::text::shown(other, 64)
            ))),
        }
    }
}

impl std::fmt::Display for OnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`Runtime::register_projection`] treats a new projection version.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProjectionOptions {
    /// Make it the active version of its projection (hosts running projections build
    /// it, and switch reads to it once it has caught up). Default: true.
    pub activate: bool,
    /// Set the projection's failure policy (with `activate` only); `None` keeps the
    /// one in force (`stop` for a new projection).
    pub on_error: Option<OnError>,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            activate: true,
            on_error: None,
        }
    }
}

impl ProjectionOptions {
    /// Sets [`ProjectionOptions::activate`].
    pub fn activate(mut self, on: bool) -> Self {
        self.activate = on;
        self
    }
    /// Sets [`ProjectionOptions::on_error`].
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = Some(on_error);
        self
    }
}

/// A registered projection version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredProjection {
    /// What the component says it is, and its digest (the version id).
    #[serde(flatten)]
    pub info: ProjectionInfo,
    /// When it was registered (RFC 3339, UTC).
    pub registered_at: String,
    /// Whether it is the active version (the one hosts build and keep up to date).
    #[serde(default)]
    pub active: bool,
    /// Whether it is the serving version (the one reads follow).
    #[serde(default)]
    pub serving: bool,
}

/// A page of a projection's documents, from [`Runtime::projection_docs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionDocs {
    /// The serving version the page was read from.
    pub vid: String,
    /// `(key, JSON)` pairs in key order.
    pub docs: Vec<(String, String)>,
    /// The key to pass as `after` for the next page; `None` after the last one.
    pub next_after: Option<String>,
    /// An ETag for the page: the version and its change head (`vid:head`), read in
    /// the same step as the documents.
    pub etag: String,
}

/// One document of a projection, from [`Runtime::projection_doc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionDoc {
    /// The serving version it was read from.
    pub vid: String,
    /// The document (JSON text).
    pub doc: String,
    /// Its ETag: a hash of its text (equal texts, equal tags).
    pub etag: String,
}

/// One change of a projection's serving version, with a position to resume after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServingChange {
    /// Where to resume after this change: `vid/change-id` (an SSE event id).
    pub position: String,
    /// The change.
    #[serde(flatten)]
    pub change: Change,
}

/// A page of changes from a [`ProjectionChanges`] feed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServingChangesPage {
    /// The serving version they come from.
    pub vid: String,
    /// The changes, oldest first.
    pub changes: Vec<ServingChange>,
    /// Where to resume (the last change's position, or where the feed stands).
    pub position: Option<String>,
    /// Changes were missed: trimmed from the capped change stream, dropped by a
    /// rebuild, or the serving version switched (see `switched`). Read the model
    /// again.
    pub missed: bool,
    /// Reads switched to another version since the position resumed from: the
    /// changes that follow are the new version's, from its current head.
    pub switched: bool,
}

/// Follows the changes of a projection's serving version (for Server-Sent Events),
/// across switches of the serving version: from [`Runtime::watch_projection`].
#[derive(Debug)]
pub struct ProjectionChanges {
    runtime: Runtime,
    name: String,
    vid: String,
    feed: ChangeFeed,
    pending_switch: bool,
    count: usize,
    block: Duration,
}

impl ProjectionChanges {
    /// The position to resume after (`vid/change-id`), once there is one.
    pub fn position(&self) -> Option<String> {
        self.feed.position().map(|id| format!("{}/{id}", self.vid))
    }

    /// The next changes: at once if there are any, else after waiting up to the
    /// block timeout (then possibly none). Checks the serving pointer on every call:
    /// after a switch, the page says `switched` (and `missed`) and the feed goes on
    /// from the new version's head.
    pub async fn next(&mut self) -> Result<ServingChangesPage> {
        let serving = self
            .runtime
            .store()
            .projection_pointer(&self.name, Pointer::Serving)
            .await?;
        if let Some(now) = serving
            && now != self.vid
        {
            let version = self.runtime.store().projection(&self.name, &now)?;
            let head = version.head().await?;
            self.feed = version.watch_changes(head.as_deref(), self.count, self.block)?;
            self.vid = now;
            self.pending_switch = true;
        }
        let (page, switched) = if std::mem::take(&mut self.pending_switch) {
            let page = streamfold_store::ChangesPage {
                changes: Vec::new(),
                next: self.feed.position().map(str::to_owned),
                missed: true,
            };
            (page, true)
        } else {
            (self.feed.next().await?, false)
        };
        Ok(ServingChangesPage {
            vid: self.vid.clone(),
            changes: page
                .changes
                .into_iter()
                .map(|change| ServingChange {
                    position: format!("{}/{}", self.vid, change.id),
                    change,
                })
                .collect(),
            position: self.position(),
            missed: page.missed,
            switched,
        })
    }
}

/// Loaded projection components, by digest, and what this host's runners did.
#[derive(Default)]
pub(crate) struct Components(
    Mutex<HashMap<String, Arc<Projection>>>,
    Mutex<HashMap<(String, String), RunnerCounters>>,
);

/// What this host's runners did for one projection version since the runtime
/// started (for metrics: [`Runtime::projection_counters`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunnerCounters {
    /// Batches committed.
    pub batches: u64,
    /// Source events those batches folded.
    pub events: u64,
    /// Time spent in those commits (the fenced script call), seconds.
    pub commit_seconds: f64,
    /// Times this host took the version's lease.
    pub leases_taken: u64,
    /// Times it lost it (expired while paused, fenced at a commit).
    pub leases_lost: u64,
}

impl Runtime {
    /// What this host's runners did, per projection `(name, version id)`, since
    /// the runtime started.
    pub fn projection_counters(&self) -> Vec<(String, String, RunnerCounters)> {
        let map = self.inner.projections.1.lock().expect("runner counters");
        let mut out: Vec<_> = map
            .iter()
            .map(|((n, v), c)| (n.clone(), v.clone(), c.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Adds to the counters of projection version `(name, vid)`.
    pub(crate) fn count_projection(
        &self,
        name: &str,
        vid: &str,
        add: impl FnOnce(&mut RunnerCounters),
    ) {
        let mut map = self.inner.projections.1.lock().expect("runner counters");
        add(map.entry((name.to_owned(), vid.to_owned())).or_default());
    }
}

impl Runtime {
    /// Validates and compiles a projection component (or takes it from the caches),
    /// on tokio's blocking pool, without registering it.
    pub async fn load_projection(&self, bytes: Arc<[u8]>) -> Result<Arc<Projection>> {
        let digest = crate::digest(&bytes);
        if let Some(p) = self.projection_loaded(&digest) {
            return Ok(p);
        }
        let rt = self.clone();
        let p = tokio::task::spawn_blocking(move || rt.inner.sandbox.load_projection(&bytes))
            .await
            .map_err(|e| Error::task("projection loading", e))??
            .0;
        let mut map = self.inner.projections.0.lock().expect("projection map");
        Ok(map.entry(digest).or_insert(p).clone())
    }

    fn projection_loaded(&self, digest: &str) -> Option<Arc<Projection>> {
        self.inner
            .projections
            .0
            .lock()
            .expect("projection map")
            .get(digest)
            .cloned()
    }

    /// This runtime's name as a projection lease holder (as a version's status
    /// names its runner): host, process id and a random part.
    pub fn projection_holder(&self) -> &str {
        &self.inner.holder
    }

    /// The registered projection component `digest`, loaded (from the blob store)
    /// and compiled.
    pub(crate) async fn projection_component(&self, digest: &str) -> Result<Arc<Projection>> {
        if let Some(p) = self.projection_loaded(digest) {
            return Ok(p);
        }
        let bytes: Arc<[u8]> = self.inner.registry.bytes(digest).await?.into();
        let p = self.load_projection(bytes).await?;
        if p.info().digest != digest {
            return Err(Error::corrupt(
                format!("plugin blob {digest}"),
                format!("its bytes hash to {}", p.info().digest),
            ));
        }
        Ok(p)
    }

    /// Validates a projection component (it must export the projection world),
    /// stores its bytes and registers it as a version of the projection its `info`
    /// names (version id: its digest). Unless the options say otherwise, makes it
    /// the active version: hosts running projections ([`Runtime::run_projections`])
    /// build it from position 0 under its own keys, and reads switch to it once it
    /// has caught up. Registering the same bytes again changes nothing.
    pub async fn register_projection(
        &self,
        bytes: Vec<u8>,
        options: ProjectionOptions,
    ) -> Result<RegisteredProjection> {
        let bytes: Arc<[u8]> = bytes.into();
        let component = self.load_projection(bytes.clone()).await?;
        let info = component.info().clone();
        let mut reg = registry::put(self, &info, &bytes).await?;
        if options.activate {
            self.activate_projection(&info.name, &info.digest, options.on_error)
                .await?;
        }
        let (serving, active) = registry::pointers(self, &info.name).await?;
        reg.active = active.as_deref() == Some(info.digest.as_str());
        reg.serving = serving.as_deref() == Some(info.digest.as_str());
        Ok(reg)
    }

    /// Makes a registered version (a digest, a digest prefix of 6+ hex digits, or a
    /// semantic version) the active one of projection `name`, and sets its failure
    /// policy if `on_error` says. Hosts running projections start building it (or
    /// catch it up from its checkpoint: activating an older version again is the
    /// rollback); reads switch to it once it has caught up.
    pub async fn activate_projection(
        &self,
        name: &str,
        digest_or_version: &str,
        on_error: Option<OnError>,
    ) -> Result<RegisteredProjection> {
        let mut reg = registry::resolve(self, name, digest_or_version).await?;
        if let Some(on_error) = on_error {
            registry::set_on_error(self, name, on_error).await?;
        }
        let vid = reg.info.digest.clone();
        for _ in 0..10 {
            let current = self
                .store()
                .projection_pointer(name, Pointer::Active)
                .await?;
            if current.as_deref() == Some(vid.as_str()) {
                break;
            }
            match self
                .store()
                .set_projection_pointer(name, Pointer::Active, current.as_deref(), Some(&vid))
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_conflict() => continue, // another client moved it: again
                Err(e) => return Err(e.into()),
            }
        }
        let (serving, active) = registry::pointers(self, name).await?;
        reg.active = active.as_deref() == Some(vid.as_str());
        reg.serving = serving.as_deref() == Some(vid.as_str());
        Ok(reg)
    }

    /// Rebuilds the active version of projection `name` from position 0, in place:
    /// its documents, checkpoint, counters, failure and dead letters are dropped in
    /// one step and its runner starts over (reads of it see the model build up
    /// again; to keep serving the old model meanwhile, register and activate a new
    /// version instead). Returns the version rebuilt.
    pub async fn rebuild_projection(&self, name: &str) -> Result<RegisteredProjection> {
        let (_, active) = registry::pointers(self, name).await?;
        let vid = active
            .ok_or_else(|| Error::not_found(format!("an active version of projection {name:?}")))?;
        let reg = registry::resolve(self, name, &vid).await?;
        // Hold the trim from the start again before the checkpoint goes.
        let holder = runner::trim_holder(name, &vid);
        for t in &reg.info.sources {
            for p in 0..self.store().config().partitions_of(t) {
                if let Err(e) = self.store().hold_trim(t, p, &holder, None).await
                    && !e.is_invalid_input()
                {
                    return Err(e.into());
                }
            }
        }
        registry::clear_trimmed(self, name, &vid).await?;
        registry::clear_bases(self, name, &vid).await?;
        self.store().projection(name, &vid)?.reset().await?;
        registry::request_resume(self, name).await?;
        Ok(reg)
    }

    /// Lets projection `name` go on after a failure (its versions that stopped at an
    /// event retry it: a failure that was not the projection's own doing, a time
    /// limit on a busy machine say, may pass now; a deterministic one stops again).
    pub async fn resume_projection(&self, name: &str) -> Result<()> {
        registry::pointers(self, name).await?;
        registry::request_resume(self, name).await
    }

    /// Removes a version of projection `name` (by digest, digest prefix or semantic
    /// version): its read model, checkpoint and registration, its trim holds, and its
    /// component bytes. The serving and the active version cannot be removed:
    /// activate another one (and let reads switch to it) first.
    pub async fn remove_projection(
        &self,
        name: &str,
        digest_or_version: &str,
    ) -> Result<RegisteredProjection> {
        let reg = registry::resolve(self, name, digest_or_version).await?;
        let vid = reg.info.digest.clone();
        let (serving, active) = registry::pointers(self, name).await?;
        if serving.as_deref() == Some(vid.as_str()) {
            return Err(Error::invalid(format!(
                "{} is the serving version of projection {name:?}: activate another version and let reads switch to it first",
                reg.info.label()
            )));
        }
        if active.as_deref() == Some(vid.as_str()) {
            return Err(Error::invalid(format!(
                "{} is the active version of projection {name:?}: activate another version first",
                reg.info.label()
            )));
        }
        let holder = runner::trim_holder(name, &vid);
        for t in &reg.info.sources {
            if let Err(e) = self.store().release_trim(t, &holder).await
                && !e.is_invalid_input()
            {
                return Err(e.into());
            }
        }
        self.store().remove_projection_version(name, &vid).await?;
        registry::forget_version(self, name, &vid).await?;
        self.inner
            .projections
            .0
            .lock()
            .expect("projection map")
            .remove(&vid);
        Ok(reg)
    }

    /// The registered version of projection `name` that `digest_or_version` names
    /// (a digest, a digest prefix of 6+ hex digits, or a semantic version), with
    /// whether it is active and serving.
    pub async fn projection_version(
        &self,
        name: &str,
        digest_or_version: &str,
    ) -> Result<RegisteredProjection> {
        let mut reg = registry::resolve(self, name, digest_or_version).await?;
        let (serving, active) = registry::pointers(self, name).await?;
        reg.active = active.as_deref() == Some(reg.info.digest.as_str());
        reg.serving = serving.as_deref() == Some(reg.info.digest.as_str());
        Ok(reg)
    }

    /// Every registered version of projection `name`, oldest first, with the active
    /// and serving ones marked.
    pub async fn projection_versions(&self, name: &str) -> Result<Vec<RegisteredProjection>> {
        registry::versions(self, name).await
    }

    /// Every projection, sorted by name, with its versions and the status of its
    /// serving and active versions.
    pub async fn list_projections(&self) -> Result<Vec<ProjectionSummary>> {
        let mut out = Vec::new();
        for info in self.store().list_projections().await? {
            out.push(status::summary(self, &info.name).await?);
        }
        Ok(out)
    }

    /// The status of projection `name`: its versions, and the state, position, lag,
    /// rate, failure and dead letters of its serving and active versions.
    pub async fn projection_status(&self, name: &str) -> Result<ProjectionSummary> {
        status::summary(self, name).await
    }

    /// Up to `count` dead letters (1 to 1,000) of a version of projection `name`
    /// (by digest, digest prefix or semantic version; `None`: the active one, else
    /// the serving one), after dead-letter id `after`, oldest first.
    pub async fn projection_dead_letters(
        &self,
        name: &str,
        digest_or_version: Option<&str>,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredDeadLetter>> {
        let vid = match digest_or_version {
            Some(v) => registry::resolve(self, name, v).await?.info.digest,
            None => {
                let (serving, active) = registry::pointers(self, name).await?;
                active.or(serving).ok_or_else(|| {
                    Error::not_found(format!("an active version of projection {name:?}"))
                })?
            }
        };
        Ok(self
            .store()
            .projection(name, &vid)?
            .dead_letters(after, count)
            .await?)
    }

    /// The version of projection `name` that reads follow.
    pub async fn serving_version(&self, name: &str) -> Result<ProjectionVersion> {
        let (serving, _) = registry::pointers(self, name).await?;
        let vid = serving.ok_or_else(|| {
            Error::not_found(format!(
                "a serving version of projection {name:?} (its first version has not caught up yet)"
            ))
        })?;
        Ok(self.store().projection(name, &vid)?)
    }

    /// The document at `key` of projection `name`'s serving version, with an ETag;
    /// `None` when there is none.
    pub async fn projection_doc(&self, name: &str, key: &str) -> Result<Option<ProjectionDoc>> {
        let version = self.serving_version(name).await?;
        Ok(version.get(key).await?.map(|doc| ProjectionDoc {
            vid: version.vid().to_owned(),
            etag: crate::digest(doc.as_bytes())[..32].to_owned(),
            doc,
        }))
    }

    /// Up to `limit` documents (1 to 1,000) of projection `name`'s serving version
    /// whose keys start with `prefix`, after key `after`, in key order.
    pub async fn projection_docs(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ProjectionDocs> {
        let version = self.serving_version(name).await?;
        let page = version.page(prefix, after, limit).await?;
        Ok(ProjectionDocs {
            vid: version.vid().to_owned(),
            etag: format!(
                "{}:{}",
                version.vid(),
                page.head.as_deref().unwrap_or("0-0")
            ),
            docs: page.docs,
            next_after: page.next_after,
        })
    }

    /// Follows the document changes of projection `name`'s serving version, after
    /// `after` (a position from an earlier [`ServingChange`]; `None`: from now), up
    /// to `count` changes a page (1 to 1,000), waiting up to `block` when there are
    /// none. A position of another version than the serving one (reads switched
    /// meanwhile) resumes at the serving version's head with `switched` set.
    pub async fn watch_projection(
        &self,
        name: &str,
        after: Option<&str>,
        count: usize,
        block: Duration,
    ) -> Result<ProjectionChanges> {
        if !(1..=MAX_CHANGES_PAGE).contains(&count) {
            return Err(Error::invalid(format!(
                "a read takes 1 to {MAX_CHANGES_PAGE} changes, not {count}"
            )));
        }
        let version = self.serving_version(name).await?;
        let vid = version.vid().to_owned();
        let (start, switched) = match after {
            None => (version.head().await?, false),
            Some(position) => {
                let (pvid, id) = position.split_once('/').ok_or_else(|| {
                    Error::invalid(format!(
                        "{:?} is not a projection change position (vid/change-id)",
                        crate::text::shown(position, 128)
                    ))
                })?;
                if pvid == vid {
                    (Some(id.to_owned()), false)
                } else {
                    (version.head().await?, true)
                }
            }
        };
        let feed = version.watch_changes(start.as_deref(), count, block)?;
        Ok(ProjectionChanges {
            runtime: self.clone(),
            name: name.to_owned(),
            vid,
            feed,
            pending_switch: switched,
            count,
            block,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_error_parses_and_shows() {
        assert_eq!("skip".parse::<OnError>().unwrap(), OnError::Skip);
        assert_eq!("stop".parse::<OnError>().unwrap(), OnError::Stop);
        assert!("ignore".parse::<OnError>().unwrap_err().is_invalid_input());
        assert_eq!(OnError::default().to_string(), "stop");
        assert_eq!(serde_json::to_string(&OnError::Skip).unwrap(), "\"skip\"");
    }

    #[test]
    fn trim_holders_name_the_version() {
        assert_eq!(runner::trim_holder("orders", "ab12"), "p:orders:ab12");
    }
}
