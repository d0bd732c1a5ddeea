//! `POST /v1/session` and `DELETE /v1/session`: a browser's sign-in and sign-out (see
//! `crate::session`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Caller, Tokens, bearer};
use crate::problem::Problem;
use crate::session::COOKIE;

/// What a session grants.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Session {
    /// Always `read`: a session grants reads (`GET`) only.
    role: &'static str,
    /// The aggregate types it is limited to (the token's; `null`: all).
    types: Option<Vec<String>>,
    /// When it ends (`null`: no session was needed, the server has no tokens file).
    expires_at: Option<DateTime<Utc>>,
}

/// Whether the request came over HTTPS, as far as this server can tell.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(response: &mut Response, value: &str, max_age: u64, secure: bool) {
    let cookie = format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /v1/session`: exchanges the request's bearer token for a session cookie.
#[utoipa::path(
    post,
    path = "/v1/session",
    tag = "session",
    operation_id = "sign_in",
    summary = "Exchange a bearer token for a browser session cookie that grants reads only",
    description = "Answers with a `Set-Cookie` for `sf_session`: `HttpOnly`, `SameSite=Strict`, `Path=/`, with `Max-Age` (and `Secure` behind HTTPS). The cookie stands for the token's aggregate types with the `read` role on `GET` requests only, until it expires or the token leaves the tokens file. Only a bearer token signs in (a cookie cannot). Without a tokens file nothing is needed: no cookie is set.",
    responses(
        (status = 200, description = "Signed in (or nothing needed)", body = Session,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
    ),
)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let types = caller.types.as_ref().map(|t| t.iter().cloned().collect());
    // The guard let a token through; without tokens there is no session to make.
    let (Some(sessions), Some(token)) = (&state.sessions, bearer(&headers)) else {
        return Ok(axum::Json(Session {
            role: "read",
            types,
            expires_at: None,
        })
        .into_response());
    };
    let lifetime = state.config.session_lifetime;
    let (value, expires) = sessions.issue(&Tokens::hash(token), Utc::now(), lifetime);
    let mut response = axum::Json(Session {
        role: "read",
        types,
        expires_at: Some(expires),
    })
    .into_response();
    set_cookie(
        &mut response,
        &value,
        lifetime.as_secs(),
        secure(&state, &headers),
    );
    Ok(response)
}

/// `DELETE /v1/session`: ends the browser's session (clears its cookie).
#[utoipa::path(
    delete,
    path = "/v1/session",
    tag = "session",
    operation_id = "sign_out",
    summary = "End the browser session: the cookie is cleared",
    responses((status = 204, description = "Signed out",
        headers(("Set-Cookie" = String, description = "The cleared cookie")))),
)]
pub(crate) async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, "", 0, secure(&state, &headers));
    response
}
