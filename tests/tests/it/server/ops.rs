//! Liveness while a reducer spins, bounded replays, graceful shutdown, readiness
//! while Redis is away, and unknown routes.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use streamfold_test_support::wait_until;
use streamfold_tests::plugins;
use tokio::task::JoinHandle;

use super::{
    Harness, PATIENCE, PROBLEM_JSON, content_type, ev, header, json_body, problem, runtime_config,
    runtime_config_with_timeout, status_and_text, user_created,
};

/// A server that runs one replay at a time, whose `user` reducer (SPIN) never
/// returns (cut off after `call_timeout`), with `user/1` to replay and a `cart/1`
/// whose replay is quick.
async fn spinning(call_timeout: Duration) -> Harness {
    let h = Harness::start_with(runtime_config_with_timeout(call_timeout), |c| {
        c.max_concurrent_replays(1)
    })
    .await;
    h.register(plugins::SPIN, true).await;
    h.register(plugins::CART, true).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    h.append(
        "cart",
        "1",
        vec![ev("CartOpened", json!({"customer": "alice"}))],
    )
    .await;
    h
}

/// `GET user/1/state` in the background, retried while the server is busy with a
/// probe (see [`replay_in_flight`]): its answer, status and body, once it has one.
fn spinning_state(h: &Harness) -> JoinHandle<(StatusCode, String, String)> {
    let http = h.http.clone();
    let url = h.url("/v1/aggregates/user/1/state");
    tokio::spawn(async move {
        wait_until(
            "the spinning state request gets a replay slot",
            PATIENCE,
            || {
                let request = http.get(&url).send();
                async move {
                    let r = request.await.expect("the state request is answered");
                    let kind = content_type(&r);
                    let (status, text) = status_and_text(r).await;
                    (status != StatusCode::SERVICE_UNAVAILABLE).then_some((status, kind, text))
                }
            },
        )
        .await
    })
}

/// Waits until a replay holds the server's only replay slot: a quick replay
/// (`cart/1`) is then refused as busy. Returns that refusal.
async fn replay_in_flight(h: &Harness) -> reqwest::Response {
    wait_until(
        "a replay in flight (a quick one refused as busy)",
        PATIENCE,
        || async {
            let r = h.get("/v1/aggregates/cart/1/state").await;
            match r.status() {
                StatusCode::SERVICE_UNAVAILABLE => Some(r),
                StatusCode::OK => None,
                other => panic!("the quick replay answered {other}"),
            }
        },
    )
    .await
}

/// Asserts a complete 422 reducer-failed answer from the spinning reducer.
fn assert_spin_failed((status, kind, text): (StatusCode, String, String)) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(kind, PROBLEM_JSON);
    let body: Value = serde_json::from_str(&text).expect("a complete JSON body");
    assert_eq!(
        body["type"], "urn:streamfold:problem:reducer-failed",
        "{body}"
    );
    assert_eq!(body["reducer"]["aggregate"], "user/1", "{body}");
}

#[tokio::test]
async fn healthz_answers_while_a_reducer_spins() {
    let h = spinning(Duration::from_secs(5)).await;
    let spin = spinning_state(&h);
    replay_in_flight(&h).await;
    for _ in 0..5 {
        let health = json_body(h.get("/healthz").await, StatusCode::OK).await;
        assert_eq!(health["status"], "ok");
        assert!(
            !spin.is_finished(),
            "/healthz answered only after the spinning replay ended"
        );
    }
    // Reads that replay nothing are answered too.
    json_body(h.get("/v1/aggregates/user/1/events").await, StatusCode::OK).await;
    assert!(!spin.is_finished());
    assert_spin_failed(spin.await.unwrap());
}

#[tokio::test]
async fn replays_beyond_the_limit_get_503_busy_with_retry_after() {
    let h = spinning(Duration::from_secs(3)).await;
    let spin = spinning_state(&h);
    let refused = replay_in_flight(&h).await;
    assert_eq!(header(&refused, RETRY_AFTER.as_str()), "1");
    let body = problem(refused, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    assert!(body["detail"].as_str().unwrap().contains('1'), "{body}");
    assert_spin_failed(spin.await.unwrap());

    // The slot is free again once the replay ended.
    let cart = json_body(h.get("/v1/aggregates/cart/1/state").await, StatusCode::OK).await;
    assert_eq!(cart["customer"], "alice", "{cart}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_refuses_connections() {
    let mut h = spinning(Duration::from_secs(2)).await;
    let spin = spinning_state(&h);
    replay_in_flight(&h).await;
    h.trigger_shutdown();
    assert!(
        !spin.is_finished(),
        "the request is in flight at the shutdown"
    );

    let addr = h.addr;
    wait_until(
        "the server stops accepting connections",
        PATIENCE,
        || async {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert_spin_failed(spin.await.expect("the in-flight request got its answer"));
    h.stopped().await.expect("run returns Ok");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after run returned"
    );
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_returns_ok_at_once() {
    let mut h = Harness::start().await;
    json_body(h.get("/healthz").await, StatusCode::OK).await;
    h.trigger_shutdown();
    h.stopped().await.expect("run returns Ok");
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err());
}

#[tokio::test]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let mut h = Harness::start_with(runtime_config(), |c| c).await;
    let ready = json_body(h.get("/readyz").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");

    h.env.redis_mut().stop();
    let r = wait_until("/readyz to report Redis gone", PATIENCE, || async {
        let r = h.get("/readyz").await;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await;
    assert_eq!(header(&r, RETRY_AFTER.as_str()), "1");
    let body = problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_eq!(body["readiness"], "not-ready", "{body}");
    let reason = body["detail"].as_str().unwrap();
    assert!(!reason.contains("password"), "{reason}");
    // Liveness is not readiness: the process still answers.
    json_body(h.get("/healthz").await, StatusCode::OK).await;

    h.env
        .redis_mut()
        .start_again()
        .expect("redis-server starts again");
    wait_until("/readyz to report ready again", PATIENCE, || async {
        (h.get("/readyz").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    let ready = json_body(h.get("/readyz").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let h = Harness::start().await;
    for path in [
        "/nope",
        "/v1/nope",
        "/v1/aggregates/user/1/nope",
        "/v2/plugins",
    ] {
        let r = h.get(path).await;
        assert_eq!(content_type(&r), PROBLEM_JSON, "{path}");
        let body = problem(r, StatusCode::NOT_FOUND, "not-found").await;
        assert!(body["detail"].as_str().unwrap().contains(path), "{body}");
    }
}
