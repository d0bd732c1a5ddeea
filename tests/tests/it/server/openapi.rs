//! `GET /v1/openapi.json`: an OpenAPI 3.1 document generated from the code, public,
//! naming every route the server answers (and none it does not), whose schemas
//! describe the bodies the server really sends.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamfold_server::{Role, Tokens, new_token};
use streamfold_tests::plugins;

use super::{Harness, json_body, runtime_config, status_and_text, user_created};

/// Every operation of the API, as the issue names them.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/v1/aggregates/{type}/{id}/events"),
    ("get", "/v1/aggregates/{type}/{id}/events"),
    ("get", "/v1/aggregates/{type}/{id}/state"),
    ("get", "/v1/aggregates/{type}/{id}/subscribe"),
    ("get", "/v1/categories/{type}/events"),
    ("get", "/v1/categories/{type}/subscribe"),
    ("post", "/v1/plugins"),
    ("get", "/v1/plugins"),
    ("post", "/v1/plugins/verify"),
    ("put", "/v1/plugins/{type}/active"),
    ("get", "/v1/plugins/{type}/history"),
    ("delete", "/v1/plugins/{type}/{digest_or_version}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/types"),
    ("get", "/v1/aggregates/{type}"),
    ("get", "/v1/aggregates/{type}/{id}"),
    ("put", "/v1/groups/{type}/{group}"),
    ("get", "/v1/groups"),
    ("get", "/v1/groups/{type}/{group}"),
    ("delete", "/v1/groups/{type}/{group}"),
    ("post", "/v1/groups/{type}/{group}/fetch"),
    ("post", "/v1/groups/{type}/{group}/ack"),
    ("post", "/v1/groups/{type}/{group}/nack"),
    ("get", "/v1/groups/{type}/{group}/parked"),
    ("post", "/v1/groups/{type}/{group}/parked/replay"),
    ("post", "/v1/projections"),
    ("get", "/v1/projections"),
    ("get", "/v1/projections/{name}"),
    ("put", "/v1/projections/{name}/active"),
    ("post", "/v1/projections/{name}/rebuild"),
    ("post", "/v1/projections/{name}/resume"),
    ("delete", "/v1/projections/{name}/{version}"),
    ("get", "/v1/projections/{name}/docs"),
    ("get", "/v1/projections/{name}/docs/{key}"),
    ("get", "/v1/projections/{name}/subscribe"),
    ("post", "/v1/session"),
    ("delete", "/v1/session"),
];

async fn document(h: &Harness) -> Value {
    json_body(h.get("/v1/openapi.json").await, StatusCode::OK).await
}

/// The operations a document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// The property names of a schema, following `$ref` and `allOf`.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a local schema reference: {r}"));
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "schema {name} is defined");
        return properties(doc, target);
    }
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(doc, part));
    }
    names
}

fn schema_properties(doc: &Value, name: &str) -> BTreeSet<String> {
    properties(
        doc,
        &json!({ "$ref": format!("#/components/schemas/{name}") }),
    )
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_public_and_the_one_the_library_builds() {
    let (_, line) = new_token(Role::Read, &[]).unwrap();
    let tokens = Tokens::parse(&line).unwrap();
    let h = Harness::start_with(runtime_config(), |c| c.tokens(Some(tokens))).await;
    // A token protects the API, not its description.
    let (status, _) = status_and_text(h.get("/v1/plugins").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = h.get("/v1/openapi.json").await;
    assert_eq!(super::content_type(&r), "application/json");
    let doc = json_body(r, StatusCode::OK).await;

    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Streamfold");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]["securitySchemes"]
    );
    // Every reference points at a schema the document defines.
    let mut refs = BTreeSet::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() >= 10, "{refs:?}");
    for r in &refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is not defined"
        );
    }
    let built = serde_json::to_value(streamfold_server::openapi()).unwrap();
    assert_eq!(doc, built, "the server serves the library's document");
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let doc = document(&h).await;

    let documented = operations(&doc);
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected, "the documented operations");

    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its responses"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has a summary"
        );
        // Every path parameter is declared.
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");

        // The server has the route: whatever it answers, it is not the router's
        // "no such route" nor "not this method".
        let url = h.url(
            &path
                .replace("{type}", "user")
                .replace("{id}", "1")
                .replace("{digest_or_version}", "9.9.9")
                .replace("{name}", "no-such-projection")
                .replace("{version}", "9.9.9")
                .replace("{key}", "k"),
        );
        let request = match method.as_str() {
            "get" => h.http.get(&url),
            "post" => h
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body("{}"),
            "put" => h
                .http
                .put(&url)
                .header("content-type", "application/json")
                .body("{}"),
            "delete" => h.http.delete(&url),
            other => panic!("method {other}"),
        };
        let r = request.send().await.expect("an answer");
        let status = r.status();
        if r.headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            continue; // a live subscription: dropping it ends it
        }
        let (_, text) = status_and_text(r).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {text}"
        );
        assert!(
            !text.contains("there is no route"),
            "{method} {path} is documented but not served: {status} {text}"
        );
    }
}

#[tokio::test]
async fn the_schemas_describe_the_bodies_the_server_sends() {
    let h = Harness::start().await;
    let doc = document(&h).await;

    // An upload with a verify: Uploaded, RegisteredPlugin (PluginInfo flattened).
    h.register(plugins::USER, true).await;
    let appended = h.append("user", "1", vec![user_created(1, "Alice")]).await;
    assert_eq!(keys(&appended), schema_properties(&doc, "Appended"));

    let page = json_body(h.get("/v1/aggregates/user/1/events").await, StatusCode::OK).await;
    assert_eq!(keys(&page), schema_properties(&doc, "HistoryPage"));
    assert_eq!(keys(&page["events"][0]), schema_properties(&doc, "Event"));
    let feed = json_body(h.get("/v1/categories/user/events").await, StatusCode::OK).await;
    assert_eq!(keys(&feed), schema_properties(&doc, "CategoryPage"));

    let listed = json_body(h.get("/v1/plugins").await, StatusCode::OK).await;
    assert_eq!(
        keys(&listed[0]),
        schema_properties(&doc, "RegisteredPlugin")
    );
    let history = json_body(h.get("/v1/plugins/user/history").await, StatusCode::OK).await;
    assert_eq!(keys(&history[0]), schema_properties(&doc, "Activation"));

    let v2 = plugins::read(plugins::USER_V2);
    let r = h
        .http
        .post(h.url("/v1/plugins?verify=all&activate=false&force=true"))
        .header("content-type", "application/wasm")
        .body(v2)
        .send()
        .await
        .unwrap();
    let uploaded = json_body(r, StatusCode::CREATED).await;
    assert_eq!(keys(&uploaded), schema_properties(&doc, "Uploaded"));
    assert_eq!(
        keys(&uploaded["verify"]),
        schema_properties(&doc, "VerifyReport")
    );

    // A conflict: the problem's standard members are required, and the fields a
    // caller acts on are described.
    let r = h
        .post_json(
            "/v1/aggregates/user/1/events",
            &json!({"expected_revision": "no-stream", "events": [user_created(1, "Alice")]}),
        )
        .await;
    let conflict = json_body(r, StatusCode::CONFLICT).await;
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: BTreeSet<String> = problem["required"]
        .as_array()
        .expect("required members")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(required.is_subset(&keys(&conflict)), "{conflict}");
    assert!(
        keys(&conflict).is_subset(&schema_properties(&doc, "Problem")),
        "every member of a conflict is described: {conflict}"
    );
}
