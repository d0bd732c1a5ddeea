//! `GET /metrics`: Prometheus text, through the `prometheus-client` crate.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `streamfold_http_requests_total` | `method`, `route`, `status` | requests answered |
//! | `streamfold_http_request_duration_seconds` | `method`, `route` | time to answer (histogram) |
//! | `streamfold_replays_total` | `reducer` | replays that returned a state |
//! | `streamfold_replay_duration_seconds` | `reducer` | their duration (histogram) |
//! | `streamfold_events_replayed_total` | `reducer` | events read from Redis by replays |
//! | `streamfold_state_cache_hits_total` | `reducer` | replays that started from a state held in memory (the state cache), checked current in Redis |
//! | `streamfold_state_cache_entries` | | states the state cache holds |
//! | `streamfold_state_cache_bytes` | | their bytes, as counted against `--state-cache` |
//! | `streamfold_reducer_failures_total` | `kind` | replays a reducer failed (`rejected`, `trap`, `timeout`, `out-of-memory`, `bad-output`) |
//! | `streamfold_appends_total` | `outcome` | appends (`appended`, `already-appended`, `conflict`, `failed`) |
//! | `streamfold_events_appended_total` | | events written |
//! | `streamfold_append_calls_total` | | append script calls this process made (group commit: one call holds the appends to one category partition that waited) |
//! | `streamfold_append_call_appends_total` | | the appends those calls held (divide by `_calls_total` for appends per call) |
//! | `streamfold_sse_subscribers` | | live subscriptions open |
//! | `streamfold_replays_in_flight` | | replays running now |
//! | `streamfold_replay_slots` | | the most that may run at once |
//! | `streamfold_redis_up` | | 1 while Redis answers the background check (`/readyz`), else 0 |
//! | `streamfold_redis_away_seconds` | | how long Redis has not answered (0 while it does) |
//! | `streamfold_group_deliveries_total` | `aggregate_type`, `group` | events handed to a group's workers by this server (redeliveries too) |
//! | `streamfold_group_redeliveries_total` | `aggregate_type`, `group` | of those, deliveries after the first |
//! | `streamfold_group_settled_total` | `aggregate_type`, `group`, `action` | deliveries acknowledged (`ack`) or given back (`retry`, `park`, `skip`) through this server |
//! | `streamfold_group_undelivered` | `aggregate_type`, `group` | events not delivered yet (lag; left out while Redis cannot tell) |
//! | `streamfold_group_pending` | `aggregate_type`, `group` | events delivered and not acknowledged |
//! | `streamfold_group_oldest_pending_seconds` | `aggregate_type`, `group` | how long the oldest of those has waited (0: none) |
//! | `streamfold_group_parked` | `aggregate_type`, `group` | parked events |
//! | `streamfold_group_trim_held_back` | `aggregate_type`, `group` | category entries kept beyond the configured length because the group has not acknowledged them (the trim waits for it) |
//! | `streamfold_projection_events_total` | `projection`, `version`, `digest` | source events a projection version has folded since it was (re)built |
//! | `streamfold_projection_lag_events` | `projection`, `version`, `digest` | source events it has not folded yet (left out when it cannot tell) |
//! | `streamfold_projection_lag_seconds` | `projection`, `version`, `digest` | how far behind its sources it is, by time (0: caught up) |
//! | `streamfold_projection_events_per_second` | `projection`, `version`, `digest` | its fold rate, as its runner last measured |
//! | `streamfold_projection_dead_letters` | `projection`, `version`, `digest` | events it skipped (`on_error=skip`) and kept |
//! | `streamfold_projection_state` | `projection`, `version`, `digest`, `state` | 1 for its state (`catching-up`, `live`, `stopped`, `failed`), 0 for the others |
//! | `streamfold_projection_serving` | `projection`, `version`, `digest` | 1 for the version reads follow |
//! | `streamfold_projection_batches_total` | `projection`, `digest` | batches this server's runner committed |
//! | `streamfold_projection_commit_seconds_total` | `projection`, `digest` | time those commits took (divide by `_batches_total` for the mean) |
//! | `streamfold_projection_lease_changes_total` | `projection`, `digest`, `change` | this server taking (`taken`) or losing (`lost`) a version's lease |
//!
//! The group figures (from `_undelivered` on) and the projection figures are read
//! from Redis in the background, every [`GROUPS_INTERVAL`], for at most
//! [`MAX_WATCHED_GROUPS`] groups and as many projections, so a scrape never waits
//! for Redis; they are as old as the last read.
//!
//! Routes are labelled by their pattern (`/v1/aggregates/{type}/{id}/state`), never
//! by the path a client sent, so a client cannot grow the label set; `reducer` is
//! `name@version`, checked at registration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use streamfold::{FailureCause, Replayed};

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReducerLabels {
    reducer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    aggregate_type: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettledLabels {
    aggregate_type: String,
    group: String,
    action: String,
}

/// How often the groups' figures are read from Redis.
pub(crate) const GROUPS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The most groups whose figures are read (the rest are left out of the metrics).
pub(crate) const MAX_WATCHED_GROUPS: usize = 256;

fn seconds() -> Histogram {
    // 100 µs to ~100 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    replays: Family<ReducerLabels, Counter>,
    replay_seconds: Family<ReducerLabels, Histogram, fn() -> Histogram>,
    events_replayed: Family<ReducerLabels, Counter>,
    state_cache_hits: Family<ReducerLabels, Counter>,
    failures: Family<KindLabels, Counter>,
    appends: Family<OutcomeLabels, Counter>,
    events_appended: Counter,
    group_deliveries: Family<GroupLabels, Counter>,
    group_redeliveries: Family<GroupLabels, Counter>,
    group_settled: Family<SettledLabels, Counter>,
    /// The groups' figures, as last read from Redis.
    groups: Arc<Mutex<Vec<streamfold::GroupStatus>>>,
    /// The projections' figures, as last read from Redis.
    projections: Arc<Mutex<Vec<streamfold::ProjectionSummary>>>,
    pub(crate) subscribers: Gauge<i64, std::sync::atomic::AtomicI64>,
    replays_in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    replay_slots: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Scrapes so far (a sanity figure for the tests).
    scrapes: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(replay_slots: usize) -> Arc<Self> {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds),
            replays: Family::default(),
            replay_seconds: Family::new_with_constructor(seconds),
            events_replayed: Family::default(),
            state_cache_hits: Family::default(),
            failures: Family::default(),
            appends: Family::default(),
            events_appended: Counter::default(),
            group_deliveries: Family::default(),
            group_redeliveries: Family::default(),
            group_settled: Family::default(),
            groups: Arc::default(),
            projections: Arc::default(),
            subscribers: Gauge::default(),
            replays_in_flight: Gauge::default(),
            replay_slots: Gauge::default(),
            scrapes: AtomicU64::new(0),
        };
        m.replay_slots.set(replay_slots as i64);
        {
            let mut r = m.registry.lock().expect("metrics registry");
            let sf = r.sub_registry_with_prefix("streamfold");
            sf.register(
                "http_requests",
                "HTTP requests answered",
                m.requests.clone(),
            );
            sf.register(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
                m.request_seconds.clone(),
            );
            sf.register(
                "replays",
                "Replays that returned a state",
                m.replays.clone(),
            );
            sf.register(
                "replay_duration_seconds",
                "Duration of a replay",
                m.replay_seconds.clone(),
            );
            sf.register(
                "events_replayed",
                "Events read from Redis by replays",
                m.events_replayed.clone(),
            );
            sf.register(
                "state_cache_hits",
                "Replays that started from a state held in memory, checked current in Redis",
                m.state_cache_hits.clone(),
            );
            sf.register(
                "reducer_failures",
                "Replays a reducer failed, by kind",
                m.failures.clone(),
            );
            sf.register("appends", "Appends, by outcome", m.appends.clone());
            sf.register(
                "events_appended",
                "Events written",
                m.events_appended.clone(),
            );
            sf.register(
                "group_deliveries",
                "Events handed to a group's workers (redeliveries too)",
                m.group_deliveries.clone(),
            );
            sf.register(
                "group_redeliveries",
                "Deliveries of an event after its first",
                m.group_redeliveries.clone(),
            );
            sf.register(
                "group_settled",
                "Deliveries acknowledged (ack) or given back (retry, park, skip)",
                m.group_settled.clone(),
            );
            sf.register(
                "sse_subscribers",
                "Live subscriptions open",
                m.subscribers.clone(),
            );
            sf.register(
                "replays_in_flight",
                "Replays running now",
                m.replays_in_flight.clone(),
            );
            sf.register(
                "replay_slots",
                "The most replays that may run at once",
                m.replay_slots.clone(),
            );
        }
        Arc::new(m)
    }

    /// Adds the reducer instance figures, read from the runtime at each scrape.
    pub(crate) fn watch_instances(&self, runtime: streamfold::Runtime) {
        let mut r = self.registry.lock().expect("metrics registry");
        r.sub_registry_with_prefix("streamfold")
            .register_collector(Box::new(Instances(runtime)));
    }

    /// Reports what the background check of Redis last found.
    pub(crate) fn watch_redis(&self, health: crate::health::Health) {
        let mut r = self.registry.lock().expect("metrics registry");
        r.sub_registry_with_prefix("streamfold")
            .register_collector(Box::new(RedisUp(health)));
    }

    /// Reads the groups' figures from Redis every [`GROUPS_INTERVAL`] until
    /// `stopping` turns true, and reports the last read at each scrape.
    pub(crate) fn watch_groups(
        &self,
        runtime: streamfold::Runtime,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        let groups = self.groups.clone();
        let projections = self.projections.clone();
        let runtime_for_counters = runtime.clone();
        tokio::spawn(async move {
            loop {
                match read_groups(&runtime).await {
                    Ok(read) => *groups.lock().expect("group figures") = read,
                    // Redis away: /readyz and streamfold_redis_up say so; keep the last.
                    Err(e) => tracing::debug!("cannot read the groups' figures: {e}"),
                }
                match runtime.list_projections().await {
                    Ok(mut read) => {
                        read.truncate(MAX_WATCHED_GROUPS);
                        *projections.lock().expect("projection figures") = read;
                    }
                    Err(e) => tracing::debug!("cannot read the projections' figures: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(GROUPS_INTERVAL) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        let mut r = self.registry.lock().expect("metrics registry");
        r.sub_registry_with_prefix("streamfold")
            .register_collector(Box::new(Groups(self.groups.clone())));
        r.sub_registry_with_prefix("streamfold")
            .register_collector(Box::new(Projections(
                self.projections.clone(),
                runtime_for_counters,
            )));
    }

    /// Deliveries a fetch handed out, by their delivery counts.
    pub(crate) fn delivered(
        &self,
        aggregate_type: &str,
        group: &str,
        counts: impl Iterator<Item = u64>,
    ) {
        let labels = GroupLabels {
            aggregate_type: aggregate_type.to_owned(),
            group: group.to_owned(),
        };
        let (mut all, mut again) = (0, 0);
        for count in counts {
            all += 1;
            again += u64::from(count > 1);
        }
        if all > 0 {
            self.group_deliveries.get_or_create(&labels).inc_by(all);
        }
        if again > 0 {
            self.group_redeliveries.get_or_create(&labels).inc_by(again);
        }
    }

    /// Deliveries an ack or a nack settled (`action`: `ack`, `retry`, `park`, `skip`).
    pub(crate) fn settled(&self, aggregate_type: &str, group: &str, action: &str, n: usize) {
        self.group_settled
            .get_or_create(&SettledLabels {
                aggregate_type: aggregate_type.to_owned(),
                group: group.to_owned(),
                action: action.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// A replay that returned a state, and how long it took.
    pub(crate) fn replayed(&self, r: &Replayed, started: Instant) {
        let labels = ReducerLabels {
            reducer: format!("{}@{}", r.plugin.name, r.plugin.version),
        };
        self.replays.get_or_create(&labels).inc();
        self.replay_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.events_replayed
            .get_or_create(&labels)
            .inc_by(r.events_read);
        if r.cached_revision.is_some() {
            self.state_cache_hits.get_or_create(&labels).inc();
        }
    }

    /// Counts a reducer failure by its kind, if `e` is one.
    pub(crate) fn failed(&self, e: &streamfold::Error) {
        let Some(f) = e.reducer_failure() else {
            return;
        };
        let kind = match f.cause {
            FailureCause::Rejected { .. } => "rejected",
            FailureCause::Trap { .. } => "trap",
            FailureCause::Timeout { .. } => "timeout",
            FailureCause::OutOfMemory { .. } => "out-of-memory",
            FailureCause::BadOutput { .. } => "bad-output",
            _ => "other",
        };
        self.failures
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// An append's outcome (`appended`, `already-appended`, `conflict`, `failed`).
    pub(crate) fn appended(&self, outcome: &str, events: u64) {
        self.appends
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        if outcome == "appended" {
            self.events_appended.inc_by(events);
        }
    }

    /// Marks a replay running until the guard drops.
    pub(crate) fn replay_running(self: &Arc<Self>) -> InFlight {
        self.replays_in_flight.inc();
        InFlight(self.clone())
    }

    fn render(&self) -> String {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry");
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// A running replay, counted in `streamfold_replays_in_flight` while it lives.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.replays_in_flight.dec();
    }
}

/// Counts and times every request, labelled by its route pattern.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    m.request_seconds
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics (text exposition format)",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)),
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `streamfold_reducer_instances_made_total` and `streamfold_reducer_instances_idle`,
/// by reducer, for every plugin loaded in this process.
struct Instances(streamfold::Runtime);

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instances")
    }
}

impl prometheus_client::collector::Collector for Instances {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let mut plugins: Vec<_> = self
            .0
            .loaded_plugins()
            .into_iter()
            .map(|p| {
                let labels = ReducerLabels {
                    reducer: format!("{}@{}", p.info().name, p.info().version),
                };
                (labels, p.instances_made(), p.idle_instances())
            })
            .collect();
        plugins.sort_by(|a, b| a.0.reducer.cmp(&b.0.reducer));
        let counter = ConstCounter::new(0u64);
        let mut made = encoder.encode_descriptor(
            "reducer_instances_made",
            "Reducer instances made (fresh, and warm ones when first made), by reducer",
            None,
            counter.metric_type(),
        )?;
        for (labels, n, _) in &plugins {
            ConstCounter::new(*n).encode(made.encode_family(labels)?)?;
        }
        let gauge = ConstGauge::new(0i64);
        let mut idle = encoder.encode_descriptor(
            "reducer_instances_idle",
            "Warm reducer instances waiting for the next replay, by reducer",
            None,
            gauge.metric_type(),
        )?;
        for (labels, _, n) in &plugins {
            ConstGauge::new(*n as i64).encode(idle.encode_family(labels)?)?;
        }
        let (entries, bytes) = self.0.state_cache_usage();
        for (name, help, value) in [
            (
                "state_cache_entries",
                "States held in memory by the state cache",
                entries as i64,
            ),
            (
                "state_cache_bytes",
                "Bytes of the states held by the state cache, as counted against --state-cache",
                bytes as i64,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let group_commit = self.0.store().append_calls();
        for (name, help, value) in [
            (
                "append_calls",
                "Append script calls this process made (group commit)",
                group_commit.calls,
            ),
            (
                "append_call_appends",
                "Appends held by those calls",
                group_commit.appends,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// `streamfold_redis_up` and `streamfold_redis_away_seconds`, from the background
/// check that `/readyz` reports.
#[derive(Debug)]
struct RedisUp(crate::health::Health);

impl prometheus_client::collector::Collector for RedisUp {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;

        let now = self.0.now();
        let up = ConstGauge::new(i64::from(now.up));
        up.encode(encoder.encode_descriptor(
            "redis_up",
            "1 while Redis answers the background check (what /readyz reports), else 0",
            None,
            up.metric_type(),
        )?)?;
        let away = if now.up {
            0.0
        } else {
            now.since.elapsed().as_secs_f64()
        };
        let away = ConstGauge::new(away);
        away.encode(encoder.encode_descriptor(
            "redis_away_seconds",
            "How long Redis has not answered the background check (0 while it does)",
            None,
            away.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Every group's status, at most [`MAX_WATCHED_GROUPS`] of them.
async fn read_groups(
    runtime: &streamfold::Runtime,
) -> streamfold::Result<Vec<streamfold::GroupStatus>> {
    let store = runtime.store();
    let mut out = Vec::new();
    for g in store
        .list_groups(None)
        .await?
        .into_iter()
        .take(MAX_WATCHED_GROUPS)
    {
        match store.group_status(&g.aggregate_type, &g.group).await {
            Ok(status) => out.push(status),
            // Deleted since it was listed.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// `streamfold_group_undelivered`, `_pending`, `_oldest_pending_seconds`, `_parked`
/// and `_trim_held_back`, from the last background read.
#[derive(Debug)]
struct Groups(Arc<Mutex<Vec<streamfold::GroupStatus>>>);

impl prometheus_client::collector::Collector for Groups {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;

        let groups = self.0.lock().expect("group figures").clone();
        let labels = |s: &streamfold::GroupStatus| GroupLabels {
            aggregate_type: s.info.aggregate_type.clone(),
            group: s.info.group.clone(),
        };
        type Figure = fn(&streamfold::GroupStatus) -> Option<f64>;
        let families: [(&str, &str, Figure); 5] = [
            (
                "group_undelivered",
                "Events a group has not delivered yet (its lag)",
                |s| s.undelivered.map(|n| n as f64),
            ),
            (
                "group_pending",
                "Events delivered to a group's workers and not acknowledged",
                |s| Some(s.pending as f64),
            ),
            (
                "group_oldest_pending_seconds",
                "How long a group's oldest unacknowledged delivery has waited",
                |s| Some(s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0),
            ),
            ("group_parked", "A group's parked events", |s| {
                Some(s.parked as f64)
            }),
            (
                "group_trim_held_back",
                "Category entries kept beyond the configured length until a group acknowledges them",
                |s| Some(s.trim_held_back as f64),
            ),
        ];
        for (name, help, figure) in families {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstGauge::new(0.0f64).metric_type(),
            )?;
            for s in &groups {
                if let Some(v) = figure(s) {
                    ConstGauge::new(v).encode(family.encode_family(&labels(s))?)?;
                }
            }
        }
        Ok(())
    }
}

/// The labels of a projection version's figures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
    version: String,
    digest: String,
}

/// A projection version this server runs.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerLabels {
    projection: String,
    digest: String,
}

/// A lease change of a projection version this server runs.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    projection: String,
    digest: String,
    change: &'static str,
}

/// A projection version's state, one series per possible state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionStateLabels {
    projection: String,
    version: String,
    digest: String,
    state: &'static str,
}

/// `streamfold_projection_*`: the figures from the last background read, and this
/// server's runners' counters.
#[derive(Debug)]
struct Projections(
    Arc<Mutex<Vec<streamfold::ProjectionSummary>>>,
    streamfold::Runtime,
);

impl prometheus_client::collector::Collector for Projections {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use streamfold::RunState;

        let all = self.0.lock().expect("projection figures").clone();
        let versions: Vec<(ProjectionLabels, &streamfold::VersionStatus)> = all
            .iter()
            .flat_map(|p| {
                p.status.iter().map(move |s| {
                    let labels = ProjectionLabels {
                        projection: p.name.clone(),
                        version: s.version.clone(),
                        digest: streamfold::short_digest(&s.vid),
                    };
                    (labels, s)
                })
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "projection_events",
            "Source events a projection version has folded since it was (re)built",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (labels, s) in &versions {
            ConstCounter::new(s.events).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "projection_lag_events",
            "Source events a projection version has not folded yet",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (labels, s) in &versions {
            if let Some(n) = s.lag_events {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(family.encode_family(labels)?)?;
            }
        }
        type Figure = fn(&streamfold::VersionStatus) -> f64;
        let gauges: [(&str, &str, Figure); 4] = [
            (
                "projection_lag_seconds",
                "How far a projection version is behind its sources, by time",
                |s| s.lag_ms as f64 / 1000.0,
            ),
            (
                "projection_events_per_second",
                "A projection version's fold rate, as its runner last measured",
                |s| s.events_per_second,
            ),
            (
                "projection_dead_letters",
                "Events a projection version skipped and kept in its dead letters",
                |s| s.dead_letters as f64,
            ),
            (
                "projection_serving",
                "1 for the projection version reads follow",
                |s| f64::from(u8::from(s.serving)),
            ),
        ];
        for (name, help, figure) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstGauge::new(0.0f64).metric_type(),
            )?;
            for (labels, s) in &versions {
                ConstGauge::new(figure(s)).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "projection_state",
            "1 for a projection version's state, 0 for the others",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        let states = [
            (RunState::CatchingUp, "catching-up"),
            (RunState::Live, "live"),
            (RunState::Stopped, "stopped"),
            (RunState::Failed, "failed"),
        ];
        for (labels, s) in &versions {
            for (state, name) in states {
                let labels = ProjectionStateLabels {
                    projection: labels.projection.clone(),
                    version: labels.version.clone(),
                    digest: labels.digest.clone(),
                    state: name,
                };
                ConstGauge::new(i64::from(s.state == state))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        // What this server's runners did (in-process counters).
        let counters = self.1.projection_counters();
        let label = |name: &str, vid: &str| RunnerLabels {
            projection: name.to_owned(),
            digest: streamfold::short_digest(vid),
        };
        let mut family = encoder.encode_descriptor(
            "projection_batches",
            "Batches this server's projection runners committed",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, vid, c) in &counters {
            ConstCounter::new(c.batches).encode(family.encode_family(&label(name, vid))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "projection_commit_seconds",
            "Time this server's projection commits took",
            None,
            ConstCounter::new(0.0f64).metric_type(),
        )?;
        for (name, vid, c) in &counters {
            ConstCounter::new(c.commit_seconds).encode(family.encode_family(&label(name, vid))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "projection_lease_changes",
            "This server taking or losing a projection version's lease",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, vid, c) in &counters {
            for (change, n) in [("taken", c.leases_taken), ("lost", c.leases_lost)] {
                let labels = LeaseLabels {
                    projection: name.clone(),
                    digest: streamfold::short_digest(vid),
                    change,
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
