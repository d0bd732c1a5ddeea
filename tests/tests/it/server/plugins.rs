//! The plugin registry over HTTP: uploads, listing, activation (hot reload),
//! history, removal, verification, and bad uploads.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use streamfold_tests::plugins;

use super::{Harness, ev, json_body, problem, user_created};

const WASM: &str = "application/wasm";

/// `POST path` with `bytes` as the body, of `content_type` (none when `None`).
async fn post_bytes(
    h: &Harness,
    path: &str,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> Response {
    let mut req = h.http.post(h.url(path)).body(bytes);
    if let Some(t) = content_type {
        req = req.header(CONTENT_TYPE, t);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn upload(h: &Harness, query: &str, plugin: &str) -> Response {
    post_bytes(
        h,
        &format!("/v1/plugins{query}"),
        Some(WASM),
        plugins::read(plugin),
    )
    .await
}

/// `(version, active)` of every registered plugin, sorted.
async fn listed(h: &Harness) -> Vec<(String, bool)> {
    let list = json_body(h.get("/v1/plugins").await, StatusCode::OK).await;
    let mut out: Vec<(String, bool)> = list
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap().to_owned(),
                p["active"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn seed_users(h: &Harness, n: u64) {
    for id in 1..=n {
        h.append(
            "user",
            &id.to_string(),
            vec![
                user_created(id, "Alice"),
                ev("NameChanged", json!({"name": format!("Alice {id}")})),
            ],
        )
        .await;
    }
}

async fn user_state(h: &Harness) -> Value {
    json_body(h.get("/v1/aggregates/user/1/state").await, StatusCode::OK).await
}

#[tokio::test]
async fn plugins_are_uploaded_listed_activated_and_removed_over_http() {
    let h = Harness::start().await;
    let r = upload(&h, "", plugins::USER).await;
    let v1 = json_body(r, StatusCode::CREATED).await;
    assert_eq!(v1["plugin"]["active"], true, "{v1}");
    assert_eq!(v1["plugin"]["aggregate_type"], "user", "{v1}");
    assert!(
        v1["verify"].is_null(),
        "no verification was asked for: {v1}"
    );
    let v1_digest = v1["plugin"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        v1_digest,
        streamfold::digest(&plugins::read(plugins::USER)),
        "the digest is the bytes'"
    );
    assert_eq!(listed(&h).await, [("0.1.0".to_owned(), true)]);

    let r = upload(&h, "?activate=false", plugins::USER_V2).await;
    let v2 = json_body(r, StatusCode::CREATED).await;
    assert_eq!(v2["plugin"]["active"], false, "{v2}");
    assert_eq!(v2["plugin"]["version"], "0.2.0", "{v2}");
    assert_eq!(
        listed(&h).await,
        [("0.1.0".to_owned(), true), ("0.2.0".to_owned(), false)]
    );

    seed_users(&h, 1).await;
    assert_eq!(user_state(&h).await["name"], "Alice 1");

    // Hot reload through the API: the next state request uses the new version.
    let r = h
        .http
        .put(h.url("/v1/plugins/user/active"))
        .json(&json!({"version": "0.2.0"}))
        .send()
        .await
        .unwrap();
    let activated = json_body(r, StatusCode::OK).await;
    assert_eq!(activated["active"], true, "{activated}");
    assert_eq!(activated["version"], "0.2.0", "{activated}");
    let state = user_state(&h).await;
    assert_eq!(state["name"], "ALICE 1", "{state}");
    assert_eq!(state["v2_events"], 2, "{state}");

    let history = json_body(h.get("/v1/plugins/user/history").await, StatusCode::OK).await;
    let versions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.2.0", "0.1.0"], "newest first: {history}");

    // The active version cannot be removed; the inactive one can.
    let r = h
        .http
        .delete(h.url("/v1/plugins/user/0.2.0"))
        .send()
        .await
        .unwrap();
    let body = problem(r, StatusCode::CONFLICT, "active-plugin").await;
    assert_eq!(body["digest"], v2["plugin"]["digest"], "{body}");
    let r = h
        .http
        .delete(h.url(&format!("/v1/plugins/user/sha256:{v1_digest}")))
        .send()
        .await
        .unwrap();
    let removed = json_body(r, StatusCode::OK).await;
    assert_eq!(removed["digest"], v1_digest.as_str(), "{removed}");
    assert_eq!(listed(&h).await, [("0.2.0".to_owned(), true)]);
    let r = h
        .http
        .delete(h.url("/v1/plugins/user/0.1.0"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;

    // Activating what is not there, or giving both a digest and a version.
    let r = h
        .http
        .put(h.url("/v1/plugins/user/active"))
        .json(&json!({"version": "0.1.0"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    let r = h
        .http
        .put(h.url("/v1/plugins/user/active"))
        .json(&json!({"version": "0.2.0", "digest": v1_digest}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
}

#[tokio::test]
async fn verify_reports_the_differences_and_registers_nothing() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    seed_users(&h, 3).await;
    let r = post_bytes(
        &h,
        "/v1/plugins/verify",
        Some(WASM),
        plugins::read(plugins::USER_V2),
    )
    .await;
    let report = json_body(r, StatusCode::OK).await;
    assert_eq!(report["aggregate_type"], "user", "{report}");
    assert_eq!(report["candidate"]["version"], "0.2.0", "{report}");
    assert_eq!(report["active"]["version"], "0.1.0", "{report}");
    assert_eq!(report["checked"], 3, "{report}");
    assert_eq!(report["differed"].as_array().unwrap().len(), 3, "{report}");

    // The same reducer agrees with itself.
    let r = post_bytes(
        &h,
        "/v1/plugins/verify?type=user&sample=all",
        Some(WASM),
        plugins::read(plugins::USER),
    )
    .await;
    let same = json_body(r, StatusCode::OK).await;
    assert_eq!(same["agreed"], 3, "{same}");
    assert!(same["differed"].as_array().unwrap().is_empty(), "{same}");

    // A candidate for another type than the one named.
    let r = post_bytes(
        &h,
        "/v1/plugins/verify?type=cart",
        Some(WASM),
        plugins::read(plugins::USER_V2),
    )
    .await;
    problem(r, StatusCode::CONFLICT, "wrong-type").await;
    assert_eq!(listed(&h).await, [("0.1.0".to_owned(), true)]);
}

#[tokio::test]
async fn uploads_that_are_not_reducers_are_refused() {
    let h = Harness::start().await;
    let garbage = b"definitely not wasm".to_vec();
    let r = post_bytes(&h, "/v1/plugins", Some(WASM), garbage.clone()).await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-plugin").await;
    let r = post_bytes(
        &h,
        "/v1/plugins",
        Some(WASM),
        plugins::read(plugins::USER_CORE),
    )
    .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-plugin").await;
    let r = post_bytes(&h, "/v1/plugins/verify", Some(WASM), garbage).await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-plugin").await;

    let user = plugins::read(plugins::USER);
    let r = post_bytes(&h, "/v1/plugins", Some("application/json"), user.clone()).await;
    problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let r = post_bytes(&h, "/v1/plugins", None, user.clone()).await;
    problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let r = post_bytes(&h, "/v1/plugins?verify=some", Some(WASM), user).await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    assert!(listed(&h).await.is_empty(), "nothing was registered");
}

#[tokio::test]
async fn an_upload_whose_verification_differs_is_422_unless_forced() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    seed_users(&h, 3).await;

    let r = upload(&h, "?verify=sample:10", plugins::USER_V2).await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "verification-failed").await;
    assert_eq!(body["verify"]["checked"], 3, "{body}");
    assert_eq!(
        body["verify"]["differed"].as_array().unwrap().len(),
        3,
        "{body}"
    );
    assert_eq!(
        listed(&h).await,
        [("0.1.0".to_owned(), true)],
        "nothing was registered"
    );
    assert_eq!(user_state(&h).await["name"], "Alice 1");

    let r = upload(&h, "?verify=sample:10&force=true", plugins::USER_V2).await;
    let forced = json_body(r, StatusCode::CREATED).await;
    assert_eq!(forced["plugin"]["version"], "0.2.0", "{forced}");
    assert_eq!(forced["plugin"]["active"], true, "{forced}");
    assert_eq!(
        forced["verify"]["differed"].as_array().unwrap().len(),
        3,
        "{forced}"
    );
    assert_eq!(
        listed(&h).await,
        [("0.1.0".to_owned(), false), ("0.2.0".to_owned(), true)]
    );
    assert_eq!(user_state(&h).await["name"], "ALICE 1");

    // A verification that passes registers without force (a cart reducer, with
    // nothing active to differ from, and carts it folds).
    h.append(
        "cart",
        "1",
        vec![ev("CartOpened", json!({"customer": "alice"}))],
    )
    .await;
    let r = upload(&h, "?verify=all", plugins::CART).await;
    let passed = json_body(r, StatusCode::CREATED).await;
    assert_eq!(passed["plugin"]["aggregate_type"], "cart", "{passed}");
    assert!(
        passed["verify"]["failed"].as_array().unwrap().is_empty(),
        "{passed}"
    );
}
