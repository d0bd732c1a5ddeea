//! The status of a projection and of its serving and active versions, as any host
//! sees it (everything is read from Redis: the version's status and lease, the
//! source heads, the rate its runner last wrote).

use serde::Serialize;
use streamfold_store::{Checkpoint, LeaseHolder, ProjectionFailure};

use super::{OnError, RegisteredProjection, registry};
use crate::Runtime;
use crate::error::Result;

/// A version whose runner is less than this far behind its sources (by time, ms)
/// is live: under a steady stream of appends it is seldom exactly caught up.
pub const LIVE_LAG_MS: u64 = 1_000;

/// What a projection version is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// A runner holds its lease and it is behind its sources.
    CatchingUp,
    /// A runner holds its lease and it has folded everything there is, or is less
    /// than [`LIVE_LAG_MS`] behind.
    Live,
    /// No runner holds its lease (no host runs projections, or it is neither the
    /// serving nor the active version).
    Stopped,
    /// It stopped at an event (see `failure`); reads keep its last committed state.
    Failed,
}

/// One version's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionStatus {
    /// The version id: the component's digest.
    pub vid: String,
    /// The component's semantic version.
    pub version: String,
    /// Whether reads follow it.
    pub serving: bool,
    /// Whether it is the version hosts build and keep up to date.
    pub active: bool,
    /// What it is doing.
    pub state: RunState,
    /// The checkpoint: the last position folded per source partition stream.
    pub position: Checkpoint,
    /// Source events folded (dead-lettered ones included) since it was built.
    pub events: u64,
    /// Lag **by time**, ms: how much older the position is than the newest source
    /// event (by the milliseconds of their stream ids), the largest over its
    /// source partitions; 0 when caught up. (Counting events behind is not cheap
    /// on a stream.)
    pub lag_ms: u64,
    /// How many source events it has not folded yet; `None` when it cannot tell (a
    /// version first run by an older host).
    pub lag_events: Option<u64>,
    /// Whether it has folded every source event there is.
    pub caught_up: bool,
    /// Events folded per second, as its runner last measured it (every third of
    /// the lease time); 0 when no runner holds it.
    pub events_per_second: f64,
    /// When it last committed, Unix ms.
    pub last_commit_ms: Option<u64>,
    /// Where it stopped, and why (the event's position, aggregate and type; the
    /// error bounded and escaped).
    pub failure: Option<ProjectionFailure>,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// Dead letters ever committed (since it was last rebuilt).
    pub dead_letters_total: u64,
    /// Which host runs it (the lease holder).
    pub runner: Option<LeaseHolder>,
    /// Set when the category trim had dropped source events before this version
    /// read them: events before the trim point are not in its read model.
    pub trimmed: Option<String>,
    /// Its change head (the ETag of its read model, with the vid).
    pub head: Option<String>,
}

/// A projection: its versions, pointers, failure policy, and the status of its
/// serving and active versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionSummary {
    /// Its name.
    pub name: String,
    /// The version reads follow (none until its first version caught up).
    pub serving: Option<String>,
    /// The version hosts build and keep up to date.
    pub active: Option<String>,
    /// What it does when it fails on an event.
    pub on_error: OnError,
    /// Every registered version, oldest first.
    pub versions: Vec<RegisteredProjection>,
    /// The status of the serving and the active version (one entry when they are
    /// the same), serving first.
    pub status: Vec<VersionStatus>,
}

impl ProjectionSummary {
    /// The status of the serving version.
    pub fn serving_status(&self) -> Option<&VersionStatus> {
        self.status.iter().find(|s| s.serving)
    }

    /// The status of the active version.
    pub fn active_status(&self) -> Option<&VersionStatus> {
        self.status.iter().find(|s| s.active)
    }
}

pub(crate) async fn summary(rt: &Runtime, name: &str) -> Result<ProjectionSummary> {
    let info = rt.store().projection_info(name).await?;
    let versions = registry::versions(rt, name).await?;
    let on_error = registry::on_error(rt, name).await?;
    let mut wanted: Vec<&String> = info.serving.iter().chain(info.active.iter()).collect();
    wanted.dedup();
    let mut status = Vec::new();
    for vid in wanted {
        let Some(reg) = versions.iter().find(|v| &v.info.digest == vid) else {
            continue;
        };
        status.push(version_status(rt, name, reg).await?);
    }
    Ok(ProjectionSummary {
        name: name.to_owned(),
        serving: info.serving,
        active: info.active,
        on_error,
        versions,
        status,
    })
}

async fn version_status(
    rt: &Runtime,
    name: &str,
    reg: &RegisteredProjection,
) -> Result<VersionStatus> {
    let vid = &reg.info.digest;
    let store = rt.store();
    let version = store.projection(name, vid)?;
    let s = version.status().await?;
    let types: Vec<&str> = reg.info.sources.iter().map(String::as_str).collect();
    let sources = store.projection_sources(&types).await?;
    let lag = store.projection_lag(&sources, &s.checkpoint).await?;
    let caught_up = lag.iter().all(|l| l.caught_up);
    let lag_ms = lag.iter().map(|l| l.behind_ms).max().unwrap_or(0);
    // In events: what each stream holds beyond what was gone before the version
    // first folded from it, less what it folded; a stream not folded from yet
    // counts all it holds. Unknown without the bases (a version folded by an
    // older host).
    let bases = registry::bases(rt, name, vid).await?;
    let mut available = Some(0u64);
    for l in &lag {
        let here = match (&l.position, bases.get(&l.stream)) {
            (None, _) => Some(l.length),
            (Some(_), Some(base)) => Some(l.added.saturating_sub(*base)),
            (Some(_), None) => None,
        };
        available = available.zip(here).map(|(a, b)| a + b);
    }
    let lag_events = if caught_up {
        Some(0)
    } else {
        available.map(|a| a.saturating_sub(s.events))
    };
    let state = if s.failure.is_some() {
        RunState::Failed
    } else if s.lease.is_none() {
        RunState::Stopped
    } else if caught_up || lag_ms < LIVE_LAG_MS {
        RunState::Live
    } else {
        RunState::CatchingUp
    };
    let fresh_ms = u64::try_from(rt.config().projection_lease_ttl.as_millis()).unwrap_or(0) * 2;
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let events_per_second = match registry::rate(rt, name, vid).await? {
        Some((eps, at)) if s.lease.is_some() && now.saturating_sub(at) <= fresh_ms => eps,
        _ => 0.0,
    };
    Ok(VersionStatus {
        vid: vid.clone(),
        version: reg.info.version.clone(),
        serving: reg.serving,
        active: reg.active,
        state,
        position: s.checkpoint,
        events: s.events,
        lag_ms,
        lag_events,
        caught_up,
        events_per_second,
        last_commit_ms: s.last_commit_ms,
        failure: s.failure,
        dead_letters: s.dead_letters,
        dead_letters_total: s.dead_letters_total,
        runner: s.lease,
        trimmed: registry::trimmed(rt, name, vid).await?,
        head: s.head,
    })
}
