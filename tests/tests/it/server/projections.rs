//! Projections over HTTP (`/v1/projections`): uploading the real `email-domains`
//! component, the server running it, documents by key and by page with ETags, the
//! change stream, what may not be removed, bad uploads, and who may do what.

use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use streamfold::names::MAX_ID_CHARS;
use streamfold_server::{Role, Tokens, new_token};
use streamfold_test_support::wait_until;
use streamfold_tests::plugins;

use super::{Harness, PATIENCE, ev, json_body, problem, runtime_config};

const WASM: &str = "application/wasm";

fn email_domains() -> Vec<u8> {
    plugins::read(plugins::path("email-domains"))
}

async fn upload(h: &Harness, token: Option<&str>, query: &str, bytes: Vec<u8>) -> Response {
    let mut req = h
        .http
        .post(h.url(&format!("/v1/projections{query}")))
        .header(CONTENT_TYPE, WASM)
        .body(bytes);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("POST /v1/projections")
}

fn created(id: &str, email: &str) -> Value {
    ev(
        "UserCreated",
        json!({"id": id, "name": id, "email": email, "timestamp": "t1"}),
    )
}

fn changed(email: &str) -> Value {
    ev("EmailChanged", json!({"email": email, "timestamp": "t2"}))
}

/// Waits until document `key` of `email-domains` is `want` (`None`: absent).
async fn wait_doc(h: &Harness, key: &str, want: Option<Value>) {
    let path = format!("/v1/projections/email-domains/docs/{}", encode(key));
    wait_until(&format!("{key} to be {want:?}"), PATIENCE, || async {
        let r = h.get(&path).await;
        let now = match r.status() {
            StatusCode::OK => Some(r.json::<Value>().await.unwrap()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {path}: {other}"),
        };
        (now == want).then_some(())
    })
    .await;
}

/// A key as a path segment: `/` percent-encoded.
fn encode(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

#[tokio::test]
async fn an_uploaded_projection_runs_on_the_server_and_serves_its_documents() {
    let h = Harness::start().await;
    h.append("user", "1", vec![created("1", "ada@Example.com")])
        .await;
    h.append("user", "2", vec![created("2", "bob@example.com")])
        .await;
    let reg = json_body(
        upload(&h, None, "?on_error=skip", email_domains()).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(reg["name"], "email-domains", "{reg}");
    assert_eq!(reg["sources"], json!(["user"]), "{reg}");
    assert_eq!(reg["active"], true, "{reg}");
    let digest = reg["digest"].as_str().unwrap().to_owned();

    // The server runs it: it catches up, serves, and goes live.
    let status = wait_until("the projection to be live", PATIENCE, || async {
        let s = json_body(h.get("/v1/projections/email-domains").await, StatusCode::OK).await;
        (s["status"] == "live" && s["serving"]["digest"] == digest.as_str()).then_some(s)
    })
    .await;
    assert_eq!(status["on_error"], "skip", "{status}");
    assert_eq!(status["serving"]["version"], reg["version"], "{status}");
    let list = json_body(h.get("/v1/projections").await, StatusCode::OK).await;
    assert_eq!(list["projections"][0]["name"], "email-domains", "{list}");
    // Its figures in /metrics (read in the background every few seconds).
    let text = wait_until("the projection's figures in /metrics", PATIENCE, || async {
        let (_, text) = super::status_and_text(h.get("/metrics").await).await;
        text.lines()
            .any(|l| {
                l.starts_with("streamfold_projection_state{projection=\"email-domains\"")
                    && l.contains("state=\"live\"")
                    && l.ends_with(" 1")
            })
            .then_some(text)
    })
    .await;
    // This server ran it: it took the lease and committed batches.
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
    };
    assert!(value("streamfold_projection_batches_total{projection=\"email-domains\"") >= 1.0);
    assert!(value("streamfold_projection_commit_seconds_total{projection=\"email-domains\"") > 0.0);
    let taken = text
        .lines()
        .find(|l| {
            l.starts_with("streamfold_projection_lease_changes_total{projection=\"email-domains\"")
                && l.contains("change=\"taken\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(taken, Some(1.0), "{text}");

    let domain = json!({"domain": "example.com", "users": 2, "user_ids": ["1", "2"]});
    wait_doc(&h, "domain/example.com", Some(domain.clone())).await;
    // A key with its slash as is: the same document.
    let r = h
        .get("/v1/projections/email-domains/docs/domain%2Fexample.com")
        .await;
    let etag = r.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(json_body(r, StatusCode::OK).await, domain);
    // The ETag: 304 while the document stays the same.
    let again = h
        .http
        .get(h.url("/v1/projections/email-domains/docs/domain%2Fexample.com"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // Live: a move between domains shows within the patience.
    h.append("user", "2", vec![changed("bob@other.org")]).await;
    wait_doc(
        &h,
        "domain/example.com",
        Some(json!({"domain": "example.com", "users": 1, "user_ids": ["1"]})),
    )
    .await;
    wait_doc(
        &h,
        "domain/other.org",
        Some(json!({"domain": "other.org", "users": 1, "user_ids": ["2"]})),
    )
    .await;
    let changed_doc = h
        .http
        .get(h.url("/v1/projections/email-domains/docs/domain%2Fexample.com"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed_doc.status(), StatusCode::OK, "a stale ETag");

    // Pages in key order, by prefix.
    let page = json_body(
        h.get("/v1/projections/email-domains/docs?prefix=domain/&limit=1")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["docs"][0]["key"], "domain/example.com", "{page}");
    assert_eq!(page["next_after"], "domain/example.com", "{page}");
    let rest = json_body(
        h.get("/v1/projections/email-domains/docs?prefix=domain/&after=domain/example.com")
            .await,
        StatusCode::OK,
    )
    .await;
    let keys: Vec<&str> = rest["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["domain/other.org"], "{rest}");
    assert_eq!(rest["next_after"], Value::Null);

    // Unknown documents and projections are 404 problems; the serving version is
    // not removed.
    problem(
        h.get("/v1/projections/email-domains/docs/domain%2Fnone.example")
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    problem(
        h.get("/v1/projections/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let r = h
        .http
        .delete(h.url(&format!("/v1/projections/email-domains/{digest}")))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::CONFLICT, "active-plugin").await;
}

#[tokio::test]
async fn the_change_stream_pushes_document_changes() {
    let h = Harness::start().await;
    json_body(
        upload(&h, None, "", email_domains()).await,
        StatusCode::CREATED,
    )
    .await;
    h.append("user", "1", vec![created("1", "ada@example.com")])
        .await;
    wait_doc(&h, "user/1", Some(json!({"domain": "example.com"}))).await;
    let mut stream = h
        .http
        .get(h.url("/v1/projections/email-domains/subscribe"))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    h.append("user", "1", vec![changed("ada@new.example")])
        .await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(text.contains("domain/new.example") && text.contains("user/1")) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("changes within the patience")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: change"), "{text}");
    assert!(
        text.contains("\"op\":\"delete\""),
        "the emptied domain: {text}"
    );
    assert!(text.contains("id: "), "resumable: {text}");
}

#[tokio::test]
async fn bad_uploads_and_bad_reads_are_problems() {
    let h = Harness::start().await;
    // A reducer is not a projection.
    let p = problem(
        upload(&h, None, "", plugins::read(plugins::USER)).await,
        StatusCode::BAD_REQUEST,
        "invalid-plugin",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("projection"), "{p}");
    problem(
        upload(&h, None, "", b"not wasm at all".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid-plugin",
    )
    .await;
    problem(
        upload(&h, None, "?on_error=ignore", email_domains()).await,
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    json_body(
        upload(&h, None, "", email_domains()).await,
        StatusCode::CREATED,
    )
    .await;
    let long = "k".repeat(MAX_ID_CHARS * 3);
    problem(
        h.get(&format!("/v1/projections/email-domains/docs/{long}"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    problem(
        h.get("/v1/projections/email-domains/docs?limit=0").await,
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    let r = h
        .http
        .put(h.url("/v1/projections/email-domains/active"))
        .json(&json!({"version": "9.9.9"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    // Nothing of it broke the server.
    json_body(h.get("/healthz").await, StatusCode::OK).await;
}

#[tokio::test]
async fn reading_needs_read_on_its_types_and_managing_needs_admin() {
    let (admin, admin_line) = new_token(Role::Admin, &[]).unwrap();
    let (reader, reader_line) = new_token(Role::Read, &["user".to_owned()]).unwrap();
    let (cart_reader, cart_line) = new_token(Role::Read, &["cart".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{admin_line}\n{reader_line}\n{cart_line}\n")).unwrap();
    let tokens = Tokens::load(&file).unwrap();
    let h = Harness::start_with(runtime_config(), |c| c.tokens(Some(tokens))).await;
    // Only an admin uploads.
    let r = upload(&h, Some(&reader), "", email_domains()).await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    json_body(
        upload(&h, Some(&admin), "", email_domains()).await,
        StatusCode::CREATED,
    )
    .await;
    let get =
        |token: &str, path: &str| h.http.get(h.url(path)).bearer_auth(token.to_owned()).send();
    // A reader of `user` sees it; a reader of `cart` neither sees nor reads it.
    let list = json_body(
        get(&reader, "/v1/projections").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["projections"].as_array().unwrap().len(), 1, "{list}");
    let list = json_body(
        get(&cart_reader, "/v1/projections").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["projections"], json!([]), "{list}");
    let r = get(&cart_reader, "/v1/projections/email-domains/docs?prefix=")
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = get(&reader, "/v1/projections/email-domains").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Rebuilding is an admin's.
    let r = h
        .http
        .post(h.url("/v1/projections/email-domains/rebuild"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = h
        .http
        .post(h.url("/v1/projections/email-domains/rebuild"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}
