//! What the store holds, for browsing: the aggregate types, a type's aggregate ids a
//! page at a time, and one aggregate's latest revision.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use streamfold::{IdsPageOptions, TypeSummary};
use utoipa::{IntoParams, ToSchema};

use super::{AggregatePath, Path, Query, TypePath};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::Problem;

/// The aggregate types.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TypeList {
    /// Every type with events or reducers that the token may see, sorted.
    types: Vec<TypeSummary>,
}

/// `GET /v1/types`: every aggregate type with events or reducers.
#[utoipa::path(
    get,
    path = "/v1/types",
    tag = "catalog",
    operation_id = "list_types",
    summary = "The aggregate types: those with events and those with reducers",
    responses((status = 200, description = "The types the token may see", body = TypeList)),
)]
pub(crate) async fn types(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<TypeList>, Problem> {
    let mut types = state.runtime.aggregate_types().await?;
    types.retain(|t| caller.may_see(&t.aggregate_type));
    Ok(axum::Json(TypeList { types }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct IdsQuery {
    /// Only ids that start with this.
    prefix: Option<String>,
    /// Go on from here: the `next_cursor` of the previous page.
    cursor: Option<String>,
    /// About how many ids (default 1,000, the most a page holds whatever is asked).
    limit: Option<usize>,
}

/// One page of a type's aggregate ids.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IdsPage {
    /// Ids of aggregates with events, in no particular order.
    ids: Vec<String>,
    /// Pass it as `cursor` for the next page; `null` after the last.
    next_cursor: Option<String>,
}

/// `GET /v1/aggregates/{type}?prefix=&cursor=&limit=`: a page of aggregate ids.
#[utoipa::path(
    get,
    path = "/v1/aggregates/{type}",
    tag = "catalog",
    operation_id = "list_aggregates",
    summary = "A type's aggregate ids, a page at a time, optionally by prefix",
    description = "Found by walking the keyspace (`SCAN`), a partition after another: a page may hold fewer ids than asked (even none) with a `next_cursor` to go on from, and an id is listed once in a walk from the first page to the last.",
    params(TypePath, IdsQuery),
    responses((status = 200, description = "A page of ids", body = IdsPage)),
)]
pub(crate) async fn aggregates(
    State(state): State<AppState>,
    Path(aggregate_type): Path<String>,
    Query(q): Query<IdsQuery>,
) -> Result<axum::Json<IdsPage>, Problem> {
    let limit = super::page_limit(&state, q.limit)?;
    let mut options = IdsPageOptions::new()
        .prefix(q.prefix.unwrap_or_default())
        .count(limit);
    if let Some(cursor) = q.cursor {
        options = options.cursor(cursor);
    }
    let page = state
        .runtime
        .store()
        .aggregate_ids_page(&aggregate_type, options)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(axum::Json(IdsPage {
        ids: page.ids,
        next_cursor: page.next_cursor,
    }))
}

/// One aggregate, without its events.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AggregateSummary {
    /// Its type.
    #[serde(rename = "type")]
    aggregate_type: String,
    /// Its id.
    id: String,
    /// Its latest revision: how many events it has.
    revision: u64,
}

/// `GET /v1/aggregates/{type}/{id}`: an aggregate's latest revision, without a replay.
#[utoipa::path(
    get,
    path = "/v1/aggregates/{type}/{id}",
    tag = "catalog",
    operation_id = "aggregate",
    summary = "An aggregate's latest revision (how many events it has), without reading them",
    params(AggregatePath),
    responses(
        (status = 200, description = "The aggregate", body = AggregateSummary),
        (status = 404, description = "The aggregate has no events"),
    ),
)]
pub(crate) async fn aggregate(
    State(state): State<AppState>,
    Path((aggregate_type, id)): Path<(String, String)>,
) -> Result<axum::Json<AggregateSummary>, Problem> {
    let revision = state
        .runtime
        .store()
        .revision(&aggregate_type, &id)
        .await
        .map_err(streamfold::Error::from)?;
    if revision == 0 {
        return Err(Problem::not_found(format!(
            "aggregate {aggregate_type}/{id} has no events"
        )));
    }
    Ok(axum::Json(AggregateSummary {
        aggregate_type,
        id,
        revision,
    }))
}
