//! One declaration per route.
//!
//! A route is its handler, whose `#[utoipa::path]` attribute gives its method, path,
//! parameters and success responses, and a [`Route`]: the role it needs and the
//! aggregate type that role is checked against, its body (media type and limit),
//! whether it is a live stream (no request timeout), and the problems it can answer
//! besides the ones every route of its kind can. [`Api::add`] takes both, so a route
//! cannot be added without saying who may call it. From the declaration it
//!
//! - checks the token, the role and the type **before the handler runs**, so a
//!   forbidden upload is refused without reading its body;
//! - checks the body's `Content-Type` and declared length before anything reads it,
//!   and bounds what is read;
//! - bounds the request in time (except live streams);
//! - writes the route's OpenAPI entry: its security, every status it can answer with
//!   the problem types behind each, the body's media type and limit, and the access
//!   rule (`x-streamfold-access`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, RawPathParams, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::AppState;
use crate::auth::Role;
use crate::problem::{Problem, ProblemType};

/// Which aggregate type a route's role is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The `{type}` path parameter, checked before the handler runs.
    Path,
    /// The `type` query parameter when it is given, checked before the handler runs;
    /// without it the route answers only what the token may see.
    Query,
    /// The type a body names (a component's `info`): the role is checked before the
    /// body is read, the type by the handler once it is
    /// ([`Caller::require`](crate::auth::Caller::require)).
    Body,
    /// The aggregate types a projection reads: the role is checked before the
    /// handler runs, the types by the handler once it has looked the projection up.
    Sources,
    /// No aggregate type: the route spans all of them.
    All,
}

/// What a route's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body is read.
    None,
    /// `application/json`, at most this many bytes.
    Json(usize),
    /// A component, `application/wasm`, at most this many bytes.
    Wasm(usize),
}

/// Who may call a route, what it reads, and what it can answer: the part of a
/// route's declaration that is not in its handler's attribute.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    role: Option<Role>,
    scope: Scope,
    body: BodyKind,
    live: bool,
    problems: Vec<ProblemType>,
}

impl Route {
    fn needs(role: Option<Role>, scope: Scope) -> Route {
        Route {
            role,
            scope,
            body: BodyKind::None,
            live: false,
            problems: Vec::new(),
        }
    }

    /// Anyone may call it, without a token (liveness, the API's description).
    pub(crate) fn public() -> Route {
        Route::needs(None, Scope::All)
    }

    /// It needs the `read` role, for `scope`'s type.
    pub(crate) fn read(scope: Scope) -> Route {
        Route::needs(Some(Role::Read), scope)
    }

    /// It needs the `write` role, for `scope`'s type.
    pub(crate) fn write(scope: Scope) -> Route {
        Route::needs(Some(Role::Write), scope)
    }

    /// It needs the `admin` role, for `scope`'s type.
    pub(crate) fn admin(scope: Scope) -> Route {
        Route::needs(Some(Role::Admin), scope)
    }

    /// Its body is JSON, at most `limit` bytes.
    pub(crate) fn json(mut self, limit: usize) -> Route {
        self.body = BodyKind::Json(limit);
        self
    }

    /// Its body is a component (`application/wasm`), at most `limit` bytes.
    pub(crate) fn wasm(mut self, limit: usize) -> Route {
        self.body = BodyKind::Wasm(limit);
        self
    }

    /// It answers a stream that lasts as long as the client stays: no request timeout.
    pub(crate) fn live(mut self) -> Route {
        self.live = true;
        self
    }

    /// The problems it can answer besides those every route of its kind can.
    pub(crate) fn answers(mut self, problems: &[ProblemType]) -> Route {
        self.problems.extend_from_slice(problems);
        self
    }

    /// Every problem type the route can answer.
    fn problem_types(&self, has_params: bool) -> Vec<ProblemType> {
        use ProblemType::*;
        let mut all = self.problems.clone();
        // Protected routes check a token, ask Redis, and (unless live) are bounded in
        // time; public ones declare what they answer.
        if self.role.is_some() {
            all.extend([Unauthorized, Forbidden, Unavailable, Internal]);
            if !self.live {
                all.push(Timeout);
            }
        }
        if has_params || self.body != BodyKind::None {
            all.push(InvalidInput);
        }
        if self.body != BodyKind::None {
            all.extend([TooLarge, UnsupportedMediaType]);
        }
        all.sort();
        all.dedup();
        all
    }

    /// The access rule, for people.
    fn access_text(&self) -> String {
        let Some(role) = self.role else {
            return "Public: no token needed.".to_owned();
        };
        let scope = match self.scope {
            Scope::Path => "for the aggregate type in the path",
            Scope::Query => {
                "for the `type` asked for; without one, the answer holds only the types the token may see"
            }
            Scope::Body => "for the aggregate type the component declares",
            Scope::Sources => "for every aggregate type the projection reads",
            Scope::All => "for any aggregate type",
        };
        format!(
            "Needs a bearer token with the `{role}` role (or a higher one), {scope}, when the server has a tokens file."
        )
    }
}

/// The routes, their handlers and their OpenAPI entries, built up one declaration at
/// a time.
pub(crate) struct Api {
    routes: Vec<(UtoipaMethodRouter<AppState>, Route)>,
}

impl Api {
    pub(crate) fn new() -> Api {
        Api { routes: Vec::new() }
    }

    /// Adds a route: `handler` is `utoipa_axum::routes!(module::handler)`.
    pub(crate) fn add(mut self, handler: UtoipaMethodRouter<AppState>, route: Route) -> Api {
        self.routes.push((handler, route));
        self
    }

    /// The router serving every route, each behind its guard.
    pub(crate) fn router(&self, state: &AppState) -> Router<AppState> {
        let timeout = state.config.request_timeout;
        let mut router = Router::new();
        for ((_, paths, method_router), route) in &self.routes {
            let mut mr = method_router.clone();
            match route.body {
                BodyKind::Json(limit) | BodyKind::Wasm(limit) => {
                    mr = mr.route_layer(DefaultBodyLimit::max(limit));
                }
                BodyKind::None => {}
            }
            if !route.live && route.role.is_some() {
                mr = mr.route_layer(middleware::from_fn(move |req: Request, next: Next| {
                    bounded_in_time(req, next, timeout)
                }));
            }
            let guard = Arc::new(route.clone());
            mr = mr.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |State(state): State<AppState>, req: Request, next: Next| {
                    let guard = guard.clone();
                    async move { check(&state, &guard, req, next).await }
                },
            ));
            for path in paths.paths.keys() {
                router = router.route(path, mr.clone());
            }
        }
        router
    }

    /// The OpenAPI document: `base` (info, tags, components) with every route's entry.
    pub(crate) fn document(&self, base: utoipa::openapi::OpenApi, names: &Names) -> Value {
        let mut doc = base;
        for (schemas, paths, _) in self.routes.iter().map(|(h, _)| h) {
            for (path, item) in &paths.paths {
                match doc.paths.paths.get_mut(path) {
                    Some(existing) => existing.merge_operations(item.clone()),
                    None => {
                        doc.paths.paths.insert(path.clone(), item.clone());
                    }
                }
                let components = doc.components.get_or_insert_with(Default::default);
                components.schemas.extend(schemas.iter().cloned());
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        let mut problem_schemas = Vec::new();
        <Problem as utoipa::ToSchema>::schemas(&mut problem_schemas);
        components.schemas.extend(problem_schemas);
        components.schemas.insert(
            "Problem".to_owned(),
            <Problem as utoipa::PartialSchema>::schema(),
        );
        let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
        for ((_, paths, _), route) in &self.routes {
            for (path, item) in &paths.paths {
                let methods: Vec<String> = serde_json::to_value(item)
                    .expect("a path item serializes")
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                for method in methods {
                    if let Some(op) = doc["paths"][path].get_mut(&method)
                        && op.is_object()
                    {
                        amend(op, &method, route, names);
                    }
                }
            }
        }
        doc
    }
}

/// The constraints on names that the store enforces, as schemas.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) aggregate_type: Value,
    pub(crate) aggregate_id: Value,
    pub(crate) group_name: Value,
    pub(crate) max_id_chars: usize,
    pub(crate) ids_cursor_pattern: &'static str,
    pub(crate) max_page: usize,
}

/// Writes what the route declares into its OpenAPI operation.
fn amend(op: &mut Value, method: &str, route: &Route, names: &Names) {
    let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
    // Names: the types and ids the store accepts, and no other.
    if let Some(list) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in list {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let place = p["in"].as_str().unwrap_or_default().to_owned();
            match (name.as_str(), Some(place.as_str())) {
                ("type", place) => {
                    p["schema"] = names.aggregate_type.clone();
                    if place == Some("path") {
                        p["example"] = json!("user");
                    }
                }
                ("id", Some("path")) => {
                    p["schema"] = names.aggregate_id.clone();
                    p["example"] = json!("1");
                }
                ("group", Some("path")) => {
                    p["schema"] = names.group_name.clone();
                    p["example"] = json!("mailer");
                }
                ("prefix", Some("query")) => {
                    // A route whose prefix is not an aggregate id's keeps its own bound.
                    let max = p["schema"]["maxLength"]
                        .as_u64()
                        .map_or(names.max_id_chars, |m| m as usize);
                    p["schema"] = json!({"type": "string", "maxLength": max});
                }
                ("cursor", Some("query")) => {
                    p["schema"] = json!({"type": "string", "pattern": names.ids_cursor_pattern});
                }
                ("partition", Some("query")) => {
                    p["schema"] = json!({"type": "integer", "minimum": 0, "maximum": u32::MAX});
                }
                ("limit", Some("query")) => {
                    // A route with a smaller page of its own keeps its maximum.
                    let own = p["schema"]["maximum"].as_u64();
                    let max = own.map_or(names.max_page, |m| (m as usize).min(names.max_page));
                    p["schema"] = json!({"type": "integer", "minimum": 1, "maximum": max});
                }
                ("name", Some("path")) => {
                    p["schema"] = names.group_name.clone();
                    p["example"] = json!("email-domains");
                }
                _ => {}
            }
        }
    }
    // Security, and the access rule for people and for tools.
    if route.role == Some(Role::Read) && method == "get" {
        op["security"] = json!([{ "bearer": [] }, { "session": [] }]);
    } else if route.role.is_some() {
        op["security"] = json!([{ "bearer": [] }]);
    } else {
        op["security"] = json!([{}]);
    }
    op["x-streamfold-access"] = json!({
        "role": route.role.map_or("public".to_owned(), |r| r.to_string()),
        "scope": match route.scope {
            Scope::Path => "path",
            Scope::Query => "query",
            Scope::Body => "body",
            Scope::Sources => "sources",
            Scope::All => "any",
        },
    });
    let text = route.access_text();
    op["description"] = match op["description"].as_str() {
        Some(d) if !d.is_empty() => json!(format!("{d}\n\n{text}")),
        _ => json!(text),
    };
    // The body: its media type, required, and its limit.
    match route.body {
        BodyKind::None => {}
        BodyKind::Json(limit) => {
            op["requestBody"]["required"] = json!(true);
            op["requestBody"]["description"] =
                json!(format!("JSON (`application/json`), at most {limit} bytes"));
        }
        BodyKind::Wasm(limit) => {
            op["requestBody"] = json!({
                "required": true,
                "description": format!("The component's bytes (`application/wasm`), at most {limit} bytes"),
                "content": {
                    "application/wasm": {
                        "schema": {"type": "string", "format": "binary", "contentMediaType": "application/wasm"}
                    }
                }
            });
        }
    }
    // Every status the route can answer, each with its problem types.
    let mut by_status: BTreeMap<u16, Vec<ProblemType>> = BTreeMap::new();
    for t in route.problem_types(has_params) {
        by_status.entry(t.status().as_u16()).or_default().push(t);
    }
    let responses = op["responses"]
        .as_object_mut()
        .expect("every route documents its responses");
    // An error its attribute describes must be one its declaration answers.
    for status in responses.keys() {
        let n: u16 = status.parse().unwrap_or(0);
        assert!(
            n < 400 || by_status.contains_key(&n),
            "a route documents {status} but declares no problem type of that status"
        );
    }
    for (status, types) in by_status {
        let listed = types
            .iter()
            .map(|t| format!("`{}`: {}", t.slug(), t.description()))
            .collect::<Vec<_>>()
            .join("; ");
        let entry = responses
            .entry(status.to_string())
            .or_insert_with(|| json!({}));
        let description = match entry["description"].as_str() {
            Some(d) if !d.is_empty() => format!("{d}. Problem types: {listed}"),
            _ => format!("Problem types: {listed}"),
        };
        entry["description"] = json!(description);
        entry["content"] = json!({
            crate::problem::PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Problem"},
                        {"type": "object", "properties": {
                            "type": {"enum": types.iter().map(|t| t.uri()).collect::<Vec<_>>()}
                        }}
                    ]
                }
            }
        });
        if types.iter().any(|t| t.retries()) {
            entry["headers"]["Retry-After"] = json!({
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 0}
            });
        }
        if types.contains(&ProblemType::Unauthorized) {
            entry["headers"]["WWW-Authenticate"] = json!({
                "description": "`Bearer realm=\"streamfold\"`",
                "schema": {"type": "string"}
            });
        }
    }
    // In order of status, as people read them.
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(sorted);
}

/// The guard in front of every route: the token, the role and the type, then the
/// body's media type and declared length, all before the handler reads anything.
async fn check(state: &AppState, route: &Route, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Some(role) = route.role {
        let caller = match crate::auth::authenticate(state, &parts.headers, &parts.method, role) {
            Ok(caller) => caller,
            Err(p) => return p.into_response(),
        };
        if let Err(p) = caller.require(role, None) {
            return p.into_response();
        }
        let (aggregate_type, aggregate_id) = match route.scope {
            Scope::Path => {
                let params = RawPathParams::from_request_parts(&mut parts, state)
                    .await
                    .ok();
                let param = |name: &str| {
                    params.as_ref().and_then(|ps| {
                        ps.iter()
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| v.to_owned())
                    })
                };
                (param("type"), param("id"))
            }
            // A `type` in the query is checked as a name on every route.
            Scope::Query | Scope::Body | Scope::Sources | Scope::All => {
                (query_type(&parts.uri), None)
            }
        };
        // Names first: the schema's rules, the same for every route.
        let layout = state.runtime.store().config().layout;
        if let Some(t) = &aggregate_type
            && let Err(e) = streamfold::names::validate_type(layout, t)
        {
            return Problem::invalid(e.to_string()).into_response();
        }
        if let Some(id) = &aggregate_id
            && let Err(e) = streamfold::names::validate_id(id)
        {
            return Problem::invalid(e.to_string()).into_response();
        }
        if let Some(t) =
            aggregate_type.filter(|_| matches!(route.scope, Scope::Path | Scope::Query))
            && let Err(p) = caller.require(role, Some(&t))
        {
            return p.into_response();
        }
        parts.extensions.insert(caller);
    }
    let limit = match route.body {
        BodyKind::None => None,
        BodyKind::Json(limit) => {
            if !is_json(&parts.headers) {
                return Problem::new(
                    ProblemType::UnsupportedMediaType,
                    "the body must be JSON (Content-Type: application/json)",
                )
                .into_response();
            }
            Some(limit)
        }
        BodyKind::Wasm(limit) => {
            if !is_wasm(&parts.headers) {
                return Problem::new(
                    ProblemType::UnsupportedMediaType,
                    "the body must be a component (Content-Type: application/wasm)",
                )
                .into_response();
            }
            Some(limit)
        }
    };
    if let Some(limit) = limit {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared
            && n > limit as u64
        {
            return Problem::too_large(format!(
                "the body is {n} bytes, over this route's limit of {limit} bytes"
            ))
            .into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The `type` of a query string, if it has one (the last one given).
fn query_type(uri: &axum::http::Uri) -> Option<String> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .0
        .into_iter()
        .rev()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v)
}

fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| {
        m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
    })
}

fn is_wasm(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "application/wasm" || m == "application/octet-stream")
}

/// Ends a request that takes longer than the request timeout with 503.
async fn bounded_in_time(req: Request, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            ProblemType::Timeout,
            format!("the request took longer than {timeout:?}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use crate::problem::ProblemType;

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
        out
    }

    /// The problem types a response's schema names.
    fn problem_types(response: &Value) -> BTreeSet<String> {
        response["content"]["application/problem+json"]["schema"]["allOf"][1]["properties"]["type"]
            ["enum"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_route_declares_its_access_and_documents_every_problem() {
        let doc = crate::openapi();
        let all: BTreeSet<String> = ProblemType::ALL.iter().map(|t| t.uri()).collect();
        let ops = operations(&doc);
        assert!(ops.len() >= 16, "{} operations", ops.len());
        for (method, path, op) in ops {
            let access = &op["x-streamfold-access"];
            assert!(access.is_object(), "{method} {path} declares its access");
            let protected = access["role"] != "public";
            let responses = op["responses"].as_object().unwrap();
            if protected {
                // A bearer token always; a session cookie on reads (GET) only.
                let session = access["role"] == "read" && method == "get";
                let mut security = vec![serde_json::json!({"bearer": []})];
                if session {
                    security.push(serde_json::json!({"session": []}));
                }
                assert_eq!(
                    op["security"],
                    serde_json::json!(security),
                    "{method} {path}"
                );
                for (status, slug) in [
                    ("401", "unauthorized"),
                    ("403", "forbidden"),
                    ("500", "internal"),
                ] {
                    let types = problem_types(&responses[status]);
                    assert!(
                        types.contains(&format!("urn:streamfold:problem:{slug}")),
                        "{method} {path} documents {status} {slug}: {types:?}"
                    );
                }
            } else {
                assert!(!responses.contains_key("401"), "{method} {path} is public");
            }
            for (status, response) in responses {
                let n: u16 = status.parse().unwrap();
                if n < 400 {
                    continue;
                }
                let types = problem_types(response);
                assert!(
                    !types.is_empty(),
                    "{method} {path} {status} names its problem types"
                );
                for t in &types {
                    assert!(
                        all.contains(t),
                        "{method} {path} {status}: {t} is a problem type"
                    );
                    let kind = ProblemType::ALL.iter().find(|k| &k.uri() == t).unwrap();
                    assert_eq!(
                        kind.status().as_u16(),
                        n,
                        "{method} {path}: {t} under {status}"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
            }
        }
    }

    /// OpenAPI has no member whose value may be `null` where operations live.
    fn assert_no_nulls(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("{at} is null"),
            Value::Object(map) => map
                .iter()
                .for_each(|(k, x)| assert_no_nulls(x, &format!("{at}/{k}"))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, x)| assert_no_nulls(x, &format!("{at}/{i}"))),
            _ => {}
        }
    }

    #[test]
    fn the_paths_hold_no_nulls() {
        assert_no_nulls(&crate::openapi()["paths"], "paths");
    }

    #[test]
    fn wasm_uploads_are_binary() {
        let doc = crate::openapi();
        for path in ["/v1/plugins", "/v1/plugins/verify"] {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert_eq!(body["required"], true, "{path}");
            let schema = &body["content"]["application/wasm"]["schema"];
            assert_eq!(schema["type"], "string", "{path}: {body}");
            assert_eq!(schema["format"], "binary", "{path}: {body}");
        }
    }

    /// The README's table of problem types is the enum's. `STREAMFOLD_BLESS=1`
    /// rewrites it.
    #[test]
    fn the_readme_lists_every_problem_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start_mark = "<!-- problem-types: made from ProblemType (host/server/src/problem.rs); a test keeps it equal -->\n";
        let end_mark = "<!-- problem-types end -->";
        let start = readme.find(start_mark).expect("the README marks the table") + start_mark.len();
        let end = readme
            .find(end_mark)
            .expect("the README marks the table's end");
        let table = ProblemType::markdown_table();
        if std::env::var_os("STREAMFOLD_BLESS").is_some() {
            let new = format!("{}{table}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, new).unwrap();
            return;
        }
        assert_eq!(
            &readme[start..end],
            table,
            "the README's table of problem types is out of date: run STREAMFOLD_BLESS=1 cargo test -p streamfold-server"
        );
    }
}
