//! Browser sessions: a bearer token exchanged for a cookie that grants reads only,
//! within the token's types, until it expires.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use streamfold_server::{Role, Tokens, new_token};
use streamfold_test_support::wait_until;

use super::auth::secured;
use super::{Harness, PATIENCE, header, json_body, problem, runtime_config, user_created};

/// Signs in with `token`; the cookie's `name=value` and its whole `Set-Cookie`.
async fn sign_in(h: &Harness, token: &str) -> (String, String) {
    let r = h
        .http
        .post(h.url("/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let set = header(&r, "set-cookie");
    let body = json_body(r, StatusCode::OK).await;
    assert_eq!(body["role"], "read", "{body}");
    assert!(body["expires_at"].is_string(), "{body}");
    let pair = set.split(';').next().unwrap().trim().to_owned();
    assert!(pair.starts_with("sf_session="), "{set}");
    (pair, set)
}

#[tokio::test]
async fn a_session_cookie_reads_and_never_changes_anything() {
    let t = secured().await;
    let h = &t.h;
    let (cookie, set) = sign_in(h, &t.admin).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(&t.admin), "the cookie holds no token: {set}");
    let get = |path: &str| h.http.get(h.url(path)).header("cookie", &cookie).send();
    // Reads, even from an admin's token, and even the state.
    json_body(
        get("/v1/aggregates/user/1/events").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    json_body(get("/v1/types").await.unwrap(), StatusCode::OK).await;
    // Never a change, not even with an admin's session.
    let r = h
        .http
        .post(h.url("/v1/aggregates/user/1/events"))
        .header("cookie", &cookie)
        .json(&json!({"events": [user_created(1, "Mallory")]}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/plugins/user/0.1.0"),
        (reqwest::Method::PUT, "/v1/plugins/user/active"),
        (reqwest::Method::POST, "/v1/plugins/verify"),
        (reqwest::Method::POST, "/v1/session"),
    ] {
        let r = h
            .http
            .request(method.clone(), h.url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A tampered or foreign cookie is no session.
    let tampered = format!("{}x", cookie);
    let r = h
        .http
        .get(h.url("/v1/types"))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Signing out clears the cookie.
    let r = h
        .http
        .delete(h.url("/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        header(&r, "set-cookie").contains("Max-Age=0"),
        "{}",
        header(&r, "set-cookie")
    );
}

#[tokio::test]
async fn a_session_keeps_its_tokens_types_and_ends_at_its_expiry() {
    let (read, line) = new_token(Role::Read, &["cart".to_owned()]).unwrap();
    let tokens = Tokens::parse(&line).unwrap();
    let h = Harness::start_with(runtime_config(), |c| {
        c.tokens(Some(tokens))
            .session_lifetime(Duration::from_secs(2))
    })
    .await;
    h.env
        .store
        .append(
            "user",
            "1",
            vec![streamfold::NewEvent::new("UserCreated", &json!({}))],
            streamfold::ExpectedRevision::Any,
        )
        .await
        .unwrap();
    let (cookie, _) = sign_in(&h, &read).await;
    let get = |path: &'static str| h.http.get(h.url(path)).header("cookie", &cookie).send();
    let r = get("/v1/aggregates/user/1/events").await.unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    json_body(
        get("/v1/categories/cart/events").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    // Behind a TLS proxy the cookie is Secure.
    let r = h
        .http
        .post(h.url("/v1/session"))
        .bearer_auth(&read)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "set-cookie").contains("; Secure"));
    // After its lifetime it is refused.
    wait_until("the session to expire", PATIENCE, || async {
        (get("/v1/categories/cart/events").await.unwrap().status() == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn without_tokens_no_session_is_needed() {
    let h = Harness::start().await;
    let r = h.http.post(h.url("/v1/session")).send().await.unwrap();
    assert_eq!(header(&r, "set-cookie"), "");
    let body = json_body(r, StatusCode::OK).await;
    assert!(body["expires_at"].is_null(), "{body}");
}
