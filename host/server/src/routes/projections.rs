//! Projections over HTTP: read models folded from whole categories by sandboxed
//! components, and their documents.
//!
//! Managing projections (upload, activate, rebuild, resume, remove) needs `admin`;
//! reading their status and documents needs `read` on every aggregate type the
//! projection reads (a token limited to some types sees only the projections made
//! of those). Every server runs the active projections (one host per version at a
//! time, by lease); these routes only read and change what Redis holds.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use streamfold::{
    MAX_DOC_PAGE, OnError, ProjectionOptions, ProjectionSummary, RegisteredProjection, RunState,
    VersionStatus,
};
use utoipa::{IntoParams, ToSchema};

use super::subscribe::{Sender, slot, sse};
use super::{Body, Json, Path, Query};
use crate::AppState;
use crate::auth::{Caller, Role};
use crate::problem::{Problem, ProblemType};

/// Document changes read per page of a subscription.
const CHANGES_PAGE: usize = 100;
/// How long one read of a subscription waits for changes before it looks again.
const CHANGES_BLOCK: Duration = Duration::from_secs(5);
/// The most bytes of a document key in a path or query.
const MAX_KEY_BYTES: usize = 1_024;

/// The path of a projection (for the OpenAPI document).
#[derive(IntoParams)]
#[into_params(names("name"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct NamePath(
    /// The projection's name, as its component's `info` gives it, e.g.
    /// `email-domains`.
    String,
);

/// The path of one version of a projection.
#[derive(IntoParams)]
#[into_params(names("name", "version"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct VersionPath(
    /// The projection's name.
    String,
    /// The version: its digest, a digest prefix of 6 or more hex digits, or its
    /// semantic version.
    #[param(min_length = 1, max_length = 128)]
    String,
);

/// The path of a document.
#[derive(IntoParams)]
#[into_params(names("name", "key"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct DocPath(
    /// The projection's name.
    String,
    /// The document's key, e.g. `domain/example.com` (slashes included).
    #[param(min_length = 1, max_length = 1024)]
    String,
);

/// 403 unless the caller may read every type the projection reads.
fn may_read(caller: &Caller, sources: &[String]) -> Result<(), Problem> {
    sources
        .iter()
        .try_for_each(|t| caller.require(Role::Read, Some(t)))
}

/// The projection's summary, after checking the caller may read it.
async fn readable(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<ProjectionSummary, Problem> {
    let summary = state.runtime.projection_status(name).await?;
    may_read(caller, &sources(&summary))?;
    Ok(summary)
}

/// Every type any version of a projection reads.
fn sources(summary: &ProjectionSummary) -> Vec<String> {
    let mut out: Vec<String> = summary
        .versions
        .iter()
        .flat_map(|v| v.info.sources.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// Make it the active version (default true): servers build its read model from
    /// the beginning under its own keys, and reads switch to it once it has caught
    /// up.
    activate: Option<bool>,
    /// What the projection does when it fails on an event: `stop` (the default for
    /// a new projection: its status names the event) or `skip` (the event and the
    /// error go to its dead letters and it goes on). Kept when not given.
    #[param(inline, value_type = Option<OnErrorParam>)]
    on_error: Option<OnErrorParam>,
}

/// `stop` or `skip`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnErrorParam {
    /// Stop at the failing event.
    Stop,
    /// Dead-letter it and go on.
    Skip,
}

impl From<OnErrorParam> for OnError {
    fn from(p: OnErrorParam) -> Self {
        match p {
            OnErrorParam::Stop => OnError::Stop,
            OnErrorParam::Skip => OnError::Skip,
        }
    }
}

/// `POST /v1/projections?activate=&on_error=`: the `.wasm` is the body.
#[utoipa::path(
    post,
    path = "/v1/projections",
    tag = "projections",
    operation_id = "upload_projection",
    summary = "Register (and by default activate) a projection component",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "Registered: its info, digest and whether it is active and serving", body = RegisteredProjection),
        (status = 400, description = "Not a usable projection component (`invalid-plugin`), or a bad parameter"),
        (status = 403, description = "Not an admin token, or not for every type the projection reads"),
        (status = 413, description = "Over the upload limit"),
        (status = 415, description = "Not `application/wasm`"),
    ),
)]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    Body(bytes): Body,
) -> Result<Response, Problem> {
    let component = state.runtime.load_projection(bytes.to_vec().into()).await?;
    component
        .info()
        .sources
        .iter()
        .try_for_each(|t| caller.require(Role::Admin, Some(t)))?;
    let mut options = ProjectionOptions::default().activate(q.activate.unwrap_or(true));
    if let Some(on_error) = q.on_error {
        options = options.on_error(on_error.into());
    }
    let reg = state
        .runtime
        .register_projection(bytes.to_vec(), options)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(reg)).into_response())
}

/// A version of a projection, as the list names it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProjectionVersionRef)]
pub(crate) struct VersionRef {
    /// Its semantic version.
    version: String,
    /// Its digest (the version id).
    digest: String,
}

/// Where a version stopped: the event, and why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectionError {
    /// The event's position in its category partition.
    position: String,
    /// The event's aggregate type.
    aggregate_type: String,
    /// The event's aggregate id.
    aggregate_id: String,
    /// The event's id.
    event_id: String,
    /// The event's type.
    event_type: String,
    /// Why (the projection's own text, bounded and escaped).
    error: String,
    /// When, Unix ms.
    at_ms: u64,
}

/// One version's progress.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectionVersionStatus {
    /// Its semantic version.
    version: String,
    /// Its digest.
    digest: String,
    /// Whether reads follow it.
    serving: bool,
    /// Whether servers build it and keep it up to date.
    active: bool,
    /// `catching-up`, `live`, `stopped` (no server runs it) or `failed`.
    #[schema(value_type = String, example = "live")]
    status: RunState,
    /// The last position folded, per source category partition.
    position: std::collections::BTreeMap<String, String>,
    /// Source events folded since it was built.
    events: u64,
    /// Source events it has not folded yet (`null`: it cannot tell, a version
    /// first run by an older server).
    lag: Option<u64>,
    /// How far behind its sources it is, by time (ms between the newest source event
    /// and the last one folded); 0 when caught up.
    lag_ms: u64,
    /// Whether it has folded every source event there is.
    caught_up: bool,
    /// Events folded per second, as its runner last measured.
    events_per_second: f64,
    /// When it last committed, Unix ms.
    last_commit_ms: Option<u64>,
    /// Where it stopped, and why (`null` unless it failed).
    last_error: Option<ProjectionError>,
    /// Events dead-lettered (with `on_error=skip`) and kept.
    dead_letters: u64,
    /// Set when the category trim had dropped source events before this version
    /// read them.
    trimmed: Option<String>,
    /// Which server runs it (`null`: none).
    runner: Option<String>,
}

impl From<&VersionStatus> for ProjectionVersionStatus {
    fn from(s: &VersionStatus) -> Self {
        ProjectionVersionStatus {
            version: s.version.clone(),
            digest: s.vid.clone(),
            serving: s.serving,
            active: s.active,
            status: s.state,
            position: s.position.clone().into_iter().collect(),
            events: s.events,
            lag: s.lag_events,
            lag_ms: s.lag_ms,
            caught_up: s.caught_up,
            events_per_second: s.events_per_second,
            last_commit_ms: s.last_commit_ms,
            last_error: s.failure.as_ref().map(|f| ProjectionError {
                position: f.position.clone(),
                aggregate_type: f.aggregate_type.clone(),
                aggregate_id: f.aggregate_id.clone(),
                event_id: f.event_id.clone(),
                event_type: f.event_type.clone(),
                error: f.error.clone(),
                at_ms: f.at_ms,
            }),
            dead_letters: s.dead_letters,
            trimmed: s.trimmed.clone(),
            runner: s.runner.as_ref().map(|r| r.holder.clone()),
        }
    }
}

/// A projection: which versions serve and build, and how they are doing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectionView {
    /// Its name.
    name: String,
    /// The version reads follow (`null` until its first version has caught up).
    serving: Option<VersionRef>,
    /// The version servers build and keep up to date.
    active: Option<VersionRef>,
    /// The active version's status (else the serving one's): `catching-up`, `live`,
    /// `stopped` or `failed`.
    #[schema(value_type = Option<String>, example = "live")]
    status: Option<RunState>,
    /// The active version's position, per source category partition.
    position: std::collections::BTreeMap<String, String>,
    /// The active version's lag: source events it has not folded yet (`null`: it
    /// cannot tell).
    lag: Option<u64>,
    /// The active version's lag, by time (ms).
    lag_ms: u64,
    /// The active version's events per second.
    events_per_second: f64,
    /// The active version's last error, if it stopped at an event.
    last_error: Option<ProjectionError>,
    /// The active version's dead letters.
    dead_letters: u64,
    /// `stop` or `skip`.
    on_error: String,
    /// The serving and the active version's status (one entry when they are the
    /// same), serving first.
    versions_running: Vec<ProjectionVersionStatus>,
    /// Every registered version, oldest first.
    versions: Vec<RegisteredProjection>,
}

impl From<ProjectionSummary> for ProjectionView {
    fn from(s: ProjectionSummary) -> Self {
        let refer = |vid: &Option<String>| {
            vid.as_ref().map(|vid| VersionRef {
                version: s
                    .versions
                    .iter()
                    .find(|v| &v.info.digest == vid)
                    .map(|v| v.info.version.clone())
                    .unwrap_or_default(),
                digest: vid.clone(),
            })
        };
        let main = s
            .active_status()
            .or_else(|| s.serving_status())
            .map(ProjectionVersionStatus::from);
        ProjectionView {
            name: s.name.clone(),
            serving: refer(&s.serving),
            active: refer(&s.active),
            status: main.as_ref().map(|m| m.status),
            position: main
                .as_ref()
                .map(|m| m.position.clone())
                .unwrap_or_default(),
            lag: main.as_ref().and_then(|m| m.lag),
            lag_ms: main.as_ref().map_or(0, |m| m.lag_ms),
            events_per_second: main.as_ref().map_or(0.0, |m| m.events_per_second),
            dead_letters: main.as_ref().map_or(0, |m| m.dead_letters),
            last_error: main.and_then(|m| m.last_error),
            on_error: s.on_error.to_string(),
            versions_running: s.status.iter().map(ProjectionVersionStatus::from).collect(),
            versions: s.versions,
        }
    }
}

/// Every projection the caller may read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectionList {
    /// The projections, by name.
    projections: Vec<ProjectionView>,
}

/// `GET /v1/projections`.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "projections",
    operation_id = "list_projections",
    summary = "Every projection: its serving and active version, status, position, lag (events and time), rate, last error, dead letters",
    responses((status = 200, description = "The projections whose every source type the token may read", body = ProjectionList)),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ProjectionList>, Problem> {
    let mut projections = Vec::new();
    for s in state.runtime.list_projections().await? {
        if sources(&s).iter().all(|t| caller.may_see(t)) {
            projections.push(s.into());
        }
    }
    Ok(axum::Json(ProjectionList { projections }))
}

/// `GET /v1/projections/{name}`.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}",
    tag = "projections",
    operation_id = "get_projection",
    summary = "One projection's versions and status",
    params(NamePath),
    responses(
        (status = 200, description = "The projection", body = ProjectionView),
        (status = 404, description = "No such projection"),
    ),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<ProjectionView>, Problem> {
    Ok(axum::Json(readable(&state, &caller, &name).await?.into()))
}

/// Which version to activate, and the failure policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectionActivateRequest)]
pub(crate) struct ActivateBody {
    /// The version: its digest, a digest prefix of 6 or more hex digits, or its
    /// semantic version.
    #[schema(min_length = 1, max_length = 128)]
    version: String,
    /// `stop` or `skip`; kept when not given.
    on_error: Option<OnErrorParam>,
}

/// `PUT /v1/projections/{name}/active`: also the rollback.
#[utoipa::path(
    put,
    path = "/v1/projections/{name}/active",
    tag = "projections",
    operation_id = "activate_projection",
    summary = "Activate a registered version (reads switch to it once it has caught up; activating an older one is the rollback)",
    params(NamePath),
    request_body = ActivateBody,
    responses(
        (status = 200, description = "Now active", body = RegisteredProjection),
        (status = 404, description = "No such projection or version"),
    ),
)]
pub(crate) async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<axum::Json<RegisteredProjection>, Problem> {
    let versions = state.runtime.projection_versions(&name).await?;
    for v in &versions {
        v.info
            .sources
            .iter()
            .try_for_each(|t| caller.require(Role::Admin, Some(t)))?;
    }
    let reg = state
        .runtime
        .activate_projection(&name, &body.version, body.on_error.map(Into::into))
        .await?;
    Ok(axum::Json(reg))
}

/// Checks an admin may manage projection `name` (every type it reads).
async fn manageable(state: &AppState, caller: &Caller, name: &str) -> Result<(), Problem> {
    let summary = state.runtime.projection_status(name).await?;
    sources(&summary)
        .iter()
        .try_for_each(|t| caller.require(Role::Admin, Some(t)))
}

/// `POST /v1/projections/{name}/rebuild`.
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/rebuild",
    tag = "projections",
    operation_id = "rebuild_projection",
    summary = "Rebuild the active version from the beginning, in place",
    description = "Drops the active version's documents, position and dead letters in one step; servers build it again from position 0. Reads of it see the model build up again: to keep serving the old model meanwhile, upload and activate a new version instead.",
    params(NamePath),
    responses(
        (status = 202, description = "The version being rebuilt", body = RegisteredProjection),
        (status = 404, description = "No such projection, or it has no active version"),
    ),
)]
pub(crate) async fn rebuild(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    manageable(&state, &caller, &name).await?;
    let reg = state.runtime.rebuild_projection(&name).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(reg)).into_response())
}

/// `POST /v1/projections/{name}/resume`.
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/resume",
    tag = "projections",
    operation_id = "resume_projection",
    summary = "Retry the event a failed projection stopped at",
    params(NamePath),
    responses(
        (status = 202, description = "Its runner retries the event"),
        (status = 404, description = "No such projection"),
    ),
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    manageable(&state, &caller, &name).await?;
    state.runtime.resume_projection(&name).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v1/projections/{name}/{version}`.
#[utoipa::path(
    delete,
    path = "/v1/projections/{name}/{version}",
    tag = "projections",
    operation_id = "remove_projection",
    summary = "Remove a version: its read model, position, registration and component",
    params(VersionPath),
    responses(
        (status = 200, description = "Removed", body = RegisteredProjection),
        (status = 404, description = "No such projection or version"),
        (status = 409, description = "It is the serving or the active version (`active-plugin`): activate another one first"),
    ),
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<RegisteredProjection>, Problem> {
    manageable(&state, &caller, &name).await?;
    let v = state.runtime.projection_version(&name, &version).await?;
    if v.serving || v.active {
        return Err(Problem::new(
            ProblemType::ActivePlugin,
            format!(
                "{} is the {} version of projection {name:?}: activate another version (and let reads switch to it) first",
                v.info.label(),
                if v.serving { "serving" } else { "active" }
            ),
        ));
    }
    Ok(axum::Json(
        state
            .runtime
            .remove_projection(&name, &v.info.digest)
            .await?,
    ))
}

/// `If-None-Match` holds `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// A JSON answer with an `ETag`, or 304 when the client has it.
fn tagged(headers: &HeaderMap, etag: String, body: String) -> Response {
    let etag = format!("\"{etag}\"");
    let value = HeaderValue::from_str(&etag).expect("etags are hex, colons and dashes");
    if not_modified(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, value)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, value),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/projections/{name}/docs/{key}`.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/docs/{key}",
    tag = "projections",
    operation_id = "get_projection_doc",
    summary = "One document of the serving version, as the projection wrote it",
    params(
        DocPath,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the copy the client has: 304 if it is still the document"),
    ),
    responses(
        (status = 200, description = "The document (JSON), with an `ETag`", content_type = "application/json", body = serde_json::Value),
        (status = 304, description = "Not modified since the ETag given"),
        (status = 404, description = "No such projection or document, or no version serves reads yet"),
    ),
)]
pub(crate) async fn doc(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, Problem> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Problem::invalid(format!(
            "a document key has 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    readable(&state, &caller, &name).await?;
    match state.runtime.projection_doc(&name, &key).await? {
        Some(d) => Ok(tagged(&headers, d.etag, d.doc)),
        None => Err(Problem::new(
            ProblemType::NotFound,
            format!(
                "projection {name:?} has no document {:?}",
                streamfold::text::shown(&key, 256)
            ),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DocsQuery {
    /// Only keys that start with this, e.g. `domain/`.
    #[param(max_length = 1024)]
    prefix: Option<String>,
    /// Start after this key (a page's `next_after`).
    #[param(max_length = 1024)]
    after: Option<String>,
    /// At most this many documents (1 to 1,000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One document of a page.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyedDoc {
    /// Its key.
    key: String,
    /// The document.
    doc: serde_json::Value,
}

/// A page of documents in key order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DocsPage {
    /// The documents.
    docs: Vec<KeyedDoc>,
    /// The `after` of the next page; `null` after the last one.
    next_after: Option<String>,
}

/// `GET /v1/projections/{name}/docs?prefix=&after=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/docs",
    tag = "projections",
    operation_id = "list_projection_docs",
    summary = "Documents of the serving version in key order, a page at a time",
    params(
        NamePath,
        DocsQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the page the client has: 304 if nothing changed"),
    ),
    responses(
        (status = 200, description = "A page, with an `ETag` that changes with any document", body = DocsPage),
        (status = 304, description = "Nothing changed since the ETag given"),
        (status = 404, description = "No such projection, or no version serves reads yet"),
    ),
)]
pub(crate) async fn docs(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<DocsQuery>,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_DOC_PAGE).contains(&limit) {
        return Err(Problem::invalid(format!(
            "limit is 1 to {MAX_DOC_PAGE}, not {limit}"
        )));
    }
    readable(&state, &caller, &name).await?;
    let page = state
        .runtime
        .projection_docs(
            &name,
            q.prefix.as_deref().unwrap_or(""),
            // An empty `after` is no `after`: every key is after it.
            q.after.as_deref().filter(|a| !a.is_empty()),
            limit,
        )
        .await?;
    let body = DocsPage {
        docs: page
            .docs
            .into_iter()
            .map(|(key, doc)| KeyedDoc {
                key,
                // Checked to be JSON when it was written.
                doc: serde_json::from_str(&doc).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
        next_after: page.next_after,
    };
    let etag = page.etag.replace(':', "-");
    Ok(tagged(
        &headers,
        etag,
        serde_json::to_string(&body).expect("pages serialize"),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangesQuery {
    /// Resume after this change (`Last-Event-ID` wins): an event id of an earlier
    /// subscription, `version/change-id`.
    #[param(max_length = 256)]
    after: Option<String>,
}

/// `GET /v1/projections/{name}/subscribe`.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/subscribe",
    tag = "projections",
    operation_id = "subscribe_projection",
    summary = "Follow the document changes of the serving version live (Server-Sent Events)",
    description = "Each change is an event named `change` whose data is `{\"key\", \"op\": \"put\"|\"delete\"|\"reset\", \"position\"}` (the position of the source event that caused it) and whose id resumes after it (`Last-Event-ID`: no gap, no duplicate). An event named `resync` says changes were missed (trimmed from the capped change stream, a rebuild, or reads switched to another version): read the documents again. Comments keep idle connections open.",
    params(
        NamePath,
        ChangesQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this change"),
    ),
    responses(
        (status = 200, description = "The change stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such projection, or no version serves reads yet"),
        (status = 503, description = "Too many subscriptions (`busy`)"),
    ),
)]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> Result<Response, Problem> {
    readable(&state, &caller, &name).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.after);
    if after.as_ref().is_some_and(|a| a.len() > 256) {
        return Err(Problem::invalid("a change position has at most 256 bytes"));
    }
    let permit = slot(&state)?;
    let mut feed = state
        .runtime
        .watch_projection(&name, after.as_deref(), CHANGES_PAGE, CHANGES_BLOCK)
        .await?;
    Ok(sse(state, permit, move |out: Sender| async move {
        loop {
            match feed.next().await {
                Ok(page) => {
                    if page.missed || page.switched {
                        let data = serde_json::json!({
                            "version": page.vid,
                            "switched": page.switched,
                        });
                        let mut e = Event::default().event("resync").data(data.to_string());
                        if let Some(p) = &page.position {
                            e = e.id(p.clone());
                        }
                        if !out.send(e).await {
                            return;
                        }
                    }
                    for c in page.changes {
                        let e = Event::default()
                            .event("change")
                            .id(c.position.clone())
                            .data(serde_json::to_string(&c.change).expect("changes serialize"));
                        if !out.send(e).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    out.send(super::subscribe::failure(&e)).await;
                    return;
                }
            }
        }
    }))
}
