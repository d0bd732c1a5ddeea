//! Appends, histories and the category feed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use streamfold::{CategoryReadOptions, ExpectedRevision, NewEvent, ReadOptions, RecordedEvent};

use utoipa::{IntoParams, ToSchema};

use super::{AggregatePath, Json, Path, Positions, Query, Revision, TypePath};
use crate::AppState;
use crate::problem::Problem;

/// One batch to append, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AppendRequest)]
pub(crate) struct AppendBody {
    /// What the append expects of the aggregate's revision; default `"any"`.
    #[serde(default)]
    expected_revision: ExpectedRevision,
    /// The events, in order: at least one, at most the server's maximum per append
    /// (more: 413).
    #[schema(min_items = 1)]
    events: Vec<EventBody>,
}

/// An event to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewEvent)]
pub(crate) struct EventBody {
    /// What happened, e.g. `UserCreated`.
    #[schema(min_length = 1)]
    event_type: String,
    /// The payload: any JSON value.
    #[schema(value_type = serde_json::Value)]
    data: Box<RawValue>,
    /// The event's id. Give one to make a retry safe: an append whose ids are
    /// already stored answers 200 with `already_appended` and writes nothing.
    event_id: Option<uuid::Uuid>,
    /// The payload's schema version; default `"1"`.
    #[schema(min_length = 1)]
    version: Option<String>,
}

/// What an append wrote (or, for a retry, what the original append wrote).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Appended {
    /// Revision of the batch's first event.
    first_revision: u64,
    /// Revision of its last event: the aggregate's revision after the append.
    last_revision: u64,
    /// The events' positions (stream ids) in the aggregate's stream.
    positions: Vec<String>,
    /// The events' ids, including the ones the server generated.
    event_ids: Vec<uuid::Uuid>,
    /// True for a retry of an append that had already succeeded: nothing was written.
    already_appended: bool,
}

/// `POST /v1/aggregates/{type}/{id}/events`: 201, or 200 for a retry that was
/// already appended (nothing written), 409 for a wrong expected revision.
#[utoipa::path(
    post,
    path = "/v1/aggregates/{type}/{id}/events",
    tag = "events",
    operation_id = "append",
    summary = "Append a batch of events",
    params(AggregatePath),
    request_body = AppendBody,
    responses(
        (status = 201, description = "Appended", body = Appended),
        (status = 200, description = "A retry of an append that already succeeded (same event ids): nothing was written", body = Appended),
        (status = 400, description = "Malformed JSON, a bad event or name"),
        (status = 409, description = "Wrong expected revision: `expected_revision` and `actual_revision` say what was expected and what is"),
        (status = 413, description = "Body over the append limit, or too many events (`max_events`)"),
        (status = 415, description = "Not `application/json`"),
    ),
)]
pub(crate) async fn append(
    State(state): State<AppState>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Json(body): Json<AppendBody>,
) -> Result<Response, Problem> {
    let max = state.config.max_events_per_append;
    if body.events.len() > max {
        return Err(Problem::too_large(format!(
            "{} events in one append; at most {max} are accepted",
            body.events.len()
        ))
        .with("max_events", max));
    }
    let mut events = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        let mut event = NewEvent::from_json_text(e.event_type, e.data.get().to_owned())
            .map_err(|err| Problem::invalid(format!("events[{i}]: {err}")))?;
        if let Some(id) = e.event_id {
            event = event.with_id(id);
        }
        if let Some(v) = e.version {
            event = event.with_version(v);
        }
        events.push(event);
    }
    let count = events.len() as u64;
    let appended = state
        .runtime
        .store()
        .append(
            &aggregate_type,
            &aggregate_id,
            events,
            body.expected_revision,
        )
        .await
        .map_err(streamfold::Error::from);
    let r = match appended {
        Ok(r) => r,
        Err(e) => {
            let outcome = if e.is_conflict() {
                "conflict"
            } else {
                "failed"
            };
            state.metrics.appended(outcome, 0);
            return Err(e.into());
        }
    };
    let outcome = if r.already_appended {
        "already-appended"
    } else {
        "appended"
    };
    state.metrics.appended(outcome, count);
    let status = if r.already_appended {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = Appended {
        first_revision: r.first_revision,
        last_revision: r.last_revision,
        positions: r.positions,
        event_ids: r.event_ids,
        already_appended: r.already_appended,
    };
    Ok((status, axum::Json(body)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// The first revision of the page (default 1; 0 is the same as 1).
    #[param(value_type = Option<Revision>, inline)]
    from_revision: Option<Revision>,
    /// The last revision to read (default: the latest).
    #[param(value_type = Option<Revision>, inline)]
    to_revision: Option<Revision>,
    /// Only events stored at or before this instant (RFC 3339).
    as_of: Option<DateTime<Utc>>,
    /// Events per page (default 1,000; at most the server's maximum page, 10,000 by default).
    limit: Option<usize>,
}

/// One page of an aggregate's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryPage {
    /// The events, oldest first.
    events: Vec<RecordedEvent>,
    /// Where the next page starts (`from_revision`), or `null` after the last page.
    next_from_revision: Option<u64>,
}

/// `GET /v1/aggregates/{type}/{id}/events`: one page of the history.
#[utoipa::path(
    get,
    path = "/v1/aggregates/{type}/{id}/events",
    tag = "events",
    operation_id = "history",
    summary = "Read an aggregate's history, a page at a time",
    params(AggregatePath, HistoryQuery),
    responses(
        (status = 200, description = "A page of events; `next_from_revision` says where the next starts", body = HistoryPage),
        (status = 400, description = "A bad parameter"),
        (status = 404, description = "The aggregate has no events"),
    ),
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let limit = super::page_limit(&state, q.limit)?;
    let from = q.from_revision.map_or(1, |r| r.0).max(1);
    // One event more than the page says whether another page follows.
    let mut opts = ReadOptions::default()
        .from_revision(from)
        .page_size(limit + 1);
    if let Some(Revision(to)) = q.to_revision {
        opts = opts.to_revision(to);
    }
    if let Some(t) = q.as_of {
        opts = opts.as_of(t);
    }
    let mut pages = state
        .runtime
        .store()
        .history(&aggregate_type, &aggregate_id, opts);
    // A store page that starts before `from_revision` holds fewer events than
    // asked for: read on until the page is full or the history ends.
    let mut events = Vec::new();
    while events.len() <= limit {
        match pages.next_page().await.map_err(streamfold::Error::from)? {
            Some(page) => events.extend(page.to_events()),
            None => break,
        }
    }
    if events.is_empty() && q.from_revision.is_none() && q.as_of.is_none() {
        return Err(Problem::not_found(format!(
            "aggregate {aggregate_type}/{aggregate_id} has no events"
        )));
    }
    let more = events.len() > limit;
    events.truncate(limit);
    let next_from_revision = match events.last() {
        Some(last) if more => Some(last.revision + 1),
        _ => None,
    };
    Ok(axum::Json(
        serde_json::to_value(HistoryPage {
            events,
            next_from_revision,
        })
        .expect("events serialize"),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CategoryQuery {
    /// Read after this position (`next_after` of the previous page); default (or
    /// empty): from the start. For one partition it is that partition's stream id; for the whole
    /// feed of a type with several partitions, one stream id per partition,
    /// comma-separated.
    #[param(value_type = Option<Positions>, inline)]
    after: Option<Positions>,
    /// Events per page (default 1,000).
    limit: Option<usize>,
    /// Read only this category partition; default: every partition, merged by stream
    /// id (for a type with one partition, the same thing).
    partition: Option<u32>,
}

/// One page of a category feed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CategoryPage {
    /// The events, in the order they were stored.
    events: Vec<RecordedEvent>,
    /// The position to pass as `after` for the next page (the last one read, or
    /// the one given when nothing new was there).
    next_after: Option<String>,
}

/// `GET /v1/categories/{type}/events`: one page of a type's category feed.
#[utoipa::path(
    get,
    path = "/v1/categories/{type}/events",
    tag = "events",
    operation_id = "category",
    summary = "Read a type's category feed, a page at a time",
    params(TypePath, CategoryQuery),
    responses(
        (status = 200, description = "A page of events; pass `next_after` as `after` for the next", body = CategoryPage),
        (status = 400, description = "A bad parameter"),
    ),
)]
pub(crate) async fn category(
    State(state): State<AppState>,
    Path(aggregate_type): Path<String>,
    Query(q): Query<CategoryQuery>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let limit = super::page_limit(&state, q.limit)?.min(streamfold::MAX_CATEGORY_COUNT);
    let store = state.runtime.store();
    let after = super::category_after(store, &aggregate_type, q.after, q.partition)?;
    let (events, next_after) = match q.partition {
        Some(partition) => {
            super::partition_exists(store, &aggregate_type, partition)?;
            let mut opts = CategoryReadOptions::new().partition(partition).count(limit);
            if let Some(after) = &after {
                opts = opts.after(after.clone());
            }
            let events = store
                .read_category(&aggregate_type, opts)
                .await
                .map_err(streamfold::Error::from)?;
            let next = events.last().map(|e| e.position.clone());
            (events, next)
        }
        None => {
            let (events, next) = store
                .read_category_merged(&aggregate_type, after.as_deref(), limit)
                .await
                .map_err(streamfold::Error::from)?;
            let next = (!events.is_empty()).then_some(next);
            (events, next)
        }
    };
    let next_after = next_after.or(after);
    Ok(axum::Json(
        serde_json::to_value(CategoryPage { events, next_after }).expect("events serialize"),
    ))
}
