//! `GET /v1/aggregates/{type}/{id}/state`: the reducer's state document itself.
//!
//! Headers say what it is: `ETag` (`"DIGEST:REVISION"`, so `If-None-Match` answers
//! 304 without a replay when nothing changed), `Streamfold-Revision`,
//! `Streamfold-Position`, `Streamfold-Reducer` (`name@version`) and
//! `Streamfold-Reducer-Digest`. `reducer=` replays through another registered
//! version instead of the active one ("what would this look like under v2?").

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use streamfold::{ReplayOptions, Replayed};

use utoipa::IntoParams;

use super::{AggregatePath, Path, Query, Revision, replay_slot};
use crate::AppState;
use crate::problem::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StateQuery {
    /// The state as of this revision (time travel). With `as_of` too, the state
    /// when the first of the two was reached.
    #[param(value_type = Option<Revision>, inline)]
    at_revision: Option<Revision>,
    /// The state as of this instant, RFC 3339 (time travel), by the time Redis
    /// stored each event. With `at_revision` too, the first of the two.
    as_of: Option<DateTime<Utc>>,
    /// Start from the latest usable snapshot (default true); false replays every event.
    snapshot: Option<bool>,
    /// Replay through this registered version (a digest or a version) instead of the
    /// active one.
    reducer: Option<String>,
}

fn etag(digest: &str, revision: u64) -> String {
    format!("\"{digest}:{revision}\"")
}

/// Whether `If-None-Match` names `tag` (or is `*`).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// `GET /v1/aggregates/{type}/{id}/state`.
#[utoipa::path(
    get,
    path = "/v1/aggregates/{type}/{id}/state",
    tag = "state",
    operation_id = "state",
    summary = "An aggregate's state, replayed through its reducer",
    description = "The body is the reducer's state document itself. `If-None-Match` with the `ETag` of a previous answer gets 304 when neither the events nor the active reducer changed.",
    params(
        AggregatePath,
        StateQuery,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of a previous answer"),
    ),
    responses(
        (status = 200, description = "The reducer's state document", body = serde_json::Value,
            headers(
                ("ETag" = String, description = "`\"DIGEST:REVISION\"`: the reducer's digest and the revision covered"),
                ("Streamfold-Revision" = u64, description = "The revision the state covers"),
                ("Streamfold-Position" = String, description = "The stream position of that revision's event"),
                ("Streamfold-Reducer" = String, description = "`name@version` of the reducer"),
                ("Streamfold-Reducer-Digest" = String, description = "`sha256:HEX` of the reducer"),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        (status = 400, description = "A bad parameter"),
        (status = 404, description = "No such aggregate, revision, reducer, or no active reducer for the type"),
        (status = 422, description = "The reducer rejected the history (`reducer-rejected`) or failed in the sandbox (`reducer-failed`); `reducer` names the plugin, the aggregate and the event"),
        (status = 503, description = "Redis is unavailable, or too many replays are running (`busy`); retry after `Retry-After`"),
    ),
)]
pub(crate) async fn state(
    State(state): State<AppState>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Query(q): Query<StateQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let rt = &state.runtime;
    let mut options = ReplayOptions::default().use_snapshots(q.snapshot.unwrap_or(true));
    if let Some(wanted) = &q.reducer {
        let reg = rt.registered(&aggregate_type, wanted).await?;
        options = options.plugin(rt.plugin(&reg.info.digest).await?);
    }
    let time_travel = q.at_revision.is_some() || q.as_of.is_some();

    // The current state through the active reducer: a revision and a digest say
    // whether the client's copy is still good, without replaying anything.
    if !time_travel && q.reducer.is_none() && headers.contains_key(header::IF_NONE_MATCH) {
        let revision = rt
            .store()
            .revision(&aggregate_type, &aggregate_id)
            .await
            .map_err(streamfold::Error::from)?;
        let plugin = rt.active_plugin(&aggregate_type).await?;
        let tag = etag(&plugin.info().digest, revision);
        if revision > 0 && not_modified(&headers, &tag) {
            return Ok(unchanged(&tag));
        }
    }

    if let Some(Revision(r)) = q.at_revision {
        options = options.at_revision(r);
    }
    if let Some(t) = q.as_of {
        options = options.as_of(t);
    }
    let _slot = replay_slot(&state).await?;
    let _running = state.metrics.replay_running();
    let started = std::time::Instant::now();
    let replayed = match rt.state(&aggregate_type, &aggregate_id, options).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.failed(&e);
            return Err(e.into());
        }
    };
    state.metrics.replayed(&replayed, started);
    let tag = etag(&replayed.plugin.digest, replayed.revision);
    if not_modified(&headers, &tag) {
        return Ok(unchanged(&tag));
    }
    Ok(found(replayed, &tag))
}

fn unchanged(tag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn found(replayed: Replayed, tag: &str) -> Response {
    let info = &replayed.plugin;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut put = |name: &'static str, value: String| {
        // Reducer names are checked at registration (no control characters), but
        // may hold non-ASCII text a header cannot: such a header is left out.
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("etag", tag.to_owned());
    put("streamfold-revision", replayed.revision.to_string());
    put("streamfold-position", replayed.position.clone());
    put(
        "streamfold-reducer",
        format!("{}@{}", info.name, info.version),
    );
    put(
        "streamfold-reducer-digest",
        format!("sha256:{}", info.digest),
    );
    (StatusCode::OK, headers, replayed.state).into_response()
}
