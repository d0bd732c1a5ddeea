//! Live subscriptions as Server-Sent Events.
//!
//! `GET /v1/categories/{type}/subscribe?after=&partition=` and
//! `GET /v1/aggregates/{type}/{id}/subscribe?after=&state=true`: the events already
//! there after `after` (or `Last-Event-ID`, which wins), then one event named
//! `caught-up`, then events as they are appended. Each event is named `event`, its
//! `id:` is its stream position and its data the event's JSON; reconnecting with
//! `Last-Event-ID` resumes exactly after it, with no gap and no duplicate. With
//! `state=true` every event is followed by an event named `state` holding
//! `{"revision", "state"}`, computed on a live reducer session (never a full replay
//! per event); a `state` event also opens the stream, and one follows a reducer
//! change (hot reload). Comments (`: keep-alive`) keep idle connections open.
//!
//! Bounds: at most `max_subscribers` streams at once (503 beyond); a client that
//! takes longer than `slow_client_timeout` to accept the next event is
//! disconnected, never buffered without bound; every stream ends when the server
//! shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use serde::Deserialize;
use streamfold::{Live, LiveUpdate, SubscribeOptions};
use tokio::sync::mpsc;

use utoipa::{IntoParams, ToSchema};

use super::{AggregatePath, Path, Position, Positions, Query, TypePath};
use crate::AppState;
use crate::problem::Problem;

/// Events buffered for one subscriber before it counts as slow.
const BUFFER: usize = 64;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CategoryQuery {
    /// Resume after this position (`Last-Event-ID` wins).
    #[param(value_type = Option<Positions>, inline)]
    after: Option<Positions>,
    /// Follow only this category partition; default: every partition (event ids then
    /// list one stream position per partition, comma-separated; for a type with one
    /// partition, the same as that partition's).
    partition: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AggregateQuery {
    /// Resume after this position (`Last-Event-ID` wins).
    #[param(value_type = Option<Position>, inline)]
    after: Option<Position>,
    /// Also push the reducer's state after each event (`state` events).
    state: Option<bool>,
}

/// The data of a `state` event.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only: the event is written as text
pub(crate) struct StatePush {
    /// The revision the state covers.
    revision: u64,
    /// The reducer's state document.
    state: serde_json::Value,
}

/// The data of the `caught-up` event.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub(crate) struct CaughtUp {
    /// The last position delivered before it (`null`: nothing yet).
    position: Option<String>,
}

/// How the Server-Sent Events of a subscription read, for the OpenAPI document.
const SSE_DESCRIPTION: &str = "A `text/event-stream`: the events already there (after `after` or `Last-Event-ID`), then one `caught-up` event (data: `CaughtUp`), then events as they are appended. Each `event` event's `id:` is its stream position and its data an `Event`; reconnect with `Last-Event-ID` to resume exactly after it. With `state=true`, a `state` event (data: `StatePush`) opens the stream and follows every event and every reducer change. A failure ends the stream with an `error` event holding a `Problem`. `: keep-alive` comments keep idle connections open; a client that stops reading is disconnected.";

/// Where to resume: `Last-Event-ID` wins over `after`.
fn resume(headers: &HeaderMap, after: Option<String>) -> SubscribeOptions {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    match last.or(after) {
        Some(position) => SubscribeOptions::new().after(position),
        None => SubscribeOptions::new(),
    }
}

pub(super) fn slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, Problem> {
    state.subscribers.clone().try_acquire_owned().map_err(|_| {
        Problem::busy(
            format!(
                "{} subscriptions are open, the most this server keeps; retry later",
                state.config.max_subscribers
            ),
            5,
        )
    })
}

fn event(e: &streamfold::RecordedEvent) -> Event {
    event_at(e, e.position.clone())
}

/// An `event` whose SSE id is `id` (a merged category feed's position).
fn event_at(e: &streamfold::RecordedEvent, id: String) -> Event {
    Event::default()
        .event("event")
        .id(id)
        .data(serde_json::to_string(e).expect("events serialize"))
}

fn state_event(revision: u64, state: &str) -> Event {
    // The state is the reducer's JSON document, checked to be JSON: embedded as is.
    Event::default()
        .event("state")
        .data(format!("{{\"revision\":{revision},\"state\":{state}}}"))
}

fn caught_up(position: Option<&str>) -> Event {
    Event::default()
        .event("caught-up")
        .data(serde_json::json!({ "position": position }).to_string())
}

pub(super) fn failure(e: &streamfold::Error) -> Event {
    let problem = Problem::of(e);
    Event::default()
        .event("error")
        .data(serde_json::to_string(&problem).unwrap_or_default())
}

/// Runs `produce` as the stream's producer: it sends into a bounded buffer, and a
/// subscriber that leaves it full for `slow_client_timeout` is disconnected. The
/// stream ends when the producer does, the client goes (noticed even while the
/// producer waits for an event), or the server stops.
pub(super) fn sse<F, Fut>(
    state: AppState,
    permit: tokio::sync::OwnedSemaphorePermit,
    produce: F,
) -> Response
where
    F: FnOnce(Sender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Event>(BUFFER);
    // Watches for the client going: the producer only notices when it sends, and an
    // idle aggregate may send nothing for ever (keeping a slot and the gauge).
    let gone = tx.clone();
    let sender = Sender {
        tx,
        timeout: state.config.slow_client_timeout,
    };
    let mut stopping = state.stopping.clone();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let _permit = permit;
        metrics.subscribers.inc();
        tokio::select! {
            _ = produce(sender) => {}
            _ = stopping.wait_for(|s| *s) => {}
            _ = gone.closed() => {}
        }
        drop(gone);
        metrics.subscribers.dec();
    });
    let stream = tokio_stream_from(rx).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(state.config.heartbeat)
                .text("keep-alive"),
        )
        .into_response()
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Event>) -> impl futures::Stream<Item = Event> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The producer's end: `send` fails (and the producer stops) when the client is
/// gone or too slow.
pub(crate) struct Sender {
    tx: mpsc::Sender<Event>,
    timeout: Duration,
}

impl Sender {
    pub(super) async fn send(&self, e: Event) -> bool {
        match self.tx.send_timeout(e, self.timeout).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::info!("disconnecting a subscriber that stopped reading");
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }
}

/// Sends a store subscription's events, then `caught-up`, until it or the client
/// ends; a failure is sent as an `error` event holding its problem.
async fn forward(mut sub: streamfold::Subscription, out: Sender) {
    while let Some(item) = sub.next().await {
        if !send_live(&out, item, |e| e.position.clone()).await {
            break;
        }
    }
}

/// Sends one item of a store subscription or feed, an event with the SSE id
/// `id_of` gives it; false when the stream ends (a failure, sent as an `error`
/// event, or a client gone).
async fn send_live<E>(
    out: &Sender,
    item: Result<Live, E>,
    id_of: impl FnOnce(&streamfold::RecordedEvent) -> String,
) -> bool
where
    streamfold::Error: From<E>,
{
    match item {
        Ok(Live::Event(e)) => out.send(event_at(&e, id_of(&e))).await,
        Ok(Live::CaughtUp { position }) => out.send(caught_up(position.as_deref())).await,
        Ok(_) => true,
        Err(e) => {
            out.send(failure(&streamfold::Error::from(e))).await;
            false
        }
    }
}

/// `GET /v1/categories/{type}/subscribe`.
#[utoipa::path(
    get,
    path = "/v1/categories/{type}/subscribe",
    tag = "subscribe",
    operation_id = "subscribe_category",
    summary = "Follow a type's category feed live (Server-Sent Events)",
    description = SSE_DESCRIPTION,
    params(
        TypePath,
        CategoryQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many subscriptions (`busy`)"),
    ),
)]
pub(crate) async fn category(
    State(state): State<AppState>,
    Path(aggregate_type): Path<String>,
    Query(q): Query<CategoryQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let permit = slot(&state)?;
    let opts = resume(&headers, q.after.map(|p| p.0));
    let store = state.runtime.store();
    if let Some(partition) = q.partition {
        super::partition_exists(store, &aggregate_type, partition)?;
        let sub = store
            .subscribe_category(&aggregate_type, partition, opts)
            .await
            .map_err(streamfold::Error::from)?;
        return Ok(sse(state, permit, move |out| forward(sub, out)));
    }
    let mut feed = store
        .subscribe_category_merged(&aggregate_type, opts)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(sse(state, permit, move |out| async move {
        while let Some(item) = feed.next().await {
            // The id is where the whole feed resumes, not the entry's own id.
            let resume = feed.position();
            if !send_live(&out, item, |e| resume.unwrap_or_else(|| e.position.clone())).await {
                break;
            }
        }
    }))
}

/// `GET /v1/aggregates/{type}/{id}/subscribe`.
#[utoipa::path(
    get,
    path = "/v1/aggregates/{type}/{id}/subscribe",
    tag = "subscribe",
    operation_id = "subscribe_aggregate",
    summary = "Follow an aggregate live, optionally with its state (Server-Sent Events)",
    description = SSE_DESCRIPTION,
    params(
        AggregatePath,
        AggregateQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "With `state=true`: no active reducer for the type"),
        (status = 503, description = "Too many subscriptions (`busy`)"),
    ),
)]
pub(crate) async fn aggregate(
    State(state): State<AppState>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Query(q): Query<AggregateQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let permit = slot(&state)?;
    let opts = resume(&headers, q.after.map(|p| p.0));
    let store = state.runtime.store();
    if !q.state.unwrap_or(false) {
        let sub = store
            .subscribe(&aggregate_type, &aggregate_id, opts)
            .await
            .map_err(streamfold::Error::from)?;
        return Ok(sse(state, permit, move |out| forward(sub, out)));
    }
    let mut live = state
        .runtime
        .subscribe_state(&aggregate_type, &aggregate_id, opts)
        .await?;
    Ok(sse(state, permit, move |out| async move {
        while let Some(item) = live.next().await {
            let sent = match item {
                Ok(LiveUpdate::Start {
                    state, revision, ..
                })
                | Ok(LiveUpdate::ReducerChanged {
                    state, revision, ..
                }) => out.send(state_event(revision, &state)).await,
                Ok(LiveUpdate::Event { event: e, state }) => {
                    out.send(event(&e)).await && out.send(state_event(e.revision, &state)).await
                }
                Ok(LiveUpdate::CaughtUp { position, .. }) => {
                    out.send(caught_up(position.as_deref())).await
                }
                Ok(_) => true,
                Err(e) => {
                    out.send(failure(&e)).await;
                    false
                }
            };
            if !sent {
                break;
            }
        }
    }))
}
