//! `/healthz` (the process lives) and `/readyz` (Redis answers).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::Problem;

/// How long `/readyz` waits for Redis.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: answers while the process lives",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value)),
)]
pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: Redis answers",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = serde_json::Value),
        (status = 503, description = "Redis is unreachable; `detail` says why", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.runtime.store().ping()).await;
    let reason = match ping {
        Ok(Ok(())) => return axum::Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "Redis at {} did not answer within {READY_TIMEOUT:?}",
            state.runtime.store().url()
        ),
    };
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Not ready",
        reason,
    );
    // Not `status`: in a problem that is the HTTP status, a number (RFC 9457).
    p = p.with("readiness", "not-ready");
    let mut r = p.into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(1),
    );
    r
}
