//! Replay-diff: run a candidate reducer side by side with the active one over
//! existing aggregates, before anything is activated.
//!
//! Each aggregate is replayed twice, concurrently with other aggregates: through
//! the active reducer (starting from its snapshots, which it made itself) and
//! through the candidate (from scratch: no snapshot is ever trusted across
//! digests). Nothing is written: replays through an explicit plugin never save
//! snapshots.
//!
//! The determinism guard: the candidate's replay runs on an instance that has
//! served another aggregate before, and once more on a fresh instance. A reducer
//! whose two states differ keeps state across aggregates (global variables): the
//! report says so, the verify fails, and the plugin is served on fresh instances
//! from then on ([`Plugin::serve_fresh`]).

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::{ReplayOptions, Runtime};
use streamfold_sandbox::ReducerFailure;
use streamfold_sandbox::{Plugin, PluginInfo};

/// Which aggregates to compare, and how hard to work.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    sample: Option<usize>,
    concurrency: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sample: Some(100),
            concurrency: 8,
        }
    }
}

impl VerifyOptions {
    /// Compare at most `n` aggregates (the first `n` found). Default 100.
    pub fn sample(mut self, n: usize) -> Self {
        self.sample = Some(n);
        self
    }
    /// Compare every aggregate of the type.
    pub fn all(mut self) -> Self {
        self.sample = None;
        self
    }
    /// Replays in flight at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

/// An aggregate whose state differs between the two reducers.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Difference {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The first differing field, as a JSON pointer (`/items/A/quantity`; `` for the root).
    pub path: String,
    /// Its value under the active reducer (`null` if absent).
    pub active: Value,
    /// Its value under the candidate (`null` if absent).
    pub candidate: Value,
}

/// An aggregate the candidate cannot replay.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandidateFailure {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The candidate's failure (typed), or another error's message.
    pub error: String,
    /// The structured failure, when the reducer itself failed.
    pub failure: Option<ReducerFailure>,
}

/// An aggregate whose state under the candidate depends on what the candidate's
/// instance served before: a fresh instance and a warm one disagree, so the
/// reducer keeps state across aggregates (in global variables, say).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateLeak {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The first differing field, as a JSON pointer.
    pub path: String,
    /// Its value on a fresh instance.
    pub fresh: Value,
    /// Its value on a warm instance that had served other aggregates.
    pub warm: Value,
}

/// The outcome of [`Runtime::verify`].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// The aggregate type verified.
    pub aggregate_type: String,
    /// The active reducer (none: nothing to compare with, only failures count).
    pub active: Option<PluginInfo>,
    /// The candidate.
    pub candidate: PluginInfo,
    /// Aggregates compared.
    pub checked: usize,
    /// Aggregates whose states are equal (as JSON values).
    pub agreed: usize,
    /// Aggregates whose states differ.
    pub differed: Vec<Difference>,
    /// Aggregates the candidate fails on.
    pub failed: Vec<CandidateFailure>,
    /// Aggregates whose candidate state differs between a fresh and a warm instance:
    /// the candidate keeps state across aggregates. Not empty: the verify fails, and
    /// the candidate is served on fresh instances in this process.
    pub keeps_state_across_aggregates: Vec<StateLeak>,
    /// Aggregates the active reducer itself fails on (not the candidate's fault;
    /// reported, and counted neither as agreeing nor as differing).
    pub active_failed: Vec<CandidateFailure>,
    /// Wall time of the whole comparison, in milliseconds.
    pub elapsed_ms: u128,
}

impl VerifyReport {
    /// Whether the candidate may be activated: nothing differs and nothing fails.
    pub fn passed(&self) -> bool {
        self.differed.is_empty()
            && self.failed.is_empty()
            && self.keeps_state_across_aggregates.is_empty()
    }
}

enum Outcome {
    Agree,
    Leak(StateLeak),
    Differ(Difference),
    CandidateFailed(CandidateFailure),
    ActiveFailed(CandidateFailure),
}

impl Runtime {
    /// Compares `candidate` with the active reducer of its aggregate type over
    /// existing aggregates. `progress(done, total)` is called as aggregates finish.
    pub async fn verify(
        &self,
        candidate: Arc<Plugin>,
        options: VerifyOptions,
        progress: impl Fn(usize, usize),
    ) -> Result<VerifyReport> {
        let started = std::time::Instant::now();
        let aggregate_type = candidate.info().aggregate_type.clone();
        let active = match self.active_plugin(&aggregate_type).await {
            Ok(p) => Some(p),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let ids = self
            .store()
            .aggregate_ids(&aggregate_type, options.sample)
            .await?;
        let total = ids.len();
        let mut report = VerifyReport {
            aggregate_type: aggregate_type.clone(),
            active: active.as_ref().map(|p| p.info().clone()),
            candidate: candidate.info().clone(),
            checked: 0,
            agreed: 0,
            differed: Vec::new(),
            failed: Vec::new(),
            keeps_state_across_aggregates: Vec::new(),
            active_failed: Vec::new(),
            elapsed_ms: 0,
        };
        let mut outcomes = futures::stream::iter(ids)
            .map(|id| {
                let (rt, t, candidate, active) = (
                    self.clone(),
                    aggregate_type.clone(),
                    candidate.clone(),
                    active.clone(),
                );
                async move { compare(&rt, &t, id, candidate, active).await }
            })
            .buffer_unordered(options.concurrency);
        while let Some(outcome) = outcomes.next().await {
            report.checked += 1;
            match outcome? {
                Outcome::Agree => report.agreed += 1,
                Outcome::Leak(l) => {
                    report.agreed += 1;
                    report.keeps_state_across_aggregates.push(l);
                }
                Outcome::Differ(d) => report.differed.push(d),
                Outcome::CandidateFailed(f) => report.failed.push(f),
                Outcome::ActiveFailed(f) => report.active_failed.push(f),
            }
            progress(report.checked, total);
        }
        report
            .differed
            .sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        report
            .failed
            .sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        report
            .keeps_state_across_aggregates
            .sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        if !report.keeps_state_across_aggregates.is_empty() {
            tracing::warn!(
                plugin = %candidate.info().label(),
                "the reducer keeps state across aggregates (a fresh and a warm instance disagree on {} of {} aggregates): it is served on fresh instances",
                report.keeps_state_across_aggregates.len(),
                report.checked
            );
            candidate.serve_fresh();
            // Every host, and this one after a restart, learns it from the registry.
            self.inner
                .registry
                .mark_fresh(&candidate.info().digest)
                .await?;
        }
        report.elapsed_ms = started.elapsed().as_millis();
        Ok(report)
    }
}

async fn compare(
    rt: &Runtime,
    aggregate_type: &str,
    id: String,
    candidate: Arc<Plugin>,
    active: Option<Arc<Plugin>>,
) -> Result<Outcome> {
    let failure = |id: &str, e: Error| CandidateFailure {
        aggregate_id: id.to_string(),
        error: e.to_string(),
        failure: e.reducer_failure().cloned(),
    };
    let fresh_run = rt.state(
        aggregate_type,
        &id,
        ReplayOptions::default()
            .plugin(candidate.clone())
            .fresh_instance(true),
    );
    let candidate_run = async {
        let (warm, fresh) = futures::join!(
            rt.state(
                aggregate_type,
                &id,
                ReplayOptions::default()
                    .plugin(candidate)
                    .warm_instance(true)
            ),
            fresh_run
        );
        (warm, fresh)
    };
    let ((theirs, fresh), ours) = match active {
        Some(active) => {
            let active_run = rt.state(aggregate_type, &id, ReplayOptions::default().plugin(active));
            let (theirs, ours) = futures::join!(candidate_run, active_run);
            (theirs, Some(ours))
        }
        None => (candidate_run.await, None),
    };
    // The same history on a fresh instance: a warm one must give the same state.
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    if let (Ok(warm), Ok(fresh)) = (&theirs, &fresh)
        && let Some((path, fresh, warm)) =
            first_difference(&parse(&fresh.state), &parse(&warm.state), String::new())
    {
        return Ok(Outcome::Leak(StateLeak {
            aggregate_id: id,
            path,
            fresh,
            warm,
        }));
    }
    // The aggregate vanished meanwhile: nothing to compare. Other errors (Redis) end
    // the verification.
    let settle = |r: Result<_>| match r {
        Ok(r) => Ok(Some(Ok(r))),
        Err(e) if e.is_reducer_failure() => Ok(Some(Err(e))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    };
    let (Some(theirs), ours) = (settle(theirs)?, ours.map(settle).transpose()?.flatten()) else {
        return Ok(Outcome::Agree);
    };
    let (theirs, ours) = match (theirs, ours) {
        // No active reducer: only the candidate's failures count.
        (Ok(_), None) => return Ok(Outcome::Agree),
        (Err(e), None) => return Ok(Outcome::CandidateFailed(failure(&id, e))),
        // Both fail: an old failure, not the candidate's regression.
        (_, Some(Err(e))) => return Ok(Outcome::ActiveFailed(failure(&id, e))),
        (Err(e), Some(Ok(_))) => return Ok(Outcome::CandidateFailed(failure(&id, e))),
        (Ok(theirs), Some(Ok(ours))) => (theirs, ours),
    };
    let (a, b) = (parse(&ours.state), parse(&theirs.state));
    Ok(match first_difference(&a, &b, String::new()) {
        None => Outcome::Agree,
        Some((path, active, candidate)) => Outcome::Differ(Difference {
            aggregate_id: id,
            path,
            active,
            candidate,
        }),
    })
}

/// The first place two JSON values differ, depth first, keys in the active
/// state's order (then the candidate's extra keys).
fn first_difference(a: &Value, b: &Value, path: String) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, p) {
                            return Some(d);
                        }
                    }
                    None => return Some((p, va.clone(), Value::Null)),
                }
            }
            y.iter()
                .find(|(k, _)| !x.contains_key(*k))
                .map(|(k, vb)| (format!("{path}/{k}"), Value::Null, vb.clone()))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(va, vb, format!("{path}/{i}")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| {
                let i = x.len().min(y.len());
                let get = |v: &Vec<Value>| v.get(i).cloned().unwrap_or(Value::Null);
                (format!("{path}/{i}"), get(x), get(y))
            })
        }
        _ => (a != b).then(|| (path, a.clone(), b.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::first_difference;
    use serde_json::json;

    #[test]
    fn finds_the_first_differing_field() {
        let a = json!({"name": "A", "items": {"x": {"q": 1}}, "tags": [1, 2]});
        assert_eq!(first_difference(&a, &a.clone(), String::new()), None);
        let b = json!({"name": "A", "items": {"x": {"q": 2}}, "tags": [1, 2]});
        assert_eq!(
            first_difference(&a, &b, String::new()),
            Some(("/items/x/q".into(), json!(1), json!(2)))
        );
        let c = json!({"name": "A", "items": {"x": {"q": 1}}, "tags": [1, 2], "new": true});
        assert_eq!(
            first_difference(&a, &c, String::new()),
            Some(("/new".into(), json!(null), json!(true)))
        );
        let d = json!({"name": "A", "items": {"x": {"q": 1}}, "tags": [1]});
        assert_eq!(
            first_difference(&a, &d, String::new()),
            Some(("/tags/1".into(), json!(2), json!(null)))
        );
        assert_eq!(
            first_difference(&json!(1), &json!("1"), String::new()),
            Some(("".into(), json!(1), json!("1")))
        );
    }
}
