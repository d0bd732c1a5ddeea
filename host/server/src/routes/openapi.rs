//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, generated from the route
//! declarations (`super::api`): each handler's `#[utoipa::path]` attribute, the
//! types it takes and answers with (the library's own, through its `openapi`
//! feature), and what each declaration says of access, bodies and problems. The
//! document describes this server: its limits and the names its store accepts.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::subscribe;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Streamfold",
        description = "Event sourcing on Redis Streams with sandboxed WebAssembly reducers: append events, read histories and category feeds, replay state (also as of a revision or an instant, or through another reducer version), follow aggregates live, and ship reducers.\n\nEvery error is `application/problem+json` (RFC 9457) with a `type` of `urn:streamfold:problem:{slug}`.\n\nAuthentication: `Authorization: Bearer TOKEN` when the server has a tokens file. Roles: `read` (GET), `write` (appends and reads), `admin` (plugins and everything), each optionally limited to some aggregate types. Without a tokens file the server listens on loopback only and takes no token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(subscribe::StatePush, subscribe::CaughtUp)),
    modifiers(&Bearer),
    tags(
        (name = "events", description = "Appends, histories and category feeds"),
        (name = "catalog", description = "What the store holds: aggregate types and ids"),
        (name = "session", description = "Browser sessions: a cookie that grants reads only"),
        (name = "state", description = "State replayed through reducers"),
        (name = "subscribe", description = "Live subscriptions (Server-Sent Events)"),
        (name = "groups", description = "Durable subscriptions: consumer groups on a type's category, with acks, redelivery and parking"),
        (name = "plugins", description = "The reducer registry"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// Adds the security schemes the paths name: `bearer`, and `session` (a cookie).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made by `streamfold token new`; needed when the server has a tokens file",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    crate::session::COOKIE,
                    "A browser session (`POST /v1/session`): reads (`GET`) only",
                ),
            )),
        );
    }
}

/// The document of a server with this configuration, over a store with this key
/// layout.
pub(crate) fn document(config: &crate::ServerConfig, layout: streamfold::Layout) -> Value {
    let mut base = ApiDoc::openapi();
    base.info.version = env!("CARGO_PKG_VERSION").to_owned();
    use streamfold::names;
    let names = super::Names {
        aggregate_type: serde_json::json!({
            "type": "string",
            "minLength": 1,
            "maxLength": names::MAX_TYPE_CHARS,
            "pattern": names::aggregate_type_pattern(layout),
        }),
        aggregate_id: serde_json::json!({
            "type": "string",
            "minLength": 1,
            "maxLength": names::MAX_ID_CHARS,
        }),
        group_name: serde_json::json!({
            "type": "string",
            "minLength": 1,
            "maxLength": streamfold::MAX_GROUP_NAME_CHARS,
            "pattern": names::group_name_pattern(),
        }),
        max_id_chars: names::MAX_ID_CHARS,
        ids_cursor_pattern: names::IDS_CURSOR_PATTERN,
        max_page: config.max_page,
    };
    let mut doc = super::api(config).document(base, &names);
    doc["components"]["schemas"]["AppendRequest"]["properties"]["events"]["maxItems"] =
        config.max_events_per_append.into();
    // The nil UUID is no event's id (the store refuses it).
    doc["components"]["schemas"]["NewEvent"]["properties"]["event_id"]["not"] =
        serde_json::json!({"const": uuid::Uuid::nil()});
    doc
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The document", body = serde_json::Value)),
)]
pub(crate) async fn serve(State(state): State<AppState>) -> Response {
    let mut r = state.openapi.as_str().to_owned().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
