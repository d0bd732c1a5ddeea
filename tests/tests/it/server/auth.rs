//! Bearer tokens and roles, and the refusal to listen openly without them.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use streamfold::Runtime;
use streamfold_server::{Role, Server, ServerConfig, Tokens, new_token};
use streamfold_test_support::Env;
use streamfold_tests::plugins;

use super::{Harness, client, header, json_body, problem, runtime_config, user_created};

/// Tokens of each kind, and a server that accepts them (through a tokens file), with
/// the `user` and `cart` reducers and `user/1`.
pub(super) struct Secured {
    pub(super) h: Harness,
    pub(super) read: String,
    pub(super) write: String,
    pub(super) admin: String,
    /// `write`, limited to `cart`.
    pub(super) cart_writer: String,
    /// `admin`, limited to `cart`.
    pub(super) cart_admin: String,
}

pub(super) async fn secured() -> Secured {
    let (read, read_line) = new_token(Role::Read, &[]).unwrap();
    let (write, write_line) = new_token(Role::Write, &[]).unwrap();
    let (admin, admin_line) = new_token(Role::Admin, &[]).unwrap();
    let (cart_writer, cart_line) = new_token(Role::Write, &["cart".to_owned()]).unwrap();
    let (cart_admin, cart_admin_line) = new_token(Role::Admin, &["cart".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# the test's tokens\n{read_line}\n{write_line}\n{admin_line}\n{cart_line}\n{cart_admin_line}\n"),
    )
    .unwrap();
    let tokens = Tokens::load(&file).expect("the tokens file parses");
    assert_eq!(tokens.len(), 5);
    assert_eq!(
        Tokens::parse(&std::fs::read_to_string(&file).unwrap())
            .unwrap()
            .len(),
        5
    );
    let text = std::fs::read_to_string(&file).unwrap();
    for token in [&read, &write, &admin, &cart_writer, &cart_admin] {
        assert!(!text.contains(token.as_str()), "the file holds hashes only");
    }
    let h = Harness::start_with(runtime_config(), |c| c.tokens(Some(tokens))).await;
    h.register(plugins::USER, true).await;
    h.register(plugins::CART, true).await;
    h.env
        .store
        .append(
            "user",
            "1",
            vec![streamfold::NewEvent::new(
                "UserCreated",
                &user_created(1, "Alice")["data"],
            )],
            streamfold::ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    Secured {
        h,
        read,
        write,
        admin,
        cart_writer,
        cart_admin,
    }
}

impl Secured {
    async fn get(&self, token: &str, path: &str) -> Response {
        self.h
            .http
            .get(self.h.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn append(&self, token: &str, t: &str, id: &str) -> Response {
        self.h
            .http
            .post(self.h.url(&format!("/v1/aggregates/{t}/{id}/events")))
            .bearer_auth(token)
            .json(&json!({"events": [{"event_type": "Noted", "data": {}}]}))
            .send()
            .await
            .unwrap()
    }

    async fn upload(&self, token: &str, plugin: &str) -> Response {
        self.h
            .http
            .post(self.h.url("/v1/plugins?activate=false"))
            .bearer_auth(token)
            .header(CONTENT_TYPE, "application/wasm")
            .body(plugins::read(plugin))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn requests_without_a_known_token_are_401_with_a_challenge() {
    let s = secured().await;
    for path in [
        "/v1/plugins",
        "/v1/aggregates/user/1/events",
        "/v1/aggregates/user/1/state",
    ] {
        let r = s.h.get(path).await;
        assert!(
            header(&r, WWW_AUTHENTICATE.as_str()).starts_with("Bearer"),
            "{path}: a Bearer challenge"
        );
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let (unknown, _) = new_token(Role::Admin, &[]).unwrap();
    let r = s.get(&unknown, "/v1/plugins").await;
    assert!(header(&r, WWW_AUTHENTICATE.as_str()).starts_with("Bearer"));
    let body = problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(
        !body.to_string().contains(&unknown),
        "the answer does not echo the token"
    );
    // Not a bearer token at all.
    let r =
        s.h.http
            .get(s.h.url("/v1/plugins"))
            .header(AUTHORIZATION, format!("Basic {}", s.admin))
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Nothing was appended without a token.
    let r =
        s.h.http
            .post(s.h.url("/v1/aggregates/user/1/events"))
            .json(&json!({"events": [{"event_type": "Noted", "data": {}}]}))
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(s.h.env.store.revision("user", "1").await.unwrap(), 1);
}

#[tokio::test]
async fn each_role_allows_what_it_names_and_no_more() {
    let s = secured().await;

    // read: every GET, no append, no upload.
    for path in [
        "/v1/aggregates/user/1/events",
        "/v1/aggregates/user/1/state",
        "/v1/categories/user/events",
        "/v1/plugins",
        "/v1/plugins/user/history",
    ] {
        let r = s.get(&s.read, path).await;
        assert_eq!(r.status(), StatusCode::OK, "read token: GET {path}");
    }
    problem(
        s.append(&s.read, "user", "1").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        s.upload(&s.read, plugins::USER_V2).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // write: appends and reads, no upload, no activation.
    json_body(s.append(&s.write, "user", "1").await, StatusCode::CREATED).await;
    let r = s.get(&s.write, "/v1/aggregates/user/1/events").await;
    assert_eq!(r.status(), StatusCode::OK);
    problem(
        s.upload(&s.write, plugins::USER_V2).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let r =
        s.h.http
            .put(s.h.url("/v1/plugins/user/active"))
            .bearer_auth(&s.write)
            .json(&json!({"version": "0.1.0"}))
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // admin: everything.
    json_body(s.append(&s.admin, "user", "1").await, StatusCode::CREATED).await;
    let uploaded = json_body(
        s.upload(&s.admin, plugins::USER_V2).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(uploaded["plugin"]["version"], "0.2.0");
    let r = s.get(&s.admin, "/v1/aggregates/user/1/state").await;
    assert_eq!(r.status(), StatusCode::OK);

    assert_eq!(
        s.h.env.store.revision("user", "1").await.unwrap(),
        3,
        "the write and admin appends only"
    );
}

#[tokio::test]
async fn a_token_limited_to_a_type_is_forbidden_the_others() {
    let s = secured().await;
    let t = &s.cart_writer;
    json_body(s.append(t, "cart", "1").await, StatusCode::CREATED).await;
    let r = s.get(t, "/v1/aggregates/cart/1/events").await;
    assert_eq!(r.status(), StatusCode::OK);

    let body = problem(
        s.append(t, "user", "1").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("cart"), "{body}");
    for path in [
        "/v1/aggregates/user/1/events",
        "/v1/aggregates/user/1/state",
        "/v1/categories/user/events",
        "/v1/plugins?type=user",
    ] {
        problem(s.get(t, path).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // The plugin list shows only its types.
    let list: Value = json_body(s.get(t, "/v1/plugins").await, StatusCode::OK).await;
    let types: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["aggregate_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["cart"], "{list}");
    assert_eq!(s.h.env.store.revision("user", "1").await.unwrap(), 1);
}

#[tokio::test]
async fn healthz_and_readyz_need_no_token() {
    let s = secured().await;
    let health = json_body(s.h.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = json_body(s.h.get("/readyz").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    // While /v1 does.
    problem(
        s.h.get("/v1/plugins").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn without_tokens_only_loopback_is_served_unless_insecure() {
    let env = Env::start().await;
    let rt = Runtime::new(env.store.clone(), runtime_config()).unwrap();
    let open = "0.0.0.0:0".parse().unwrap();

    let err = Server::bind(rt.clone(), ServerConfig::default().listen(open))
        .await
        .expect_err("an open address without tokens is refused");
    let message = err.to_string();
    assert!(message.contains("tokens"), "{message}");
    assert!(message.contains("--insecure"), "{message}");

    // With tokens it binds.
    let (_, line) = new_token(Role::Read, &[]).unwrap();
    let with_tokens = ServerConfig::default()
        .listen(open)
        .tokens(Some(Tokens::parse(&line).unwrap()));
    drop(Server::bind(rt.clone(), with_tokens).await.expect("binds"));

    // And with `insecure` it binds, and serves.
    let server = Server::bind(rt, ServerConfig::default().listen(open).insecure(true))
        .await
        .expect("insecure binds");
    let addr = server.local_addr().unwrap();
    assert!(addr.ip().is_unspecified(), "{addr}");
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let r = client()
        .get(format!("http://127.0.0.1:{}/v1/plugins", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(r, StatusCode::OK).await, json!([]));
    stop.send(()).unwrap();
    run.await.unwrap().expect("run returns Ok");
}
