//! Live subscriptions as Server-Sent Events over real HTTP: the history then
//! `caught-up` then live events, resuming with `Last-Event-ID` and `after=` while a
//! writer appends, the category feed, pushed states (and a hot reload), the bound on
//! subscribers, heartbeats, shutdown, tokens, and the metrics they move.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use streamfold_server::{Role, ServerConfig, Tokens, new_token};
use streamfold_test_support::wait_until;
use streamfold_tests::plugins;

use super::{
    Harness, PATIENCE, ev, header, json_body, problem, runtime_config, status_and_text,
    user_created,
};

/// How long a test waits for the next frame of a stream.
const FRAME_PATIENCE: Duration = Duration::from_secs(30);

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("the data of {self:?} is not JSON: {e}"))
    }
}

/// What a stream carries: events, and comments (heartbeats).
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Event(SseEvent),
    Comment(String),
}

/// A minimal Server-Sent Events client over `bytes_stream()`.
struct SseClient {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
}

impl SseClient {
    /// Takes a 200 `text/event-stream` answer.
    fn new(r: reqwest::Response) -> SseClient {
        assert_eq!(r.status(), StatusCode::OK, "a subscription is answered 200");
        let kind = header(&r, "content-type");
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        SseClient {
            body: Box::pin(r.bytes_stream().map(|b| b.map(|b| b.to_vec()))),
            buf: Vec::new(),
            event: None,
            id: None,
            data: None,
        }
    }

    /// The next complete line (without its end), or `None` at the end of the body.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8(line).expect("a UTF-8 stream"));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("reading the event stream: {e}"),
                None => return None,
            }
        }
    }

    /// The next frame, or `None` at the end of the body (an unfinished event is
    /// dropped, as the spec says).
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if self.event.is_none() && self.id.is_none() && self.data.is_none() {
                    continue;
                }
                return Some(Frame::Event(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    id: self.id.take(),
                    data: self.data.take().unwrap_or_default(),
                }));
            }
            if let Some(comment) = line.strip_prefix(':') {
                return Some(Frame::Comment(comment.trim_start().to_owned()));
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }

    /// The next frame within [`FRAME_PATIENCE`] (`None`: the stream ended).
    async fn next_within(&mut self) -> Option<Frame> {
        tokio::time::timeout(FRAME_PATIENCE, self.next())
            .await
            .expect("a frame within the patience")
    }

    /// The next event (comments skipped); panics if the stream ends.
    async fn event(&mut self) -> SseEvent {
        loop {
            match self.next_within().await {
                Some(Frame::Event(e)) => return e,
                Some(Frame::Comment(_)) => {}
                None => panic!("the stream ended while an event was expected"),
            }
        }
    }

    /// The next event, which must be named `name`.
    async fn expect(&mut self, name: &str) -> SseEvent {
        let e = self.event().await;
        assert_eq!(e.event, name, "{e:?}");
        e
    }
}

/// Opens `req` as a subscription.
async fn open(req: RequestBuilder) -> SseClient {
    SseClient::new(req.send().await.expect("the subscription is answered"))
}

/// `GET path` as a subscription.
async fn subscribe(h: &Harness, path: &str) -> SseClient {
    open(h.http.get(h.url(path))).await
}

/// The server's `/metrics` text.
async fn metrics(h: &Harness) -> String {
    let (status, text) = status_and_text(h.get("/metrics").await).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match key.split_once('{') {
                Some((m, r)) => (m, r),
                None => (key, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().expect("a numeric sample"))
        })
        .sum()
}

/// Waits until `/metrics` shows `streamfold_sse_subscribers` at `n`.
async fn subscribers_become(h: &Harness, n: f64) {
    wait_until(
        &format!("streamfold_sse_subscribers to be {n}"),
        PATIENCE,
        || async move {
            (sample(&metrics(h).await, "streamfold_sse_subscribers", &[]) == n).then_some(())
        },
    )
    .await;
}

/// A server with the `user` reducer active.
async fn with_user(configure: impl FnOnce(ServerConfig) -> ServerConfig) -> Harness {
    let h = Harness::start_with(runtime_config(), configure).await;
    h.register(plugins::USER, true).await;
    h
}

fn renamed(n: u64) -> Value {
    ev("NameChanged", json!({ "name": format!("Alice {n}") }))
}

/// The stored history of `user/{id}` over HTTP.
async fn history(h: &Harness, id: &str) -> Vec<Value> {
    let page = json_body(
        h.get(&format!("/v1/aggregates/user/{id}/events")).await,
        StatusCode::OK,
    )
    .await;
    page["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_aggregate_subscription_sends_the_history_then_caught_up_then_live_events() {
    let h = with_user(|c| c).await;
    h.append(
        "user",
        "1",
        vec![user_created(1, "Alice"), renamed(2), renamed(3)],
    )
    .await;
    let stored = history(&h, "1").await;
    assert_eq!(stored.len(), 3);

    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    for want in &stored {
        let e = sub.expect("event").await;
        assert_eq!(e.id.as_deref(), want["position"].as_str(), "{e:?}");
        assert_eq!(&e.json(), want, "the data is the event's JSON");
    }
    let caught = sub.expect("caught-up").await;
    assert_eq!(
        caught.json()["position"],
        stored[2]["position"],
        "{caught:?}"
    );

    // Appended afterwards over HTTP: live.
    h.append("user", "1", vec![renamed(4)]).await;
    let live = sub.expect("event").await;
    let data = live.json();
    assert_eq!(data["revision"], 4, "{data}");
    assert_eq!(data["event_type"], "NameChanged");
    assert_eq!(data["data"]["name"], "Alice 4");
    assert_eq!(live.id.as_deref(), data["position"].as_str());
    assert_eq!(history(&h, "1").await[3], data);
}

/// Reads a resumable subscription of `user/1` until it has seen revision `n`,
/// reconnecting after every few events (with `Last-Event-ID`, or `after=` when
/// `by_header` is false) while a writer appends `n` events one by one.
async fn resume_while_writing(by_header: bool) {
    const N: u64 = 100;
    let h = with_user(|c| c).await;
    let writer = {
        let http = h.http.clone();
        let url = h.url("/v1/aggregates/user/1/events");
        tokio::spawn(async move {
            for n in 1..=N {
                let event = if n == 1 {
                    user_created(1, "Alice")
                } else {
                    renamed(n)
                };
                let r = http
                    .post(&url)
                    .json(&json!({ "events": [event] }))
                    .send()
                    .await
                    .expect("the append is answered");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
    };

    let mut seen: Vec<u64> = Vec::new();
    let mut last: Option<String> = None;
    let mut connections = 0;
    let read_all = async {
        while seen.last() != Some(&N) {
            connections += 1;
            let mut req = h.http.get(h.url("/v1/aggregates/user/1/subscribe"));
            if let Some(l) = &last {
                req = if by_header {
                    req.header("Last-Event-ID", l)
                } else {
                    req.query(&[("after", l)])
                };
            }
            let mut sub = open(req).await;
            // A few events per connection, then drop it.
            let mut taken = 0;
            while taken < 7 && seen.last() != Some(&N) {
                let e = sub.event().await;
                match e.event.as_str() {
                    "event" => {
                        let data = e.json();
                        assert_eq!(e.id.as_deref(), data["position"].as_str());
                        seen.push(data["revision"].as_u64().unwrap());
                        last = e.id.clone();
                        taken += 1;
                    }
                    "caught-up" => {}
                    other => panic!("unexpected event {other}: {e:?}"),
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("every revision is seen within the patience");
    writer.await.expect("the writer finished");

    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicate: {seen:?}");
    assert_eq!(seen, (1..=N).collect::<Vec<_>>(), "no gap, in order");
    assert!(connections > 5, "reconnected several times: {connections}");
}

#[tokio::test]
async fn last_event_id_resumes_with_no_gap_and_no_duplicate_while_a_writer_appends() {
    resume_while_writing(true).await;
}

#[tokio::test]
async fn after_resumes_with_no_gap_and_no_duplicate_while_a_writer_appends() {
    resume_while_writing(false).await;
}

#[tokio::test]
async fn last_event_id_wins_over_after() {
    let h = with_user(|c| c).await;
    h.append(
        "user",
        "1",
        vec![user_created(1, "Alice"), renamed(2), renamed(3)],
    )
    .await;
    let stored = history(&h, "1").await;
    let first = stored[0]["position"].as_str().unwrap();
    let second = stored[1]["position"].as_str().unwrap();
    let mut sub = open(
        h.http
            .get(h.url("/v1/aggregates/user/1/subscribe"))
            .query(&[("after", first)])
            .header("Last-Event-ID", second),
    )
    .await;
    let e = sub.expect("event").await;
    assert_eq!(e.json()["revision"], 3, "{e:?}");
    sub.expect("caught-up").await;
}

#[tokio::test]
async fn a_category_subscription_follows_every_aggregate_in_category_order() {
    let h = with_user(|c| c).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    h.append("user", "2", vec![user_created(2, "Bob")]).await;
    h.append("user", "1", vec![renamed(2)]).await;
    let feed = json_body(h.get("/v1/categories/user/events").await, StatusCode::OK).await;
    let feed = feed["events"].as_array().unwrap().clone();
    assert_eq!(feed.len(), 3);

    // The default partition (0) and an explicit partition=0 are the same feed.
    for path in [
        "/v1/categories/user/subscribe",
        "/v1/categories/user/subscribe?partition=0",
    ] {
        let mut sub = subscribe(&h, path).await;
        for want in &feed {
            let e = sub.expect("event").await;
            assert_eq!(e.id.as_deref(), want["position"].as_str(), "{e:?}");
            assert_eq!(&e.json(), want);
        }
        sub.expect("caught-up").await;
        drop(sub);
    }

    let mut sub = subscribe(&h, "/v1/categories/user/subscribe").await;
    for _ in &feed {
        sub.expect("event").await;
    }
    sub.expect("caught-up").await;
    h.append("user", "3", vec![user_created(3, "Carol")]).await;
    h.append("user", "2", vec![renamed(2)]).await;
    let got: Vec<(String, u64)> = {
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = sub.expect("event").await.json();
            got.push((
                d["aggregate_id"].as_str().unwrap().to_owned(),
                d["revision"].as_u64().unwrap(),
            ));
        }
        got
    };
    assert_eq!(got, vec![("3".to_owned(), 1), ("2".to_owned(), 2)]);

    // Resuming the category feed after its second entry.
    let mut sub = open(
        h.http
            .get(h.url("/v1/categories/user/subscribe"))
            .header("Last-Event-ID", feed[1]["position"].as_str().unwrap()),
    )
    .await;
    assert_eq!(sub.expect("event").await.json(), feed[2]);
}

/// Asserts that a `state` event's data equals the state replayed over HTTP at its
/// revision, and returns that data.
async fn state_matches_replay(h: &Harness, id: &str, e: &SseEvent) -> Value {
    assert_eq!(e.event, "state", "{e:?}");
    let data = e.json();
    let revision = data["revision"].as_u64().expect("a revision");
    let replayed = json_body(
        h.get(&format!(
            "/v1/aggregates/user/{id}/state?at_revision={revision}"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(data["state"], replayed, "the pushed state at {revision}");
    data
}

#[tokio::test]
async fn state_true_pushes_the_state_after_every_event() {
    let h = with_user(|c| c).await;
    h.append("user", "1", vec![user_created(1, "Alice"), renamed(2)])
        .await;

    // From a position: the stream opens with the state there.
    let stored = history(&h, "1").await;
    let mut sub = open(
        h.http
            .get(h.url("/v1/aggregates/user/1/subscribe?state=true"))
            .query(&[("after", stored[0]["position"].as_str().unwrap())]),
    )
    .await;
    let start = state_matches_replay(&h, "1", &sub.expect("state").await).await;
    assert_eq!(start["revision"], 1);
    let e = sub.expect("event").await;
    assert_eq!(e.json(), stored[1]);
    let s = state_matches_replay(&h, "1", &sub.expect("state").await).await;
    assert_eq!(s["revision"], 2);
    drop(sub);

    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe?state=true").await;
    let start = sub.expect("state").await.json();
    assert_eq!(start["revision"], 0, "from the beginning: {start}");
    for want in &stored {
        let e = sub.expect("event").await;
        assert_eq!(&e.json(), want);
        let s = state_matches_replay(&h, "1", &sub.expect("state").await).await;
        assert_eq!(s["revision"], want["revision"]);
    }
    sub.expect("caught-up").await;

    for n in 3..=5 {
        h.append("user", "1", vec![renamed(n)]).await;
        let e = sub.expect("event").await;
        assert_eq!(e.json()["revision"], n);
        let s = state_matches_replay(&h, "1", &sub.expect("state").await).await;
        assert_eq!(s["revision"], n);
        assert_eq!(s["state"]["name"], format!("Alice {n}"), "{s}");
    }
}

#[tokio::test]
async fn a_hot_reload_mid_subscription_pushes_states_from_the_new_reducer() {
    let h = with_user(|c| c).await;
    let v2 = h.register(plugins::USER_V2, false).await;
    assert_eq!(v2.info.version, "0.2.0");
    h.append("user", "1", vec![user_created(1, "Alice")]).await;

    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe?state=true").await;
    sub.expect("state").await;
    sub.expect("event").await;
    let v1 = state_matches_replay(&h, "1", &sub.expect("state").await).await;
    assert_eq!(v1["state"]["name"], "Alice", "{v1}");
    assert!(v1["state"].get("v2_events").is_none(), "{v1}");
    sub.expect("caught-up").await;

    let r = h
        .http
        .put(h.url("/v1/plugins/user/active"))
        .json(&json!({ "version": v2.info.version }))
        .send()
        .await
        .unwrap();
    let active = json_body(r, StatusCode::OK).await;
    assert_eq!(active["version"], "0.2.0", "{active}");
    assert_eq!(active["active"], true, "{active}");
    wait_until("the server replays with v2", PATIENCE, || async {
        let s = json_body(h.get("/v1/aggregates/user/1/state").await, StatusCode::OK).await;
        s.get("v2_events").is_some().then_some(())
    })
    .await;

    h.append("user", "1", vec![renamed(2)]).await;
    // The change is noticed at the next event: a `state` from v2 at revision 1, then
    // the event and the state after it, from v2.
    let mut e = sub.event().await;
    if e.event == "state" {
        let changed = state_matches_replay(&h, "1", &e).await;
        assert_eq!(changed["revision"], 1, "{changed}");
        assert_eq!(changed["state"]["v2_events"], 1, "{changed}");
        e = sub.event().await;
    }
    assert_eq!(e.event, "event", "{e:?}");
    assert_eq!(e.json()["revision"], 2);
    let after = state_matches_replay(&h, "1", &sub.expect("state").await).await;
    assert_eq!(after["revision"], 2);
    assert_eq!(after["state"]["name"], "ALICE 2", "{after}");
    assert_eq!(after["state"]["v2_events"], 2, "{after}");
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_get_503_busy_until_one_ends() {
    let h = with_user(|c| c.max_subscribers(1)).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let mut first = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    first.expect("event").await;
    first.expect("caught-up").await;

    for path in [
        "/v1/aggregates/user/1/subscribe",
        "/v1/aggregates/user/1/subscribe?state=true",
        "/v1/categories/user/subscribe",
    ] {
        let refused = h.get(path).await;
        assert!(
            !header(&refused, RETRY_AFTER.as_str()).is_empty(),
            "a Retry-After"
        );
        problem(refused, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    }

    // The first one stays idle: the server notices that it went.
    drop(first);
    let mut again = wait_until(
        "a new subscription once the first is dropped",
        PATIENCE,
        || async {
            let r = h.get("/v1/aggregates/user/1/subscribe").await;
            match r.status() {
                StatusCode::OK => Some(SseClient::new(r)),
                StatusCode::SERVICE_UNAVAILABLE => None,
                other => panic!("the subscription answered {other}"),
            }
        },
    )
    .await;
    again.expect("event").await;
    again.expect("caught-up").await;
}

#[tokio::test]
async fn an_idle_subscription_gets_heartbeats() {
    let h = with_user(|c| c.heartbeat(Duration::from_millis(200))).await;
    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    let caught = sub.expect("caught-up").await;
    assert_eq!(caught.json()["position"], Value::Null, "{caught:?}");
    // A `:` comment line (axum's keep-alive is an empty comment).
    match sub.next_within().await {
        Some(Frame::Comment(_)) => {}
        Some(Frame::Event(e)) => panic!("an idle stream sent {e:?}"),
        None => panic!("the stream ended"),
    }
    // And the subscription still works after heartbeats.
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    assert_eq!(sub.expect("event").await.json()["revision"], 1);
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_run_returns_ok() {
    let mut h = with_user(|c| c.shutdown_timeout(Duration::from_secs(30))).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let mut plain = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    let mut state = subscribe(&h, "/v1/aggregates/user/1/subscribe?state=true").await;
    let mut category = subscribe(&h, "/v1/categories/user/subscribe").await;
    plain.expect("event").await;
    plain.expect("caught-up").await;
    state.expect("state").await;
    state.expect("event").await;
    state.expect("state").await;
    state.expect("caught-up").await;
    category.expect("event").await;
    category.expect("caught-up").await;

    h.trigger_shutdown();
    for sub in [&mut plain, &mut state, &mut category] {
        loop {
            match sub.next_within().await {
                None => break,
                Some(Frame::Comment(_)) => {}
                Some(Frame::Event(e)) => panic!("an event after the shutdown: {e:?}"),
            }
        }
    }
    h.stopped().await.expect("run returns Ok");
}

#[tokio::test]
async fn subscriptions_need_a_token_when_the_server_has_tokens() {
    let (read, read_line) = new_token(Role::Read, &[]).unwrap();
    let tokens = Tokens::parse(&format!("{read_line}\n")).expect("the tokens parse");
    let h = with_user(|c| c.tokens(Some(tokens))).await;
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

    for path in [
        "/v1/aggregates/user/1/subscribe",
        "/v1/aggregates/user/1/subscribe?state=true",
        "/v1/categories/user/subscribe",
    ] {
        problem(h.get(path).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let wrong = h
            .http
            .get(h.url(path))
            .header(AUTHORIZATION, "Bearer not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

        let mut sub = open(
            h.http
                .get(h.url(path))
                .header(AUTHORIZATION, format!("Bearer {read}")),
        )
        .await;
        let mut e = sub.event().await;
        if e.event == "state" {
            e = sub.event().await;
        }
        assert_eq!(e.event, "event", "{e:?}");
        assert_eq!(e.json()["aggregate_id"], "1");
    }
}

#[tokio::test]
async fn metrics_count_subscribers_requests_and_appends() {
    let h = with_user(|c| c).await;
    let before = metrics(&h).await;
    assert_eq!(sample(&before, "streamfold_sse_subscribers", &[]), 0.0);
    let appended_before = sample(
        &before,
        "streamfold_appends_total",
        &["outcome=\"appended\""],
    );
    let requests_before = sample(&before, "streamfold_http_requests_total", &[]);
    let calls_before = sample(&before, "streamfold_append_calls_total", &[]);
    let held_before = sample(&before, "streamfold_append_call_appends_total", &[]);

    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let after = metrics(&h).await;
    // A lone append: one script call holding it.
    assert_eq!(
        sample(&after, "streamfold_append_calls_total", &[]),
        calls_before + 1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "streamfold_append_call_appends_total", &[]),
        held_before + 1.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "streamfold_appends_total",
            &["outcome=\"appended\""]
        ),
        appended_before + 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "streamfold_http_requests_total",
            &["method=\"POST\"", "status=\"201\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "streamfold_http_requests_total", &[]) > requests_before,
        "{after}"
    );

    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    sub.expect("event").await;
    sub.expect("caught-up").await;
    subscribers_become(&h, 1.0).await;

    drop(sub);
    subscribers_become(&h, 0.0).await;
}

#[tokio::test]
async fn subscriptions_outlive_a_redis_restart_that_readyz_reports() {
    let mut h = with_user(|c| c).await;
    h.append("user", "1", vec![user_created(1, "Alice"), renamed(2)])
        .await;
    let mut state = subscribe(&h, "/v1/aggregates/user/1/subscribe?state=true").await;
    let mut category = subscribe(&h, "/v1/categories/user/subscribe").await;
    state.expect("state").await;
    for _ in 0..2 {
        state.expect("event").await;
        state.expect("state").await;
        category.expect("event").await;
    }
    state.expect("caught-up").await;
    category.expect("caught-up").await;

    // A Redis that keeps its data (a snapshot written just before) restarts.
    let mut raw = h.env.raw().await;
    let _: () = redis::cmd("SAVE").query_async(&mut raw).await.unwrap();
    h.env.redis_mut().stop();
    wait_until("/readyz to report Redis gone", PATIENCE, || async {
        (h.get("/readyz").await.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    h.env
        .redis_mut()
        .start_again()
        .expect("redis-server starts again");
    wait_until("/readyz to report ready again", PATIENCE, || async {
        (h.get("/readyz").await.status() == StatusCode::OK).then_some(())
    })
    .await;

    // An append after it (retried with the same id until Redis takes it) reaches
    // both streams, which were never reconnected: the next event, no gap, no repeat.
    let event_id = uuid::Uuid::new_v4().to_string();
    let mut third = renamed(3);
    third["event_id"] = json!(event_id);
    let body = json!({ "events": [third] });
    wait_until("an append after the restart", PATIENCE, || {
        let r = h.post_json("/v1/aggregates/user/1/events", &body);
        async move {
            let status = r.await.status();
            assert_ne!(status, StatusCode::BAD_REQUEST);
            (status == StatusCode::CREATED || status == StatusCode::OK).then_some(())
        }
    })
    .await;
    let e = state.expect("event").await.json();
    assert_eq!(
        (e["revision"].clone(), e["event_id"].clone()),
        (json!(3), json!(event_id))
    );
    let s = state_matches_replay(&h, "1", &state.expect("state").await).await;
    assert_eq!(s["state"]["name"], "Alice 3", "{s}");
    let mut c = category.expect("event").await.json();
    // The same event, at its place in the category stream: the two XADDs of one
    // append can fall in different milliseconds, so the positions may differ.
    let (mut e, c_position) = (e, c["position"].take());
    let e_position = e["position"].take();
    assert_eq!(c, e, "the category delivers the same event");
    for p in [&c_position, &e_position] {
        assert!(
            p.as_str().is_some_and(|p| p.contains('-')),
            "a stream id: {p}"
        );
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_not_buffered() {
    let h = with_user(|c| c.slow_client_timeout(Duration::from_millis(500))).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    let mut sub = subscribe(&h, "/v1/aggregates/user/1/subscribe").await;
    sub.expect("event").await;
    sub.expect("caught-up").await;
    subscribers_become(&h, 1.0).await;

    // The client reads no more while far more is appended than the socket buffers
    // and the server's bounded queue hold (about 24 MB of events).
    let text = "x".repeat(4000);
    let mut appended = 0;
    while appended < 6000 {
        let batch: Vec<Value> = (0..200)
            .map(|_| ev("NoteAdded", json!({ "text": text })))
            .collect();
        h.append("user", "1", batch).await;
        appended += 200;
        if sample(&metrics(&h).await, "streamfold_sse_subscribers", &[]) == 0.0 {
            break;
        }
    }
    // The server let it go (its slot and gauge are free) while the client still
    // holds the connection.
    subscribers_become(&h, 0.0).await;
    // What was already on the wire is still readable; then the stream ends instead
    // of going on for ever.
    let mut seen = 0u64;
    while let Some(frame) = sub.next_within().await {
        if let Frame::Event(e) = frame {
            assert_eq!(e.event, "event", "{e:?}");
            seen += 1;
        }
    }
    assert!(
        seen < appended,
        "the stream ended after {seen} of {appended} events"
    );
}
