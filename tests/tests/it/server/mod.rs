//! The HTTP API (`streamfold-server`) over real HTTP on loopback: a private
//! redis-server, a runtime over it, the server bound to a free port and run in the
//! background, and `reqwest` talking to it.
//!
//! - `events`: appends, bad input, histories, the category feed.
//! - `state`: replays with their headers and ETags, time travel, another reducer.
//! - `plugins`: the registry over HTTP.
//! - `auth`: tokens and roles, and the refusal to listen openly without them.
//! - `ops`: liveness and readiness, bounded replays, graceful shutdown, routes.
//! - `subscribe`: live subscriptions as Server-Sent Events.
//! - `openapi`: the OpenAPI document against the routes and bodies.
//! - `catalog`: the aggregate types and ids, for browsing.
//! - `session`: browser sessions, a cookie that grants reads only.
//! - `contract`: every route's declared access, body and constraints, enforced.
//! - `ui`: the explorer's files, headers and redirects.
//! - `groups`: durable subscriptions: groups, fetch and ack, redelivery, parking,
//!   long polls, bad input and roles.

mod auth;
mod catalog;
mod contract;
mod events;
mod group_workers;
mod groups;
mod openapi;
mod ops;
mod plugins;
mod projections;
mod session;
mod state;
mod subscribe;
mod ui;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use streamfold::{Limits, RegisterOptions, RegisteredPlugin, Runtime, RuntimeConfig};
use streamfold_server::{Server, ServerConfig};
use streamfold_test_support::Env;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The media type of every error body.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

/// How long a test waits for a condition before it fails: generous, for slow machines.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

/// A runtime configuration for the tests: no compiled-code cache on disk, no
/// automatic snapshots (every state is a pure replay).
pub(super) fn runtime_config() -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(None)
        .snapshot_every(None)
}

/// The same, with reducer calls cut off after `call_timeout` (for the spinning
/// reducer).
pub(super) fn runtime_config_with_timeout(call_timeout: Duration) -> RuntimeConfig {
    runtime_config().limits(Limits::default().call_timeout(call_timeout))
}

/// A server on a free loopback port over a fresh redis-server, running in the
/// background until [`Harness::trigger_shutdown`] (or until it is dropped).
pub(super) struct Harness {
    /// The redis-server and a store on it.
    pub env: Env,
    /// The runtime the server serves (a clone: the same registry and caches).
    pub rt: Runtime,
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The HTTP client (no proxy, a timeout per request so that nothing hangs).
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    run: Option<JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    /// A server with the default configuration (loopback, no tokens).
    pub async fn start() -> Harness {
        Self::start_with(runtime_config(), |c| c).await
    }

    /// A server whose configuration `configure` adjusts (the listen address is
    /// `127.0.0.1:0` unless it changes it), over a runtime configured with `rc`.
    pub async fn start_with(
        rc: RuntimeConfig,
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> Harness {
        Self::start_on(Env::start().await, rc, configure).await
    }

    /// [`start_with`](Self::start_with) over an environment of the test's own (a
    /// store configured otherwise, a Redis started with other arguments).
    pub async fn start_on(
        env: Env,
        rc: RuntimeConfig,
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> Harness {
        let rt = Runtime::new(env.store.clone(), rc).expect("the runtime starts");
        let config = configure(ServerConfig::default().listen(loopback()));
        let server = Server::bind(rt.clone(), config)
            .await
            .expect("the server binds");
        let addr = server.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Harness {
            env,
            rt,
            addr,
            http: client(),
            stop: Some(stop),
            run: Some(run),
        }
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Appends `events` (JSON objects with `event_type` and `data`) to `t/id` over
    /// HTTP with no expected revision, and returns the 201 answer's body.
    pub async fn append(&self, t: &str, id: &str, events: Vec<Value>) -> Value {
        let r = self
            .post_json(
                &format!("/v1/aggregates/{t}/{id}/events"),
                &json!({ "events": events }),
            )
            .await;
        json_body(r, StatusCode::CREATED).await
    }

    /// Registers the built plugin at `path` directly on the runtime.
    pub async fn register(&self, path: &str, activate: bool) -> RegisteredPlugin {
        self.rt
            .register(
                streamfold_tests::plugins::read(path),
                RegisterOptions::default().activate(activate),
            )
            .await
            .unwrap_or_else(|e| panic!("registering {path}: {e}"))
    }

    /// Completes the server's shutdown future.
    pub fn trigger_shutdown(&mut self) {
        let stop = self.stop.take().expect("shutdown is triggered once");
        stop.send(()).expect("the server is still running");
    }

    /// Waits for [`Server::run`] to return, and returns what it returned.
    pub async fn stopped(&mut self) -> std::io::Result<()> {
        let run = self.run.take().expect("the server's task");
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("run returns after the shutdown signal")
            .expect("the server's task did not panic")
    }
}

/// `127.0.0.1:0`: loopback, a free port.
pub(super) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// A client for the tests: never through a proxy from the environment, and every
/// request bounded in time.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client")
}

/// An event as the API takes it.
pub(super) fn ev(event_type: &str, data: Value) -> Value {
    json!({ "event_type": event_type, "data": data })
}

/// A `UserCreated` event the `user` reducers fold.
pub(super) fn user_created(id: u64, name: &str) -> Value {
    ev(
        "UserCreated",
        json!({"id": id, "name": name, "email": format!("{}@example.com", name.to_lowercase()), "timestamp": "t1"}),
    )
}

/// The `Content-Type` of a response, or `""`.
pub(super) fn content_type(r: &Response) -> String {
    header(r, CONTENT_TYPE.as_str())
}

/// A header of a response as text, or `""` when it is missing.
pub(super) fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
        .unwrap_or_default()
}

/// Asserts the status (showing the body when it is wrong) and parses the JSON body.
pub(super) async fn json_body(r: Response, status: StatusCode) -> Value {
    let (got, text) = status_and_text(r).await;
    assert_eq!(got, status, "unexpected status; the body was: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {text}"))
}

/// The status and the body's text.
pub(super) async fn status_and_text(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let text = r.text().await.expect("the whole body");
    (status, text)
}

/// Asserts that `r` is an RFC 9457 problem of `status` whose type is
/// `urn:streamfold:problem:{slug}`, with a title and a detail; returns the body.
pub(super) async fn problem(r: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(
        content_type(&r),
        PROBLEM_JSON,
        "an error is application/problem+json (status {})",
        r.status()
    );
    let body = json_body(r, status).await;
    assert_eq!(
        body["type"],
        format!("urn:streamfold:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "a title: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a detail: {body}"
    );
    body
}

/// The revisions of the events of a page (`{"events": [...]}`).
pub(super) fn revisions(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of events: {page}"))
        .iter()
        .map(|e| e["revision"].as_u64().expect("a revision"))
        .collect()
}
