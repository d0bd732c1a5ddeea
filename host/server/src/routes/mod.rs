//! The routes, one file per resource, and the extractors that turn every bad request
//! into a problem+json answer (axum's own rejections are plain text).

mod catalog;
mod declare;
mod events;
mod groups;
pub(crate) mod openapi;
mod ops;
mod plugins;
mod projections;
mod session;
mod state;
mod subscribe;

use axum::Router;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware;
use serde::de::DeserializeOwned;
use streamfold::names::MAX_REVISION;
use utoipa_axum::routes;

use crate::problem::{Problem, ProblemType};
use crate::{AppState, ServerConfig};
pub(crate) use declare::Names;
use declare::{Api, Route, Scope};

/// Every route of the API, declared once: its handler (whose `#[utoipa::path]` gives
/// the method, path, parameters and success responses) and who may call it, with
/// what body, and which problems it can answer. See `declare` for what a
/// declaration does.
pub(crate) fn api(config: &ServerConfig) -> Api {
    use ProblemType::*;
    let (append_body, plugin_body) = (config.append_body_bytes, config.plugin_body_bytes);
    Api::new()
        // Events
        .add(
            routes!(events::append),
            Route::write(Scope::Path)
                .json(append_body)
                .answers(&[Conflict]),
        )
        .add(
            routes!(events::history),
            Route::read(Scope::Path).answers(&[NotFound]),
        )
        .add(
            routes!(events::category),
            Route::read(Scope::Path).answers(&[NotFound, PositionMismatch]),
        )
        // Catalog
        .add(routes!(catalog::types), Route::read(Scope::All))
        .add(routes!(catalog::aggregates), Route::read(Scope::Path))
        .add(
            routes!(catalog::aggregate),
            Route::read(Scope::Path).answers(&[NotFound]),
        )
        // State
        .add(
            routes!(state::state),
            Route::read(Scope::Path).answers(&[NotFound, ReducerRejected, ReducerFailed, Busy]),
        )
        // Live subscriptions last as long as the client stays: no request timeout.
        .add(
            routes!(subscribe::category),
            Route::read(Scope::Path).live().answers(&[NotFound, Busy]),
        )
        .add(
            routes!(subscribe::aggregate),
            Route::read(Scope::Path).live().answers(&[NotFound, Busy]),
        )
        // Plugins
        .add(
            routes!(plugins::upload),
            Route::admin(Scope::Body).wasm(plugin_body).answers(&[
                InvalidPlugin,
                VerificationFailed,
                Busy,
            ]),
        )
        .add(routes!(plugins::list), Route::read(Scope::Query))
        .add(
            routes!(plugins::verify),
            Route::read(Scope::Body)
                .wasm(plugin_body)
                .answers(&[InvalidPlugin, WrongType, Busy]),
        )
        .add(
            routes!(plugins::activate),
            Route::admin(Scope::Path)
                .json(append_body)
                .answers(&[NotFound]),
        )
        .add(routes!(plugins::history), Route::read(Scope::Path))
        .add(
            routes!(plugins::remove),
            Route::admin(Scope::Path).answers(&[NotFound, ActivePlugin]),
        )
        // Durable subscriptions: creating, deleting and replaying parked events are an
        // operator's (admin); workers fetch, ack and nack with read. A fetch waits at
        // most until shortly before the request timeout, so it keeps it.
        .add(
            routes!(groups::create),
            Route::admin(Scope::Path)
                .json(append_body)
                .answers(&[GroupExists, PositionMismatch]),
        )
        .add(routes!(groups::list), Route::read(Scope::All))
        .add(
            routes!(groups::show),
            Route::read(Scope::Path).answers(&[NotFound]),
        )
        .add(
            routes!(groups::delete),
            Route::admin(Scope::Path).answers(&[NotFound]),
        )
        .add(
            routes!(groups::fetch),
            Route::read(Scope::Path)
                .json(append_body)
                .answers(&[NotFound]),
        )
        .add(
            routes!(groups::ack),
            Route::read(Scope::Path)
                .json(append_body)
                .answers(&[NotFound]),
        )
        .add(
            routes!(groups::nack),
            Route::read(Scope::Path)
                .json(append_body)
                .answers(&[NotFound]),
        )
        .add(
            routes!(groups::parked),
            Route::read(Scope::Path).answers(&[NotFound, PositionMismatch]),
        )
        .add(
            routes!(groups::replay),
            Route::admin(Scope::Path).answers(&[NotFound]),
        )
        // Projections: managing them is an operator's job; reading their status
        // and documents needs read on every type they fold.
        .add(
            routes!(projections::upload),
            Route::admin(Scope::Sources)
                .wasm(plugin_body)
                .answers(&[InvalidPlugin]),
        )
        .add(routes!(projections::list), Route::read(Scope::All))
        .add(
            routes!(projections::get),
            Route::read(Scope::Sources).answers(&[NotFound]),
        )
        .add(
            routes!(projections::activate),
            Route::admin(Scope::Sources)
                .json(append_body)
                .answers(&[NotFound]),
        )
        .add(
            routes!(projections::rebuild),
            Route::admin(Scope::Sources).answers(&[NotFound]),
        )
        .add(
            routes!(projections::resume),
            Route::admin(Scope::Sources).answers(&[NotFound]),
        )
        .add(
            routes!(projections::remove),
            Route::admin(Scope::Sources).answers(&[NotFound, ActivePlugin]),
        )
        .add(
            routes!(projections::doc),
            Route::read(Scope::Sources).answers(&[NotFound]),
        )
        .add(
            routes!(projections::docs),
            Route::read(Scope::Sources).answers(&[NotFound]),
        )
        .add(
            routes!(projections::subscribe),
            Route::read(Scope::Sources)
                .live()
                .answers(&[NotFound, Busy]),
        )
        // Browser sessions: signing in needs a bearer token (a cookie only reads).
        .add(routes!(session::sign_in), Route::read(Scope::All))
        .add(routes!(session::sign_out), Route::public())
        // Operations and the API's description: public, like liveness checks.
        .add(routes!(openapi::serve), Route::public())
        .add(routes!(ops::healthz), Route::public())
        .add(
            routes!(ops::readyz),
            Route::public().answers(&[Unavailable]),
        )
        .add(routes!(crate::metrics::metrics), Route::public())
}

pub(crate) fn router(state: AppState, api: &Api) -> Router {
    let mut router = api
        .router(&state)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ));
    // The explorer is a page, not the API: public, unguarded (it reads through the
    // API like any client), and not in the document.
    if state.config.ui {
        router = router.merge(crate::ui::routes());
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    tower_http::request_id::MakeRequestUuid,
                ))
                .layer(
                    tower_http::trace::TraceLayer::new_for_http().make_span_with(
                        |req: &axum::http::Request<axum::body::Body>| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                        },
                    ),
                )
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
                // gzip for clients that ask (`Accept-Encoding`); never for the
                // event streams (tower-http's default predicate leaves
                // `text/event-stream` alone) nor bodies under 32 bytes.
                .layer(tower_http::compression::CompressionLayer::new()),
        )
        .with_state(state)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        ProblemType::MethodNotAllowed,
        format!("{} does not take {method}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("there is no route {}", uri.path()))
}

/// A stream position as a client gives one back (`ms-seq`): its schema is exactly
/// what the store accepts.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Position(pub String);

impl utoipa::PartialSchema for Position {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            streamfold::names::POSITION_PATTERN,
            "A stream position, `ms-seq` (or `ms`), as the server gave it",
        )
    }
}

impl utoipa::ToSchema for Position {}

/// A whole category's position (one per partition, comma-separated) as a client
/// gives one back.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Positions(pub String);

impl utoipa::PartialSchema for Positions {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            streamfold::names::POSITIONS_PATTERN,
            "A category position as the server gave it: one stream position per partition of the type, comma-separated, empty for a partition not read yet (for a type with one partition, that partition's position). A position with another number of parts than the type has partitions is refused (409 `position-mismatch`).",
        )
    }
}

impl utoipa::ToSchema for Positions {}

fn string_schema(
    pattern: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// A revision a client names (a query parameter): 0 to [`MAX_REVISION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Revision(pub u64);

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n > MAX_REVISION {
            return Err(serde::de::Error::custom(format!(
                "revision {n} is over the largest, {MAX_REVISION}"
            )));
        }
        Ok(Revision(n))
    }
}

impl utoipa::PartialSchema for Revision {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(0))
            .maximum(Some(MAX_REVISION))
            .into()
    }
}

impl utoipa::ToSchema for Revision {}

/// The path of an aggregate (for the OpenAPI document; handlers take `Path<(String, String)>`).
#[derive(utoipa::IntoParams)]
#[into_params(names("type", "id"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct AggregatePath(
    /// The aggregate type, e.g. `user`.
    String,
    /// The aggregate's id within its type, e.g. `42`.
    String,
);

/// The path of an aggregate type (for the OpenAPI document).
#[derive(utoipa::IntoParams)]
#[into_params(names("type"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct TypePath(
    /// The aggregate type, e.g. `user`.
    String,
);

/// A JSON body, or a problem: 400 for bad JSON or a wrong shape (naming the
/// field), 413 over the body limit, 415 without `Content-Type: application/json`.
pub(crate) struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::new(
                ProblemType::UnsupportedMediaType,
                "the body must be JSON (Content-Type: application/json)",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(bytes_problem(e)),
            Err(e) => Err(Problem::invalid(e.body_text())),
        }
    }
}

/// A raw body (a `.wasm`: the route's declaration checks its media type), or a
/// problem: 413 over the limit.
pub(crate) struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(bytes_problem)
    }
}

fn bytes_problem(e: BytesRejection) -> Problem {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Problem::too_large(format!(
            "the body is over this route's limit: {}",
            e.body_text()
        ))
    } else {
        Problem::invalid(e.body_text())
    }
}

/// Query parameters, or a 400 problem naming the bad one.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| Problem::invalid(e.body_text()))
    }
}

/// Path parameters, or a 400 problem.
pub(crate) struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| Problem::invalid(e.body_text()))
    }
}

/// The default page of a read.
const DEFAULT_LIMIT: usize = 1000;

/// The page size a read asks for (`limit`, default 1,000), or 400 outside 1 to the
/// server's maximum page.
pub(crate) fn page_limit(state: &AppState, asked: Option<usize>) -> Result<usize, Problem> {
    let max = state.config.max_page;
    match asked.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(Problem::invalid("limit must be at least 1")),
        n if n > max => Err(Problem::invalid(format!(
            "limit {n} is over the maximum of {max}"
        ))),
        n => Ok(n),
    }
}

/// 404 unless `aggregate_type` has a category partition `partition`.
pub(crate) fn partition_exists(
    store: &streamfold::EventStore,
    aggregate_type: &str,
    partition: u32,
) -> Result<(), Problem> {
    let partitions = store.config().partitions_of(aggregate_type);
    if partition >= partitions {
        return Err(Problem::not_found(format!(
            "type {aggregate_type:?} has no partition {partition} (it has {partitions})"
        )));
    }
    Ok(())
}

/// A category position as given (`None` for an empty one: from the start): one part
/// for one `partition`, else one per partition of the type; 409 with another number
/// of parts (a position made for another partition count).
pub(crate) fn category_after(
    store: &streamfold::EventStore,
    aggregate_type: &str,
    after: Option<Positions>,
    partition: Option<u32>,
) -> Result<Option<String>, Problem> {
    let Some(Positions(after)) = after.filter(|p| !p.0.is_empty()) else {
        return Ok(None);
    };
    let partitions = match partition {
        Some(_) => 1,
        None => store.config().partitions_of(aggregate_type) as usize,
    };
    let parts = after.split(',').count();
    if parts != partitions {
        let of = match partition {
            Some(p) => format!("partition {p} of type {aggregate_type:?} has one position"),
            None => format!("type {aggregate_type:?} has {partitions} partition(s)"),
        };
        return Err(Problem::new(
            ProblemType::PositionMismatch,
            format!("the category position {after:?} has {parts} part(s), but {of}"),
        ));
    }
    Ok(Some(after))
}

/// A replay slot: at once if one is free, else the first to free up within
/// `replay_queue_timeout` (waiters are served in order); after that 503 with
/// `Retry-After`. Never an unbounded queue of replays.
pub(crate) async fn replay_slot(
    state: &AppState,
) -> Result<tokio::sync::OwnedSemaphorePermit, Problem> {
    if let Ok(permit) = state.replays.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let wait = state.config.replay_queue_timeout;
    match tokio::time::timeout(wait, state.replays.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Problem::busy(
            format!(
                "{} replays are running, the most this server runs at once, and none ended within {wait:?}; retry shortly",
                state.config.max_concurrent_replays
            ),
            1,
        )),
    }
}
