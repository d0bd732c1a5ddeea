//! Durable subscriptions over HTTP (`/v1/groups`): creating groups, a worker loop of
//! fetch and ack, redelivery after the ack timeout, nacks, parking and replay, long
//! polls, bad input and who may do what.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::auth::secured;
use super::{Harness, PATIENCE, ev, json_body, problem};

fn path(t: &str, g: &str, rest: &str) -> String {
    format!("/v1/groups/{t}/{g}{rest}")
}

pub(super) async fn put(h: &Harness, t: &str, g: &str, body: &Value) -> Response {
    h.http
        .put(h.url(&path(t, g, "")))
        .json(body)
        .send()
        .await
        .expect("PUT a group")
}

pub(super) async fn fetch(h: &Harness, t: &str, g: &str, body: Value) -> Vec<Value> {
    let r = h.post_json(&path(t, g, "/fetch"), &body).await;
    let got = json_body(r, StatusCode::OK).await;
    got["deliveries"].as_array().expect("deliveries").clone()
}

pub(super) async fn settle(h: &Harness, t: &str, g: &str, what: &str, body: Value) -> Value {
    json_body(
        h.post_json(&path(t, g, &format!("/{what}")), &body).await,
        StatusCode::OK,
    )
    .await
}

pub(super) async fn status(h: &Harness, t: &str, g: &str) -> Value {
    json_body(h.get(&path(t, g, "")).await, StatusCode::OK).await
}

pub(super) fn tokens(deliveries: &[Value]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d["delivery"].as_str().expect("a token").to_owned())
        .collect()
}

pub(super) fn step(n: u64) -> Value {
    ev("Stepped", json!({ "n": n }))
}

#[tokio::test]
async fn create_is_idempotent_conflicts_on_other_settings_and_delete_frees_it() {
    let h = Harness::start().await;
    h.append("order", "1", vec![step(1)]).await;
    let settings = json!({"start": "beginning", "ack_timeout_ms": 5000, "max_deliveries": 3});
    let made = json_body(
        put(&h, "order", "mailer", &settings).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(made["created"], true, "{made}");
    assert_eq!(made["type"], "order");
    assert_eq!(made["group"], "mailer");
    assert_eq!(
        made["settings"],
        json!({"start": "beginning", "ack_timeout_ms": 5000, "max_deliveries": 3})
    );
    // The same settings again: 200, nothing changed.
    let again = json_body(put(&h, "order", "mailer", &settings).await, StatusCode::OK).await;
    assert_eq!(again["created"], false);
    assert_eq!(again["created_at_ms"], made["created_at_ms"]);
    // Other settings: 409, and the group keeps its own.
    let p = problem(
        put(&h, "order", "mailer", &json!({"ack_timeout_ms": 6000})).await,
        StatusCode::CONFLICT,
        "group-exists",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("other settings"),
        "{p}"
    );
    let s = status(&h, "order", "mailer").await;
    assert_eq!(s["settings"]["ack_timeout_ms"], 5000, "{s}");
    assert_eq!(s["undelivered"], 1, "{s}");
    assert_eq!(s["pending"], 0);
    // Defaults from the store for an empty body.
    let d = json_body(
        put(&h, "order", "audit", &json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        d["settings"],
        json!({"start": "beginning", "ack_timeout_ms": 30000, "max_deliveries": 10})
    );
    // Listed, by type and name.
    let list = json_body(h.get("/v1/groups").await, StatusCode::OK).await;
    let names: Vec<&str> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit", "mailer"], "{list}");
    // Deleted: 204, then 404 everywhere.
    let r = h
        .http
        .delete(h.url(&path("order", "mailer", "")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = h
        .http
        .delete(h.url(&path("order", "mailer", "")))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    problem(
        h.get(&path("order", "mailer", "")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let r = h
        .post_json(
            &path("order", "mailer", "/fetch"),
            &json!({"consumer": "w"}),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    let list = json_body(h.get("/v1/groups").await, StatusCode::OK).await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing() {
    let h = Harness::start().await;
    h.append("order", "1", vec![step(1)]).await;
    let made = put(&h, "order", "g", &json!({"ack_timeout_ms": 60000})).await;
    json_body(made, StatusCode::CREATED).await;
    // Unknown groups and types: 404.
    for p in [path("order", "nope", ""), path("nothing", "g", "")] {
        problem(h.get(&p).await, StatusCode::NOT_FOUND, "not-found").await;
    }
    for body in [json!({"deliveries": []}), json!({"deliveries": ["0/1-0"]})] {
        let r = h.post_json(&path("order", "nope", "/ack"), &body).await;
        problem(r, StatusCode::NOT_FOUND, "not-found").await;
    }
    let r = h
        .post_json(
            &path("order", "nope", "/nack"),
            &json!({"deliveries": [], "action": "skip"}),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    problem(
        h.get(&path("order", "nope", "/parked")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    // Bad creates: nothing is created.
    for (g, body) in [
        ("a%20b", json!({})),
        ("a%7Bb", json!({})),
        ("ok", json!({"start": "now"})),
        ("ok", json!({"ack_timeout_ms": 0})),
        ("ok", json!({"max_deliveries": 1001})),
        ("ok", json!({"max_deliveries": -1})),
        ("ok", json!({"extra": 1})),
        ("ok", json!([null, null])),
    ] {
        let r = put(&h, "order", g, &body).await;
        problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    problem(
        h.get(&path("order", "ok", "")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    // A long name: 400.
    let long = "g".repeat(129);
    problem(
        put(&h, "order", &long, &json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    // Bad fetches: nothing is delivered.
    for body in [
        json!({"consumer": ""}),
        json!({"consumer": "a b"}),
        json!({"consumer": "w", "max": 0}),
        json!({"consumer": "w", "max": 1001}),
        json!({"consumer": "w", "wait_ms": -1}),
        json!({"consumer": "w", "wait_ms": 30001}),
        json!({"max": 1}),
        json!(["w", 1, 0]),
    ] {
        let r = h.post_json(&path("order", "g", "/fetch"), &body).await;
        let p = problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    let s = status(&h, "order", "g").await;
    assert_eq!(
        (s["pending"].clone(), s["undelivered"].clone()),
        (json!(0), json!(1)),
        "{s}"
    );
    // A delivery, then bad acks and nacks: it stays pending.
    let got = fetch(&h, "order", "g", json!({"consumer": "w"})).await;
    assert_eq!(got.len(), 1);
    let token = tokens(&got)[0].clone();
    for (what, body) in [
        ("ack", json!({"deliveries": [token, "nope"]})),
        ("ack", json!({"deliveries": "0/1-0"})),
        ("nack", json!({"deliveries": [token], "action": "explode"})),
        (
            "nack",
            json!({"deliveries": [token], "action": "retry", "delay_ms": -5}),
        ),
        (
            "nack",
            json!({"deliveries": [token], "action": "retry", "delay_ms": 60001}),
        ),
        (
            "nack",
            json!({"deliveries": [token, "x/1-0"], "action": "skip"}),
        ),
        (
            "nack",
            json!({"deliveries": [token], "action": "park", "reason": "r".repeat(4097)}),
        ),
    ] {
        let r = h
            .post_json(&path("order", "g", &format!("/{what}")), &body)
            .await;
        problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    let s = status(&h, "order", "g").await;
    assert_eq!(
        (s["pending"].clone(), s["parked"].clone()),
        (json!(1), json!(0)),
        "{s}"
    );
    // Then a good ack; acking again is harmless and says so.
    let done = settle(&h, "order", "g", "ack", json!({"deliveries": [token]})).await;
    assert_eq!(done, json!({"done": 1, "unknown": []}));
    // A partition the type does not have (a token of another partition count): not
    // pending either.
    let again = settle(
        &h,
        "order",
        "g",
        "ack",
        json!({"deliveries": [token, "0/1-0", "7/1-0"]}),
    )
    .await;
    assert_eq!(
        again,
        json!({"done": 0, "unknown": [token, "0/1-0", "7/1-0"]})
    );
    // Whole numbers may be written as floats, as JSON Schema counts them.
    let fetched = fetch(
        &h,
        "order",
        "g",
        json!({"consumer": "w", "max": 5.0, "wait_ms": 0.0}),
    )
    .await;
    assert!(fetched.is_empty());
    let r = h
        .post_json(
            &path("order", "g", "/fetch"),
            &json!({"consumer": "w", "max": 1.5}),
        )
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
}

#[tokio::test]
async fn a_worker_loop_handles_every_event_in_order_per_aggregate() {
    let h = Harness::start().await;
    for n in 1..=5 {
        h.append("order", "a", vec![step(n)]).await;
        h.append("order", "b", vec![step(n)]).await;
    }
    json_body(
        put(&h, "order", "worker", &json!({"start": "beginning"})).await,
        StatusCode::CREATED,
    )
    .await;
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.values().map(Vec::len).sum::<usize>() < 10 {
        assert!(Instant::now() < deadline, "handled only {seen:?}");
        let got = fetch(
            &h,
            "order",
            "worker",
            json!({"consumer": "worker-1", "max": 100, "wait_ms": 1000}),
        )
        .await;
        // Never two events of one aggregate in one batch.
        let mut ids: Vec<&str> = got
            .iter()
            .map(|d| d["event"]["aggregate_id"].as_str().unwrap())
            .collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "{got:?}");
        for d in &got {
            assert_eq!(d["delivery_count"], 1, "{d}");
            let id = d["event"]["aggregate_id"].as_str().unwrap().to_owned();
            seen.entry(id)
                .or_default()
                .push(d["event"]["revision"].as_u64().unwrap());
        }
        let done = settle(
            &h,
            "order",
            "worker",
            "ack",
            json!({"deliveries": tokens(&got)}),
        )
        .await;
        assert_eq!(done["done"], got.len(), "{done}");
    }
    let want: Vec<u64> = (1..=5).collect();
    assert_eq!(seen.get("a"), Some(&want), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&want), "{seen:?}");
    let s = status(&h, "order", "worker").await;
    assert_eq!(
        (s["pending"].clone(), s["undelivered"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );
    assert_eq!(s["consumers"][0]["name"], "worker-1", "{s}");
    // Nothing more.
    assert!(
        fetch(&h, "order", "worker", json!({"consumer": "worker-1"}))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn unacknowledged_events_go_to_another_consumer_after_the_ack_timeout() {
    let h = Harness::start().await;
    h.append("order", "1", vec![step(1)]).await;
    h.append("order", "2", vec![step(1)]).await;
    json_body(
        put(&h, "order", "g", &json!({"ack_timeout_ms": 200})).await,
        StatusCode::CREATED,
    )
    .await;
    let first = fetch(&h, "order", "g", json!({"consumer": "dies", "max": 10})).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let s = status(&h, "order", "g").await;
    assert_eq!(s["pending"], 2, "{s}");
    // Another consumer waits for them: redelivered once the timeout passes.
    let mut again = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while again.len() < 2 {
        assert!(Instant::now() < deadline, "redelivered only {again:?}");
        again.extend(
            fetch(
                &h,
                "order",
                "g",
                json!({"consumer": "lives", "max": 10, "wait_ms": 1000}),
            )
            .await,
        );
    }
    for d in &again {
        assert_eq!(d["delivery_count"], 2, "{d}");
    }
    let mut ids: Vec<&str> = again
        .iter()
        .map(|d| d["event"]["aggregate_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
    let done = settle(
        &h,
        "order",
        "g",
        "ack",
        json!({"deliveries": tokens(&again)}),
    )
    .await;
    assert_eq!(done["done"], 2);
    let s = status(&h, "order", "g").await;
    assert_eq!(s["pending"], 0, "{s}");
    let names: Vec<&str> = s["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lives", "dies"], "{s}");
}

#[tokio::test]
async fn a_parked_event_is_listed_with_its_reason_and_replay_brings_it_back() {
    let h = Harness::start().await;
    h.append("order", "1", vec![step(1)]).await;
    json_body(put(&h, "order", "g", &json!({})).await, StatusCode::CREATED).await;
    let got = fetch(&h, "order", "g", json!({"consumer": "w"})).await;
    assert_eq!(got.len(), 1);
    let done = settle(
        &h,
        "order",
        "g",
        "nack",
        json!({"deliveries": tokens(&got), "action": "park", "reason": "the mail server said 550"}),
    )
    .await;
    assert_eq!(done, json!({"done": 1, "unknown": []}));
    let s = status(&h, "order", "g").await;
    assert_eq!(
        (s["parked"].clone(), s["pending"].clone()),
        (json!(1), json!(0)),
        "{s}"
    );
    let page = json_body(h.get(&path("order", "g", "/parked")).await, StatusCode::OK).await;
    let parked = page["events"].as_array().unwrap();
    assert_eq!(parked.len(), 1, "{page}");
    assert_eq!(parked[0]["reason"], "nacked");
    assert_eq!(parked[0]["last_error"], "the mail server said 550");
    assert_eq!(parked[0]["event"]["event_type"], "Stepped");
    assert_eq!(page["next"], Value::Null);
    // Nothing to fetch while it is parked.
    assert!(
        fetch(&h, "order", "g", json!({"consumer": "w"}))
            .await
            .is_empty()
    );
    let r = h
        .post_json(&path("order", "g", "/parked/replay"), &json!(null))
        .await;
    let replayed = json_body(r, StatusCode::OK).await;
    assert_eq!(replayed, json!({"replayed": 1, "kept": 0}));
    let back = fetch(&h, "order", "g", json!({"consumer": "w", "wait_ms": 5000})).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["event"]["event_id"], got[0]["event"]["event_id"]);
    // A retry, then a skip.
    let done = settle(
        &h,
        "order",
        "g",
        "nack",
        json!({"deliveries": tokens(&back), "action": "retry"}),
    )
    .await;
    assert_eq!(done["done"], 1);
    let retried = fetch(&h, "order", "g", json!({"consumer": "w", "wait_ms": 5000})).await;
    assert_eq!(retried.len(), 1);
    let done = settle(
        &h,
        "order",
        "g",
        "nack",
        json!({"deliveries": tokens(&retried), "action": "skip"}),
    )
    .await;
    assert_eq!(done["done"], 1);
    let s = status(&h, "order", "g").await;
    assert_eq!(
        (s["parked"].clone(), s["pending"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );
}

#[tokio::test]
async fn a_long_poll_answers_with_an_event_appended_while_it_waits() {
    let h = Harness::start().await;
    json_body(
        put(&h, "order", "g", &json!({"start": "end"})).await,
        StatusCode::CREATED,
    )
    .await;
    // Nothing yet: an empty list once the wait passes.
    let started = Instant::now();
    assert!(
        fetch(&h, "order", "g", json!({"consumer": "w", "wait_ms": 200}))
            .await
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let http = h.http.clone();
    let url = h.url(&path("order", "g", "/fetch"));
    let poll = tokio::spawn(async move {
        let r = http
            .post(url)
            .json(&json!({"consumer": "waiter", "wait_ms": 20000}))
            .send()
            .await
            .unwrap();
        (Instant::now(), json_body(r, StatusCode::OK).await)
    });
    // The poll is waiting once its consumer shows in the status.
    let deadline = Instant::now() + PATIENCE;
    while !status(&h, "order", "g").await["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "waiter")
    {
        assert!(Instant::now() < deadline, "the poll never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let appended_at = Instant::now();
    h.append("order", "7", vec![step(1)]).await;
    let (answered_at, got) = tokio::time::timeout(PATIENCE, poll)
        .await
        .expect("the poll answers")
        .unwrap();
    let got = got["deliveries"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"]["aggregate_id"], "7");
    assert!(
        answered_at - appended_at < Duration::from_secs(10),
        "answered {:?} after the append",
        answered_at - appended_at
    );
}

#[tokio::test]
async fn workers_need_read_and_operators_admin_on_the_type() {
    let t = secured().await;
    let h = &t.h;
    let send = |method: reqwest::Method, p: String, token: &str, body: Option<Value>| {
        let mut r = h.http.request(method, h.url(&p)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    use reqwest::Method;
    // Creating needs admin.
    for token in [&t.read, &t.write] {
        let r = send(Method::PUT, path("user", "g", ""), token, Some(json!({})))
            .await
            .unwrap();
        problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // A token for another type: 403 even with admin.
    let r = send(
        Method::PUT,
        path("user", "g", ""),
        &t.cart_admin,
        Some(json!({})),
    )
    .await
    .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = send(
        Method::PUT,
        path("user", "g", ""),
        &t.admin,
        Some(json!({})),
    )
    .await
    .unwrap();
    json_body(r, StatusCode::CREATED).await;
    // A read token fetches, acks and nacks, and reads the status and parked events.
    let r = send(
        Method::POST,
        path("user", "g", "/fetch"),
        &t.read,
        Some(json!({"consumer": "w"})),
    )
    .await
    .unwrap();
    let got = json_body(r, StatusCode::OK).await;
    let got = got["deliveries"].as_array().unwrap().clone();
    assert_eq!(got.len(), 1, "secured() appends user 1's event: {got:?}");
    let r = send(
        Method::POST,
        path("user", "g", "/nack"),
        &t.read,
        Some(json!({"deliveries": tokens(&got), "action": "park"})),
    )
    .await
    .unwrap();
    assert_eq!(json_body(r, StatusCode::OK).await["done"], 1);
    let r = send(Method::GET, path("user", "g", "/parked"), &t.read, None)
        .await
        .unwrap();
    assert_eq!(
        json_body(r, StatusCode::OK).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Replaying parked events is an operator's: admin.
    let r = send(
        Method::POST,
        path("user", "g", "/parked/replay"),
        &t.read,
        None,
    )
    .await
    .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = send(
        Method::POST,
        path("user", "g", "/parked/replay"),
        &t.admin,
        None,
    )
    .await
    .unwrap();
    assert_eq!(json_body(r, StatusCode::OK).await["replayed"], 1);
    let r = send(
        Method::POST,
        path("user", "g", "/fetch"),
        &t.read,
        Some(json!({"consumer": "w"})),
    )
    .await
    .unwrap();
    let got = json_body(r, StatusCode::OK).await;
    let r = send(
        Method::POST,
        path("user", "g", "/ack"),
        &t.read,
        Some(json!({"deliveries": tokens(got["deliveries"].as_array().unwrap())})),
    )
    .await
    .unwrap();
    assert_eq!(json_body(r, StatusCode::OK).await["done"], 1);
    // A worker limited to another type may not touch this group.
    let r = send(
        Method::POST,
        path("user", "g", "/fetch"),
        &t.cart_writer,
        Some(json!({"consumer": "w"})),
    )
    .await
    .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // The list shows only the types a token may see.
    let r = send(
        Method::PUT,
        path("cart", "c", ""),
        &t.admin,
        Some(json!({})),
    )
    .await
    .unwrap();
    json_body(r, StatusCode::CREATED).await;
    let r = send(Method::GET, "/v1/groups".to_owned(), &t.cart_writer, None)
        .await
        .unwrap();
    let list = json_body(r, StatusCode::OK).await;
    let listed: Vec<(&str, &str)> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["type"].as_str().unwrap(), g["group"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("cart", "c")], "{list}");
    let r = send(Method::GET, "/v1/groups".to_owned(), &t.read, None)
        .await
        .unwrap();
    assert_eq!(
        json_body(r, StatusCode::OK).await["groups"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Deleting needs admin.
    let r = send(Method::DELETE, path("user", "g", ""), &t.read, None)
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = send(Method::DELETE, path("user", "g", ""), &t.admin, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// The value of the `/metrics` sample whose line starts with `key`.
pub(super) fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_deliveries_and_settlements_and_show_each_groups_figures() {
    let h = Harness::start().await;
    for id in ["a", "b", "c"] {
        h.append("metered", id, vec![step(1)]).await;
    }
    let r = put(&h, "metered", "g", &json!({"start": "beginning"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = fetch(&h, "metered", "g", json!({"consumer": "w1", "max": 10})).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let t = tokens(&got);
    settle(
        &h,
        "metered",
        "g",
        "ack",
        json!({"deliveries": [t[0], t[1]]}),
    )
    .await;
    let parked = json!({"deliveries": [t[2]], "action": "park", "reason": "no"});
    settle(&h, "metered", "g", "nack", parked).await;

    let labels = r#"{aggregate_type="metered",group="g"}"#;
    let text = || async {
        let (_, text) = super::status_and_text(h.get("/metrics").await).await;
        text
    };
    // The counters move with the requests.
    let now = text().await;
    let key = |name: &str| format!("streamfold_{name}{labels}");
    assert_eq!(
        metric(&now, &key("group_deliveries_total")),
        Some(3.0),
        "{now}"
    );
    assert_eq!(
        metric(&now, &key("group_redeliveries_total")),
        None,
        "{now}"
    );
    let settled = |action: &str| {
        format!(
            r#"streamfold_group_settled_total{{aggregate_type="metered",group="g",action="{action}"}}"#
        )
    };
    assert_eq!(metric(&now, &settled("ack")), Some(2.0), "{now}");
    assert_eq!(metric(&now, &settled("park")), Some(1.0), "{now}");
    // The figures come from Redis in the background: wait for the read after the park.
    let now = streamfold_test_support::wait_until("the group's figures", PATIENCE, || async {
        let now = text().await;
        (metric(&now, &key("group_parked")) == Some(1.0)).then_some(now)
    })
    .await;
    assert_eq!(metric(&now, &key("group_pending")), Some(0.0), "{now}");
    assert_eq!(metric(&now, &key("group_undelivered")), Some(0.0), "{now}");
    assert_eq!(
        metric(&now, &key("group_oldest_pending_seconds")),
        Some(0.0),
        "{now}"
    );
}
