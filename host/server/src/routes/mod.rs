//! The routes, one file per resource, and the extractors that turn every bad request
//! into a problem+json answer (axum's own rejections are plain text).

mod events;
pub(crate) mod openapi;
mod ops;
mod plugins;
mod state;
mod subscribe;

use axum::Router;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;

pub(crate) fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let v1 = Router::new()
        .route(
            "/aggregates/{type}/{id}/events",
            post(events::append)
                .layer(DefaultBodyLimit::max(state.config.append_body_bytes))
                .get(events::history),
        )
        .route("/aggregates/{type}/{id}/state", get(state::state))
        .route("/categories/{type}/events", get(events::category))
        .route(
            "/plugins",
            post(plugins::upload)
                .layer(DefaultBodyLimit::max(state.config.plugin_body_bytes))
                .get(plugins::list),
        )
        .route(
            "/plugins/verify",
            post(plugins::verify).layer(DefaultBodyLimit::max(state.config.plugin_body_bytes)),
        )
        .route("/plugins/{type}/active", put(plugins::activate))
        .route("/plugins/{type}/history", get(plugins::history))
        .route(
            "/plugins/{type}/{digest_or_version}",
            axum::routing::delete(plugins::remove),
        )
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            bounded_in_time(req, next, timeout)
        }))
        // Live subscriptions last as long as the client stays: no request timeout.
        .route("/categories/{type}/subscribe", get(subscribe::category))
        .route(
            "/aggregates/{type}/{id}/subscribe",
            get(subscribe::aggregate),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ));
    Router::new()
        // The API's description is public, like the liveness checks.
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .nest("/v1", v1)
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
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("there is no route {}", uri.path()))
}

/// Ends a request that takes longer than the request timeout with 503.
async fn bounded_in_time(req: Request, next: Next, timeout: std::time::Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
            format!("the request took longer than {timeout:?}"),
        )
        .retry_after(1)
        .into_response(),
    }
}

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
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON (Content-Type: application/json)",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(bytes_problem(e)),
            Err(e) => Err(Problem::invalid(e.body_text())),
        }
    }
}

/// A raw body (a `.wasm`), or a problem: 413 over the limit.
pub(crate) struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let wasm = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.starts_with("application/wasm") || v.starts_with("application/octet-stream")
            });
        if !wasm {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be a component (Content-Type: application/wasm)",
            ));
        }
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(bytes_problem)
    }
}

fn bytes_problem(e: BytesRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
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
