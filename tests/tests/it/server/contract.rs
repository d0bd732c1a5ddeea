//! The API contract: every route's declaration (who may call it, with what body) is
//! enforced before its handler reads anything, and the OpenAPI document says exactly
//! what the server enforces. Walks every documented operation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamfold_server::Role;
use streamfold_tests::plugins;

use super::auth::secured;
use super::{Harness, PATIENCE, json_body, problem, runtime_config, user_created};

/// The document's operations: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

fn concrete(path: &str) -> String {
    path.replace("{type}", "user")
        .replace("{id}", "1")
        .replace("{digest_or_version}", "9.9.9")
}

/// A request for an operation, with a body of the kind it declares.
fn request(h: &Harness, method: &str, path: &str, op: &Value) -> reqwest::RequestBuilder {
    let url = h.url(&concrete(path));
    let mut r = match method {
        "get" => h.http.get(&url),
        "post" => h.http.post(&url),
        "put" => h.http.put(&url),
        "delete" => h.http.delete(&url),
        other => panic!("method {other}"),
    };
    if let Some(content) = op["requestBody"]["content"].as_object() {
        if content.contains_key("application/wasm") {
            r = r
                .header("content-type", "application/wasm")
                .body(plugins::read(plugins::USER));
        } else {
            r = r.header("content-type", "application/json").body("{}");
        }
    }
    r
}

fn role_of(op: &Value) -> Option<Role> {
    match op["x-streamfold-access"]["role"].as_str() {
        Some("public") => None,
        Some("read") => Some(Role::Read),
        Some("write") => Some(Role::Write),
        Some("admin") => Some(Role::Admin),
        other => panic!("{op:?}: role {other:?}"),
    }
}

#[tokio::test]
async fn every_protected_route_checks_the_token_the_role_and_the_type_first() {
    let t = secured().await;
    let doc = json_body(t.h.get("/v1/openapi.json").await, StatusCode::OK).await;
    let mut protected = 0;
    for (method, path, op) in operations(&doc) {
        let Some(role) = role_of(&op) else {
            // Public: answers without a token, and never 401.
            let r = request(&t.h, &method, &path, &op).send().await.unwrap();
            assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            continue;
        };
        protected += 1;
        // No token, and an unknown one: 401 with the challenge.
        let r = request(&t.h, &method, &path, &op).send().await.unwrap();
        assert_eq!(
            super::header(&r, "www-authenticate"),
            "Bearer realm=\"streamfold\"",
            "{method} {path}"
        );
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let r = request(&t.h, &method, &path, &op)
            .bearer_auth("sft_not-a-token")
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        // A role below the one declared: 403, whatever the body.
        if role > Role::Read {
            let lower = if role == Role::Admin {
                &t.write
            } else {
                &t.read
            };
            let r = request(&t.h, &method, &path, &op)
                .bearer_auth(lower)
                .send()
                .await
                .unwrap();
            let body = problem(r, StatusCode::FORBIDDEN, "forbidden").await;
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("the {role} role")),
                "{method} {path}: {body}"
            );
        }
        // A token for another type: 403 on routes scoped to the path's type.
        if op["x-streamfold-access"]["scope"] == "path" {
            let r = request(&t.h, &method, &path, &op)
                .bearer_auth(&t.cart_admin)
                .send()
                .await
                .unwrap();
            problem(r, StatusCode::FORBIDDEN, "forbidden").await;
        }
        // The right token passes the guard.
        let r = request(&t.h, &method, &path, &op)
            .bearer_auth(&t.admin)
            .send()
            .await
            .unwrap();
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status()),
            "{method} {path}: {}",
            r.status()
        );
    }
    assert!(protected >= 12, "{protected} protected operations");
}

/// A body that sends its first chunk and then never ends: a server that reads it
/// never answers.
fn endless_body() -> reqwest::Body {
    let first =
        futures::stream::once(async { Ok::<_, std::io::Error>(b"\0asm\x0d\0\x01\0".to_vec()) });
    reqwest::Body::wrap_stream(futures::StreamExt::chain(first, futures::stream::pending()))
}

/// What an upload sends: a token, a media type and a body.
enum Upload<'a> {
    /// A component of this many bytes that never arrives, as `application/wasm`.
    Endless(u64),
    /// A built component, with this media type (none: no `Content-Type`).
    Component(&'static str, Option<&'a str>),
}

/// `POST path` with `token` (if any) and `upload`; the answer.
async fn post(
    h: &Harness,
    path: &str,
    token: Option<&str>,
    upload: Upload<'_>,
) -> reqwest::Response {
    let mut r = h.http.post(h.url(path));
    if let Some(token) = token {
        r = r.bearer_auth(token);
    }
    r = match upload {
        Upload::Endless(size) => r
            .header("content-type", "application/wasm")
            .header("content-length", size.to_string())
            .body(endless_body()),
        Upload::Component(component, media_type) => {
            if let Some(m) = media_type {
                r = r.header("content-type", m);
            }
            r.body(plugins::read(component))
        }
    };
    r.send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: no answer (was the body waited for?): {e}"))
}

#[tokio::test]
async fn a_forbidden_upload_is_refused_before_its_body_is_read() {
    let t = secured().await;
    let (h, endless) = (&t.h, Upload::Endless(60 << 20));
    // Uploads need `admin`: a write or read token is refused at once.
    for token in [&t.write, &t.read] {
        let r = post(h, "/v1/plugins", Some(token), Upload::Endless(60 << 20)).await;
        problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Verifies need a token: none is refused at once too.
    let r = post(h, "/v1/plugins/verify", None, endless).await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Without a Content-Type, a write token is still forbidden (not 415).
    let r = post(
        h,
        "/v1/plugins",
        Some(&t.write),
        Upload::Component(plugins::USER, None),
    )
    .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // An admin whose upload says it is larger than the limit: 413 before reading it.
    let r = post(h, "/v1/plugins", Some(&t.admin), Upload::Endless(65 << 20)).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
}

#[tokio::test]
async fn uploads_are_sent_as_the_document_describes_them() {
    let t = secured().await;
    let h = &t.h;
    let doc = json_body(h.get("/v1/openapi.json").await, StatusCode::OK).await;
    let body = &doc["paths"]["/v1/plugins"]["post"]["requestBody"];
    let (media_type, content) = body["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .expect("the upload's media type");
    assert_eq!(content["schema"]["format"], "binary", "{body}");
    let as_documented = |component| Upload::Component(component, Some(media_type.as_str()));
    let r = post(
        h,
        "/v1/plugins",
        Some(&t.admin),
        as_documented(plugins::USER),
    )
    .await;
    let uploaded = json_body(r, StatusCode::CREATED).await;
    assert_eq!(uploaded["plugin"]["aggregate_type"], "user", "{uploaded}");
    let r = post(
        h,
        "/v1/plugins/verify?sample=all",
        Some(&t.read),
        as_documented(plugins::USER_V2),
    )
    .await;
    let report = json_body(r, StatusCode::OK).await;
    assert!(report["checked"].is_u64(), "{report}");
    // A component for a type the token is not for: 403 once its `info` is read.
    let r = post(
        h,
        "/v1/plugins",
        Some(&t.cart_admin),
        as_documented(plugins::USER),
    )
    .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

/// The schema of a query parameter of an operation.
fn param<'a>(doc: &'a Value, method: &str, path: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {path} has {name}"))
}

#[tokio::test]
async fn the_document_declares_the_constraints_the_server_enforces() {
    let h = Harness::start_with(runtime_config(), |c| c.max_events_per_append(5)).await;
    h.register(plugins::USER, true).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let doc = json_body(h.get("/v1/openapi.json").await, StatusCode::OK).await;
    let events = "/v1/aggregates/{type}/{id}/events";

    // Page sizes: 1 to this server's maximum page.
    let limit = param(&doc, "get", events, "limit");
    assert_eq!(limit["minimum"], 1, "{limit}");
    assert_eq!(limit["maximum"], 10_000, "{limit}");
    for bad in ["0", "10001"] {
        let r = h
            .get(&format!("/v1/aggregates/user/1/events?limit={bad}"))
            .await;
        problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    json_body(
        h.get("/v1/aggregates/user/1/events?limit=10000").await,
        StatusCode::OK,
    )
    .await;

    // Revisions: 0 to 2^63 - 1.
    let from = param(&doc, "get", events, "from_revision");
    assert_eq!(from["maximum"], i64::MAX, "{from}");
    let r = h
        .get(&format!(
            "/v1/aggregates/user/1/events?from_revision={}",
            i64::MAX as u64 + 1
        ))
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    let r = h
        .get(&format!(
            "/v1/aggregates/user/1/state?at_revision={}",
            u64::MAX
        ))
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    // Names: the store's rules, as a pattern and lengths.
    let t = param(&doc, "get", events, "type");
    assert_eq!(
        t["pattern"],
        streamfold::names::aggregate_type_pattern(streamfold::Layout::Default)
    );
    assert_eq!(t["maxLength"], streamfold::names::MAX_TYPE_CHARS);
    let id = param(&doc, "get", events, "id");
    assert_eq!(id["maxLength"], streamfold::names::MAX_ID_CHARS);
    for bad_type in [
        "a%7Bb",
        "a%20b",
        &"t".repeat(streamfold::names::MAX_TYPE_CHARS + 1),
    ] {
        let r = h.get(&format!("/v1/aggregates/{bad_type}/1/events")).await;
        problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    let long_id = "i".repeat(streamfold::names::MAX_ID_CHARS + 1);
    let r = h
        .get(&format!("/v1/aggregates/user/{long_id}/events"))
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    // Bodies: a non-empty event type and batch, at most this server's events per
    // append, and the expected revision's exact forms.
    let request = &doc["components"]["schemas"]["AppendRequest"];
    assert_eq!(request["properties"]["events"]["minItems"], 1, "{request}");
    assert_eq!(request["properties"]["events"]["maxItems"], 5, "{request}");
    assert_eq!(
        doc["components"]["schemas"]["NewEvent"]["properties"]["event_type"]["minLength"],
        1
    );
    for (body, status, slug) in [
        (
            json!({"events": [{"event_type": "", "data": {}}]}),
            StatusCode::BAD_REQUEST,
            "invalid-input",
        ),
        (
            json!({"events": []}),
            StatusCode::BAD_REQUEST,
            "invalid-input",
        ),
        (
            json!({"expected_revision": "1", "events": [user_created(1, "A")]}),
            StatusCode::BAD_REQUEST,
            "invalid-input",
        ),
        (
            json!({"expected_revision": u64::MAX, "events": [user_created(1, "A")]}),
            StatusCode::BAD_REQUEST,
            "invalid-input",
        ),
        (
            json!({"events": vec![user_created(1, "A"); 6]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
    ] {
        let r = h.post_json("/v1/aggregates/user/2/events", &body).await;
        problem(r, status, slug).await;
    }

    // Positions: the store's exact form.
    let after = param(&doc, "get", "/v1/categories/{type}/events", "after");
    let schema = match after.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => after,
    };
    assert_eq!(schema["pattern"], streamfold::names::POSITIONS_PATTERN);
    for bad in ["x", "1-0%20", "12345678901234567890-0"] {
        let r = h
            .get(&format!("/v1/categories/user/events?after={bad}"))
            .await;
        problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    // A position that fits the pattern but not the type's partitions: 409; an empty
    // one reads from the start.
    for query in [
        "after=1-0,2-0",
        "after=,,&partition=0",
        "after=1-0,&partition=0",
    ] {
        let r = h.get(&format!("/v1/categories/user/events?{query}")).await;
        problem(r, StatusCode::CONFLICT, "position-mismatch").await;
    }
    let page = json_body(
        h.get("/v1/categories/user/events?after=").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    let r = h.get("/v1/categories/user/events?partition=1").await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn readyz_follows_redis_frozen_answering_from_the_background_check() {
    let mut h = Harness::start().await;
    let ready = json_body(h.get("/readyz").await, StatusCode::OK).await;
    assert_eq!(ready["redis"]["up"], true, "{ready}");
    let (_, metrics) = super::status_and_text(h.get("/metrics").await).await;
    assert!(metrics.contains("\nstreamfold_redis_up 1\n"), "{metrics}");
    assert!(ready["redis"]["since"].as_str().is_some(), "{ready}");
    // Redis frozen (SIGSTOP): a PING would wait; /readyz does not.
    h.env.redis_mut().pause();
    let r =
        streamfold_test_support::wait_until("/readyz to report Redis away", PATIENCE, || async {
            let r = h
                .http
                .get(h.url("/readyz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .expect("/readyz answers while Redis is frozen");
            (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
        })
        .await;
    let body = problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(body["away_ms"].is_u64(), "{body}");
    assert_eq!(body["redis"]["up"], false, "{body}");
    // The metrics say the same.
    let (_, metrics) = super::status_and_text(h.get("/metrics").await).await;
    assert!(metrics.contains("\nstreamfold_redis_up 0\n"), "{metrics}");
    h.env.redis_mut().resume();
    streamfold_test_support::wait_until("/readyz to report ready again", PATIENCE, || async {
        (h.get("/readyz").await.status() == StatusCode::OK).then_some(())
    })
    .await;
}
