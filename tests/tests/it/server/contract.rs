//! The API contract: every route's declaration (who may call it, with what body) is
//! enforced before its handler reads anything, and the OpenAPI document says exactly
//! what the server enforces. Walks every documented operation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamfold_server::{Role, Tokens, new_token};
use streamfold_tests::plugins;

use super::{Harness, PATIENCE, json_body, problem, runtime_config, user_created};

/// A server with tokens: admin, read, and write limited to `cart`.
struct Tokened {
    h: Harness,
    admin: String,
    read: String,
    write: String,
    cart_admin: String,
}

async fn tokened() -> Tokened {
    let (admin, a) = new_token(Role::Admin, &[]).unwrap();
    let (read, r) = new_token(Role::Read, &[]).unwrap();
    let (write, w) = new_token(Role::Write, &[]).unwrap();
    let (cart_admin, c) = new_token(Role::Admin, &["cart".to_owned()]).unwrap();
    let tokens = Tokens::parse(&format!("{a}\n{r}\n{w}\n{c}\n")).unwrap();
    let h = Harness::start_with(runtime_config(), |c| c.tokens(Some(tokens))).await;
    Tokened {
        h,
        admin,
        read,
        write,
        cart_admin,
    }
}

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
    let t = tokened().await;
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

#[tokio::test]
async fn a_forbidden_upload_is_refused_before_its_body_is_read() {
    let t = tokened().await;
    // Uploads need `admin`: a write or read token is refused at once.
    for token in [&t.write, &t.read] {
        let r =
            t.h.http
                .post(t.h.url("/v1/plugins"))
                .bearer_auth(token)
                .header("content-type", "application/wasm")
                .header("content-length", (60u64 << 20).to_string())
                .body(endless_body())
                .send()
                .await
                .expect("answered without the body");
        problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Verifies need a token: none is refused at once too.
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins/verify"))
            .header("content-type", "application/wasm")
            .header("content-length", (60u64 << 20).to_string())
            .body(endless_body())
            .send()
            .await
            .expect("answered without the body");
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Without a Content-Type, a write token is still forbidden (not 415).
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins"))
            .bearer_auth(&t.write)
            .body(plugins::read(plugins::USER))
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // An admin whose upload says it is larger than the limit: 413 before reading it.
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins"))
            .bearer_auth(&t.admin)
            .header("content-type", "application/wasm")
            .header("content-length", (65u64 << 20).to_string())
            .body(endless_body())
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
}

#[tokio::test]
async fn uploads_are_sent_as_the_document_describes_them() {
    let t = tokened().await;
    let doc = json_body(t.h.get("/v1/openapi.json").await, StatusCode::OK).await;
    let body = &doc["paths"]["/v1/plugins"]["post"]["requestBody"];
    let (media_type, content) = body["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .expect("the upload's media type");
    assert_eq!(content["schema"]["format"], "binary", "{body}");
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins"))
            .bearer_auth(&t.admin)
            .header("content-type", media_type)
            .body(plugins::read(plugins::USER))
            .send()
            .await
            .unwrap();
    let uploaded = json_body(r, StatusCode::CREATED).await;
    assert_eq!(uploaded["plugin"]["aggregate_type"], "user", "{uploaded}");
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins/verify?sample=all"))
            .bearer_auth(&t.read)
            .header("content-type", media_type)
            .body(plugins::read(plugins::USER_V2))
            .send()
            .await
            .unwrap();
    let report = json_body(r, StatusCode::OK).await;
    assert!(report["checked"].is_u64(), "{report}");
    // A component for a type the token is not for: 403 once its `info` is read.
    let r =
        t.h.http
            .post(t.h.url("/v1/plugins"))
            .bearer_auth(&t.cart_admin)
            .header("content-type", media_type)
            .body(plugins::read(plugins::USER))
            .send()
            .await
            .unwrap();
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
    h.env.redis_mut().resume();
    streamfold_test_support::wait_until("/readyz to report ready again", PATIENCE, || async {
        (h.get("/readyz").await.status() == StatusCode::OK).then_some(())
    })
    .await;
}
