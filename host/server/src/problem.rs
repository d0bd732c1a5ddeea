//! Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`,
//! `detail`, plus the fields a caller acts on (`expected_revision` and
//! `actual_revision` of a conflict, the `reducer` failure of a replay, …).
//!
//! Every problem has one of the [`ProblemType`]s: its slug, title, status and
//! description feed the responses, the OpenAPI document (each route documents the
//! types it can answer) and the README's table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use streamfold::ErrorKind;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem the API answers with: one slug, title, status and
/// description each. `type` is `urn:streamfold:problem:{slug}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProblemType {
    /// 400: malformed JSON, a bad parameter, name or id.
    InvalidInput,
    /// 400: a `.wasm` that is not a usable reducer.
    InvalidPlugin,
    /// 401: no bearer token, or an unknown one.
    Unauthorized,
    /// 403: the token's role or types do not allow this.
    Forbidden,
    /// 404: no such aggregate, revision, plugin or route.
    NotFound,
    /// 405: the route exists, with other methods.
    MethodNotAllowed,
    /// 409: the expected revision is not the aggregate's.
    Conflict,
    /// 409: removing the active version of a type.
    ActivePlugin,
    /// 409: a component that folds another type than the one the request names.
    WrongType,
    /// 409: a category position made for another partition count.
    PositionMismatch,
    /// 409: creating a durable subscription group that exists with other settings.
    GroupExists,
    /// 413: a body over its limit, or too many events in one append.
    TooLarge,
    /// 415: a body of the wrong content type.
    UnsupportedMediaType,
    /// 422: the reducer refused the history.
    ReducerRejected,
    /// 422: the reducer failed in the sandbox.
    ReducerFailed,
    /// 422: a verified upload whose replay-diff found differences.
    VerificationFailed,
    /// 503: Redis cannot be reached.
    Unavailable,
    /// 503: too many replays or subscriptions at once.
    Busy,
    /// 503: a request over the request timeout.
    Timeout,
    /// 500: corrupt data in Redis, an engine failure.
    Internal,
}

impl ProblemType {
    /// Every problem type, in the order the docs list them.
    pub const ALL: [ProblemType; 20] = [
        ProblemType::InvalidInput,
        ProblemType::InvalidPlugin,
        ProblemType::Unauthorized,
        ProblemType::Forbidden,
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::Conflict,
        ProblemType::ActivePlugin,
        ProblemType::WrongType,
        ProblemType::PositionMismatch,
        ProblemType::GroupExists,
        ProblemType::TooLarge,
        ProblemType::UnsupportedMediaType,
        ProblemType::ReducerRejected,
        ProblemType::ReducerFailed,
        ProblemType::VerificationFailed,
        ProblemType::Unavailable,
        ProblemType::Busy,
        ProblemType::Timeout,
        ProblemType::Internal,
    ];

    /// The slug: `type` is `urn:streamfold:problem:{slug}`.
    pub const fn slug(self) -> &'static str {
        self.facts().0
    }

    /// The short, fixed summary every problem of this type carries.
    pub const fn title(self) -> &'static str {
        self.facts().1
    }

    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        self.facts().2
    }

    /// When it is answered, for people (the docs and the OpenAPI document).
    pub const fn description(self) -> &'static str {
        self.facts().3
    }

    /// `urn:streamfold:problem:{slug}`.
    pub fn uri(self) -> String {
        format!("urn:streamfold:problem:{}", self.slug())
    }

    /// Whether the answer asks the client to retry later (`Retry-After`).
    pub const fn retries(self) -> bool {
        matches!(
            self,
            ProblemType::Unavailable | ProblemType::Busy | ProblemType::Timeout
        )
    }

    const fn facts(self) -> (&'static str, &'static str, StatusCode, &'static str) {
        use ProblemType::*;
        match self {
            InvalidInput => (
                "invalid-input",
                "Invalid input",
                StatusCode::BAD_REQUEST,
                "malformed JSON, a bad parameter, a bad name or id, or parameters that do not go together",
            ),
            InvalidPlugin => (
                "invalid-plugin",
                "Not a usable reducer component",
                StatusCode::BAD_REQUEST,
                "a `.wasm` that is not a component of the reducer world, or whose `info` is unusable",
            ),
            Unauthorized => (
                "unauthorized",
                "Unauthorized",
                StatusCode::UNAUTHORIZED,
                "no bearer token, or one this server does not know (with `WWW-Authenticate: Bearer`)",
            ),
            Forbidden => (
                "forbidden",
                "Forbidden",
                StatusCode::FORBIDDEN,
                "the token's role or aggregate types do not allow this",
            ),
            NotFound => (
                "not-found",
                "Not found",
                StatusCode::NOT_FOUND,
                "no such aggregate, revision, plugin or route",
            ),
            MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "a route that exists, with another method (`Allow` lists its methods)",
            ),
            Conflict => (
                "conflict",
                "Wrong expected revision",
                StatusCode::CONFLICT,
                "the expected revision is not the aggregate's: `expected_revision` and `actual_revision` say both",
            ),
            ActivePlugin => (
                "active-plugin",
                "The active version cannot be removed",
                StatusCode::CONFLICT,
                "removing the active version of a type: activate another first",
            ),
            WrongType => (
                "wrong-type",
                "The component folds another aggregate type",
                StatusCode::CONFLICT,
                "the component's `info` names another aggregate type than the request does",
            ),
            PositionMismatch => (
                "position-mismatch",
                "The position does not fit the type's partitions",
                StatusCode::CONFLICT,
                "a category position with another number of parts than the type has partitions (made for another partition count)",
            ),
            GroupExists => (
                "group-exists",
                "The group exists with other settings",
                StatusCode::CONFLICT,
                "creating a durable subscription group that exists with other settings (delete it first, or create it with the same ones)",
            ),
            TooLarge => (
                "too-large",
                "Request too large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "a body over the route's limit, or too many events in one append (`max_events`)",
            ),
            UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a body without the route's `Content-Type`",
            ),
            ReducerRejected => (
                "reducer-rejected",
                "The reducer rejected the history",
                StatusCode::UNPROCESSABLE_ENTITY,
                "the reducer's own error: `reducer` names the plugin, the aggregate and the event",
            ),
            ReducerFailed => (
                "reducer-failed",
                "The reducer failed in the sandbox",
                StatusCode::UNPROCESSABLE_ENTITY,
                "a trap, the time or memory limit, or output that is not JSON: `reducer` names the plugin, the aggregate and the event",
            ),
            VerificationFailed => (
                "verification-failed",
                "Verification found differences",
                StatusCode::UNPROCESSABLE_ENTITY,
                "a verified upload whose replay-diff found differences or failures (`verify` holds the report); nothing was registered",
            ),
            Unavailable => (
                "unavailable",
                "Redis is unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "Redis cannot be reached (with `Retry-After`)",
            ),
            Busy => (
                "busy",
                "Too busy",
                StatusCode::SERVICE_UNAVAILABLE,
                "too many replays or subscriptions at once (with `Retry-After`)",
            ),
            Timeout => (
                "timeout",
                "Request timed out",
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took longer than the request timeout (with `Retry-After`)",
            ),
            Internal => (
                "internal",
                "Internal error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt data in Redis, or an engine failure",
            ),
        }
    }

    /// The Markdown table of every problem type (the README's).
    pub fn markdown_table() -> String {
        let mut out = String::from(
            "| status | `type` (after `urn:streamfold:problem:`) | title | when |\n|---|---|---|---|\n",
        );
        for t in ProblemType::ALL {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                t.status().as_u16(),
                t.slug(),
                t.title(),
                t.description()
            ));
        }
        out
    }
}

/// An error response. Build one with [`Problem::new`] or from a library error.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: ProblemType,
    detail: String,
    extra: Box<Map<String, Value>>,
    retry_after: Option<u64>,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(4 + self.extra.len()))?;
        map.serialize_entry("type", &self.kind.uri())?;
        map.serialize_entry("title", self.kind.title())?;
        map.serialize_entry("status", &self.kind.status().as_u16())?;
        map.serialize_entry("detail", &self.detail)?;
        for (k, v) in self.extra.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Problem {
    /// A problem of type `kind`. Those that ask for a retry (503) say
    /// `Retry-After: 1` unless [`Problem::retry_after`] says otherwise.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            extra: Box::default(),
            retry_after: kind.retries().then_some(1),
        }
    }

    /// 400: the request is unusable as it is.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::InvalidInput, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::NotFound, detail)
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::TooLarge, detail)
    }

    /// 401, with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::Unauthorized, detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::Forbidden, detail)
    }

    /// 503 with `Retry-After`.
    pub fn busy(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem::new(ProblemType::Busy, detail).retry_after(retry_after_secs)
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

    /// The problem's type.
    pub fn kind(&self) -> ProblemType {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
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
                text("`urn:streamfold:problem:{slug}`: one of the problem types")
                    .enum_values(Some(ProblemType::ALL.map(ProblemType::uri))),
            )
            .required("type")
            .property("title", text("A short, fixed summary of the type"))
            .required("title")
            .property(
                "status",
                integer("The HTTP status")
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
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
                let mut p = Problem::new(ProblemType::Conflict, detail);
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
            ErrorKind::InvalidPlugin => Problem::new(ProblemType::InvalidPlugin, detail),
            ErrorKind::Reducer => {
                let failure = e.reducer_failure();
                let rejected = failure.is_some_and(|f| f.is_rejection());
                let kind = if rejected {
                    ProblemType::ReducerRejected
                } else {
                    ProblemType::ReducerFailed
                };
                Problem::new(kind, detail).with("reducer", failure)
            }
            ErrorKind::Unavailable => Problem::new(ProblemType::Unavailable, detail),
            _ => Problem::new(ProblemType::Internal, detail),
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
        if self.kind == ProblemType::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamfold\""),
            );
        }
        response
    }
}
