//! `/healthz` (the process lives) and `/readyz` (Redis answers, as the background
//! check last found: it never waits on Redis).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::{Problem, ProblemType};

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
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
    operation_id = "readyz",
    summary = "Readiness: Redis answers",
    description = "Answers at once with what a background check (a `PING` every 500 ms, each bounded to 1 s) last found; it never waits on Redis. `redis.since` says since when Redis has answered, or has been away; `away_ms` how long it has been away.",
    responses(
        (status = 200, description = "`{\"status\": \"ready\", \"redis\": {\"up\": true, \"since\": RFC 3339}}`", body = serde_json::Value),
        (status = 503, description = "Redis does not answer: `detail` says why, `away_ms` for how long, `readiness` is `not-ready`"),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let redis = state.health.now();
    let since = redis
        .since_utc
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if redis.up {
        return axum::Json(json!({
            "status": "ready",
            "redis": {"up": true, "since": since},
        }))
        .into_response();
    }
    let away = redis.since.elapsed();
    Problem::new(
        ProblemType::Unavailable,
        format!(
            "Redis has not answered for {:.1} s: {}",
            away.as_secs_f64(),
            redis.reason
        ),
    )
    // Not `status`: in a problem that is the HTTP status, a number (RFC 9457).
    .with("readiness", "not-ready")
    .with("away_ms", away.as_millis() as u64)
    .with("redis", json!({"up": false, "since": since}))
    .into_response()
}
