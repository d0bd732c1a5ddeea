//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` attributes and the types they take and answer with
//! (the library's own types, through its `openapi` feature).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{events, ops, plugins, state, subscribe};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Streamfold",
        description = "Event sourcing on Redis Streams with sandboxed WebAssembly reducers: append events, read histories and category feeds, replay state (also as of a revision or an instant, or through another reducer version), follow aggregates live, and ship reducers.\n\nEvery error is `application/problem+json` (RFC 9457) with a `type` of `urn:streamfold:problem:{slug}`.\n\nAuthentication: `Authorization: Bearer TOKEN` when the server has a tokens file. Roles: `read` (GET), `write` (appends and reads), `admin` (plugins and everything), each optionally limited to some aggregate types. Without a tokens file the server listens on loopback only and takes no token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        events::append,
        events::history,
        events::category,
        state::state,
        subscribe::category,
        subscribe::aggregate,
        plugins::upload,
        plugins::list,
        plugins::activate,
        plugins::history,
        plugins::remove,
        plugins::verify,
        ops::healthz,
        ops::readyz,
        crate::metrics::metrics,
    ),
    components(schemas(subscribe::StatePush, subscribe::CaughtUp)),
    modifiers(&Bearer),
    tags(
        (name = "events", description = "Appends, histories and category feeds"),
        (name = "state", description = "State replayed through reducers"),
        (name = "subscribe", description = "Live subscriptions (Server-Sent Events)"),
        (name = "plugins", description = "The reducer registry"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the paths name.
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
    }
}

/// The document, with this build's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub(crate) async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    let mut r = body.clone().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
