//! Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`,
//! `detail`, plus the fields a caller acts on (`expected_revision` and
//! `actual_revision` of a conflict, the `reducer` failure of a replay, …).
//!
//! | status | `type` (after `urn:streamfold:problem:`) | when |
//! |---|---|---|
//! | 400 | `invalid-input` | malformed JSON, a bad parameter, a bad name or id |
//! | 400 | `invalid-plugin` | a `.wasm` that cannot be a reducer |
//! | 401 | `unauthorized` | no bearer token, or an unknown one |
//! | 403 | `forbidden` | the token's role or types do not allow this |
//! | 404 | `not-found` | no such aggregate, revision, plugin or route |
//! | 409 | `conflict` | wrong expected revision (names expected and actual) |
//! | 409 | `active-plugin` | removing the active version of a type |
//! | 413 | `too-large` | a body over its limit, or too many events in one append |
//! | 415 | `unsupported-media-type` | a body of the wrong content type |
//! | 422 | `reducer-rejected`, `reducer-failed` | the reducer refused the history, or failed in the sandbox (trap, time or memory limit, bad output) |
//! | 422 | `verification-failed` | a plugin upload whose replay-diff found differences |
//! | 405 | `method-not-allowed` | a route that exists, with another method |
//! | 503 | `unavailable`, `busy`, `timeout` | Redis cannot be reached; too many replays at once; a request over the request timeout (all with `Retry-After`) |
//! | 500 | `internal` | corrupt data in Redis, an engine failure |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use streamfold::ErrorKind;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response. Build one with [`Problem::new`] or from a library error.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(flatten)]
    extra: Box<Map<String, Value>>,
    #[serde(skip)]
    retry_after: Option<u64>,
    #[serde(skip)]
    challenge: bool,
}

impl Problem {
    /// A problem of `status`, whose `type` is `urn:streamfold:problem:{slug}`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            kind: format!("urn:streamfold:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            extra: Box::default(),
            retry_after: None,
            challenge: false,
        }
    }

    /// 400: the request is unusable as it is.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "Invalid input",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            detail,
        )
    }

    /// 401, with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        );
        p.challenge = true;
        p
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 503 with `Retry-After`.
    pub fn busy(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "Too busy", detail);
        p.retry_after = Some(retry_after_secs);
        p
    }

    /// Asks the client to retry after `secs` seconds (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds a field a caller acts on.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extra.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "An error (RFC 9457). Besides the four standard members, a problem carries the fields a caller acts on: `aggregate`, `expected_revision` and `actual_revision` (conflict), `reducer` (a reducer's failure: plugin, aggregate, event and cause), `verify` (a failed verification's report), `max_events` (too many events), `digest` (the active plugin), `readiness` (not ready).",
            ))
            .property(
                "type",
                text("`urn:streamfold:problem:{slug}`: invalid-input, invalid-plugin, unauthorized, forbidden, not-found, method-not-allowed, conflict, active-plugin, too-large, unsupported-media-type, reducer-rejected, reducer-failed, verification-failed, unavailable, busy, timeout, internal"),
            )
            .required("type")
            .property("title", text("A short, fixed summary of the type"))
            .required("title")
            .property("status", integer("The HTTP status"))
            .required("status")
            .property("detail", text("What happened, for people"))
            .required("detail")
            .property("aggregate", text("Conflict: the aggregate, `type/id`"))
            .property(
                "expected_revision",
                utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ExpectedRevision",
                )),
            )
            .property("actual_revision", integer("Conflict: the aggregate's revision"))
            .property(
                "reducer",
                utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ReducerFailure",
                )),
            )
            .property(
                "verify",
                utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "VerifyReport",
                )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Problem {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            "ExpectedRevision".to_owned(),
            streamfold::ExpectedRevision::schema(),
        ));
        schemas.push((
            "ReducerFailure".to_owned(),
            streamfold::ReducerFailure::schema(),
        ));
        <streamfold::ReducerFailure as utoipa::ToSchema>::schemas(schemas);
        schemas.push((
            "VerifyReport".to_owned(),
            streamfold::VerifyReport::schema(),
        ));
        <streamfold::VerifyReport as utoipa::ToSchema>::schemas(schemas);
    }
}

impl From<streamfold::Error> for Problem {
    fn from(e: streamfold::Error) -> Self {
        Problem::of(&e)
    }
}

impl Problem {
    /// The problem a library error answers with.
    pub fn of(e: &streamfold::Error) -> Self {
        let detail = e.to_string();
        match e.kind() {
            ErrorKind::Conflict => {
                let mut p = Problem::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "Wrong expected revision",
                    detail,
                );
                if let Some(c) = e.conflict() {
                    p = p
                        .with("aggregate", &c.aggregate)
                        .with("expected_revision", c.expected)
                        .with("actual_revision", c.actual);
                }
                p
            }
            ErrorKind::NotFound => Problem::not_found(detail),
            ErrorKind::InvalidInput => Problem::invalid(detail),
            ErrorKind::InvalidPlugin => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-plugin",
                "Not a usable reducer component",
                detail,
            ),
            ErrorKind::Reducer => {
                let failure = e.reducer_failure();
                let rejected = failure.is_some_and(|f| f.is_rejection());
                let (slug, title) = if rejected {
                    ("reducer-rejected", "The reducer rejected the history")
                } else {
                    ("reducer-failed", "The reducer failed in the sandbox")
                };
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, detail)
                    .with("reducer", failure)
            }
            ErrorKind::Unavailable => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Redis is unavailable",
                    detail,
                );
                p.retry_after = Some(1);
                p
            }
            _ => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                detail,
            ),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamfold\""),
            );
        }
        response
    }
}
