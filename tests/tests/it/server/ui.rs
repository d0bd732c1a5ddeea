//! The explorer's files over HTTP: the index for every view, assets under a folder
//! named by the build, the security headers, the redirects, and `--no-ui`. (What the
//! page does is tested in a real browser: tests/browser.) Also
//! `GET /v1/aggregates/{type}/{id}`, the route the page reads a revision count from.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};

use super::auth::secured;
use super::{Harness, PATIENCE, json_body, problem, user_created};

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The value of a header, or "".
fn header(r: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The paths of the assets an index links (`src=` and `href=` under /ui/assets/).
fn linked_assets(index: &str) -> Vec<String> {
    index
        .split(['"', '\''])
        .filter(|s| s.starts_with("/ui/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_view_gets_the_index_with_a_strict_policy_and_its_assets_are_immutable() {
    let h = Harness::start().await;
    let http = no_redirects();
    for (path, target) in [("/", "/ui/"), ("/ui", "/ui/")] {
        let r = http.get(h.url(path)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        assert_eq!(header(&r, LOCATION), target, "{path}");
    }
    let mut index = None;
    for view in [
        "/ui/",
        "/ui/aggregates/user/42?revision=3",
        "/ui/types/user",
    ] {
        let r = http.get(h.url(view)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{view}");
        assert!(header(&r, CONTENT_TYPE).starts_with("text/html"), "{view}");
        assert_eq!(header(&r, CACHE_CONTROL), "no-cache", "{view}");
        let csp = header(&r, CONTENT_SECURITY_POLICY);
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{view}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{view}: {csp}");
        assert_eq!(
            header(&r, "x-content-type-options".parse().unwrap()),
            "nosniff"
        );
        let body = r.text().await.unwrap();
        assert_eq!(index.get_or_insert_with(|| body.clone()), &body, "{view}");
    }
    let index = index.unwrap();
    let assets = linked_assets(&index);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "the index loads a script: {assets:?}"
    );
    for asset in &assets {
        let r = http.get(h.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(
            header(&r, CACHE_CONTROL).contains("immutable"),
            "{asset}: {:?}",
            r.headers()
        );
        assert!(!header(&r, CONTENT_TYPE).is_empty(), "{asset}");
        assert!(!header(&r, CONTENT_SECURITY_POLICY).is_empty(), "{asset}");
    }
    // Another build's folder, or a file that is not there: 404, never the index.
    let asset = &assets[0];
    let (folder, file) = asset["/ui/assets/".len()..].split_once('/').unwrap();
    for missing in [
        format!("/ui/assets/{}/{file}", "0".repeat(folder.len())),
        format!("/ui/assets/{folder}/no-such-file.js"),
        format!("/ui/assets/{folder}/index.html"),
    ] {
        let r = http.get(h.url(&missing)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_ne!(header(&r, CACHE_CONTROL), "no-cache", "{missing}");
    }
}

#[tokio::test]
async fn no_ui_serves_no_page() {
    let h = Harness::start_with(super::runtime_config(), |c| c.ui(false)).await;
    let http = no_redirects();
    for path in ["/", "/ui", "/ui/", "/ui/aggregates/user/1"] {
        let r = http.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The API is still there.
    assert_eq!(h.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_page_needs_no_token_but_the_api_it_reads_does() {
    let h = secured().await.h;
    let r = no_redirects().get(h.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The page holds nothing of the store's: its reads go through the API, which asks.
    problem(
        h.get("/v1/types").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_aggregate_says_its_revision_without_a_replay() {
    let h = Harness::start().await;
    h.append(
        "user",
        "7",
        vec![user_created(7, "Ann"), user_created(7, "Ann")],
    )
    .await;
    let body = json_body(h.get("/v1/aggregates/user/7").await, StatusCode::OK).await;
    assert_eq!(
        body,
        serde_json::json!({"type": "user", "id": "7", "revision": 2})
    );
    problem(
        h.get("/v1/aggregates/user/8").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}
