//! `GET /v1/aggregates/{type}/{id}/state`: the reducer's state, its headers and
//! ETags, time travel, another registered version, and failures.

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};
use streamfold::ReplayOptions;
use streamfold_tests::plugins;

use super::{Harness, content_type, ev, header, json_body, problem, status_and_text, user_created};

const STATE: &str = "/v1/aggregates/user/1/state";

async fn seed(h: &Harness) {
    h.append(
        "user",
        "1",
        vec![
            user_created(1, "Alice"),
            ev(
                "EmailChanged",
                json!({"email": "alice.smith@example.com", "timestamp": "t2"}),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_state_is_the_runtimes_state_byte_for_byte_with_its_headers() {
    let h = Harness::start().await;
    let user = h.register(plugins::USER, true).await;
    seed(&h).await;
    let replayed =
        h.rt.state("user", "1", ReplayOptions::default())
            .await
            .unwrap();

    let r = h.get(STATE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(content_type(&r), "application/json");
    let digest = &user.info.digest;
    assert_eq!(header(&r, "etag"), format!("\"{digest}:2\""));
    assert_eq!(header(&r, "streamfold-revision"), "2");
    assert_eq!(header(&r, "streamfold-position"), replayed.position);
    assert_eq!(
        header(&r, "streamfold-reducer"),
        format!("{}@{}", user.info.name, user.info.version)
    );
    assert_eq!(
        header(&r, "streamfold-reducer-digest"),
        format!("sha256:{digest}")
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        replayed.state.as_bytes(),
        "the body is the state document itself"
    );
    assert_eq!(
        replayed.state,
        r#"{"id":1,"name":"Alice","email":"alice.smith@example.com","created_at":"t1","email_updated_at":"t2"}"#
    );
}

#[tokio::test]
async fn if_none_match_answers_304_until_the_aggregate_changes() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    seed(&h).await;
    let first = h.get(STATE).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = header(&first, "etag");
    assert!(!tag.is_empty(), "an ETag");

    let conditional = |tag: String| h.http.get(h.url(STATE)).header(IF_NONE_MATCH, tag).send();
    let unchanged = conditional(tag.clone()).await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&unchanged, ETAG.as_str()), tag);
    assert!(
        unchanged.bytes().await.unwrap().is_empty(),
        "304 has no body"
    );
    // A list of tags, one of them weak, still matches.
    let listed = conditional(format!("\"other:1\", W/{tag}")).await.unwrap();
    assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);

    h.append(
        "user",
        "1",
        vec![ev("NameChanged", json!({"name": "Alicia"}))],
    )
    .await;
    let changed = conditional(tag.clone()).await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let new_tag = header(&changed, "etag");
    assert_ne!(new_tag, tag, "a new revision has a new ETag");
    assert_eq!(header(&changed, "streamfold-revision"), "3");
    let state: Value = changed.json().await.unwrap();
    assert_eq!(state["name"], "Alicia");
    let again = conditional(new_tag).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn at_revision_replays_the_state_as_it_was_then() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    seed(&h).await;
    let then =
        h.rt.state("user", "1", ReplayOptions::default().at_revision(1))
            .await
            .unwrap();
    let r = h.get(&format!("{STATE}?at_revision=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "streamfold-revision"), "1");
    assert_eq!(r.text().await.unwrap(), then.state);
    let state: Value = serde_json::from_str(&then.state).unwrap();
    assert_eq!(state["email"], "alice@example.com", "before EmailChanged");

    let r = h.get(&format!("{STATE}?at_revision=9")).await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    // Both: the state when the first of the two was reached.
    let r = h
        .get(&format!("{STATE}?at_revision=1&as_of=2030-01-01T00:00:00Z"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "streamfold-revision"),
        "1",
        "the revision came first"
    );
    let r = h
        .get(&format!("{STATE}?at_revision=9&as_of=2030-01-01T00:00:00Z"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "streamfold-revision"),
        "2",
        "the instant came first"
    );
    let r = h
        .get(&format!("{STATE}?at_revision=1&as_of=2000-01-01T00:00:00Z"))
        .await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn reducer_replays_through_an_inactive_version_and_leaves_the_active_one() {
    let h = Harness::start().await;
    let v1 = h.register(plugins::USER, true).await;
    let v2 = h.register(plugins::USER_V2, false).await;
    assert_eq!(v2.info.version, "0.2.0");
    seed(&h).await;

    let r = h.get(&format!("{STATE}?reducer={}", v2.info.version)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "streamfold-reducer-digest"),
        format!("sha256:{}", v2.info.digest)
    );
    assert_eq!(header(&r, "etag"), format!("\"{}:2\"", v2.info.digest));
    let under_v2: Value = r.json().await.unwrap();
    assert_eq!(under_v2["name"], "ALICE", "{under_v2}");
    assert_eq!(under_v2["v2_events"], 2, "{under_v2}");

    // By digest too.
    let r = h
        .get(&format!("{STATE}?reducer={}", &v2.info.digest[..16]))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), under_v2);

    let r = h.get(STATE).await;
    assert_eq!(
        header(&r, "streamfold-reducer-digest"),
        format!("sha256:{}", v1.info.digest)
    );
    let active: Value = r.json().await.unwrap();
    assert_eq!(active["name"], "Alice");
    assert!(active.get("v2_events").is_none(), "{active}");
    assert_eq!(
        h.rt.active_plugin("user").await.unwrap().info().digest,
        v1.info.digest,
        "nothing was activated"
    );

    let r = h.get(&format!("{STATE}?reducer=9.9.9")).await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn a_state_without_an_active_reducer_is_404() {
    let h = Harness::start().await;
    h.append(
        "cart",
        "1",
        vec![ev("CartOpened", json!({"customer": "alice"}))],
    )
    .await;
    let r = h.get("/v1/aggregates/cart/1/state").await;
    let body = problem(r, StatusCode::NOT_FOUND, "not-found").await;
    assert!(body["detail"].as_str().unwrap().contains("cart"), "{body}");
    // And with a reducer but no events.
    h.register(plugins::USER, true).await;
    let r = h.get("/v1/aggregates/user/nobody/state").await;
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn a_trapping_reducer_is_422_reducer_failed_naming_plugin_and_aggregate() {
    let h = Harness::start().await;
    let trap = h.register(plugins::TRAP, true).await;
    seed(&h).await;
    let r = h.get(STATE).await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "reducer-failed").await;
    let reducer = &body["reducer"];
    assert_eq!(reducer["plugin"]["name"], trap.info.name.as_str(), "{body}");
    assert_eq!(
        reducer["plugin"]["digest"],
        trap.info.digest.as_str(),
        "{body}"
    );
    assert_eq!(reducer["aggregate"], "user/1", "{body}");
    assert!(
        reducer["cause"].is_object() || reducer["cause"].is_string(),
        "{body}"
    );

    // The server goes on serving.
    let (status, _) = status_and_text(h.get("/healthz").await).await;
    assert_eq!(status, StatusCode::OK);
    json_body(h.get("/v1/aggregates/user/1/events").await, StatusCode::OK).await;
}

/// The value of the sample of `/metrics` whose line starts with `key`.
fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[tokio::test]
async fn state_reads_reuse_warm_instances_which_metrics_show() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    for id in 1..=5 {
        h.append("user", &id.to_string(), vec![user_created(id, "Alice")])
            .await;
    }
    let made = r#"streamfold_reducer_instances_made_total{reducer="user@0.1.0"}"#;
    let idle = r#"streamfold_reducer_instances_idle{reducer="user@0.1.0"}"#;
    let (_, before) = status_and_text(h.get("/metrics").await).await;
    let made_before = metric(&before, made).unwrap_or_else(|| panic!("{made} in {before}"));
    for id in 1..=5 {
        let state = json_body(
            h.get(&format!("/v1/aggregates/user/{id}/state")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(state["id"], id);
    }
    let (_, after) = status_and_text(h.get("/metrics").await).await;
    assert_eq!(
        metric(&after, made),
        Some(made_before),
        "five sequential reads made no instance: {after}"
    );
    assert_eq!(metric(&after, idle), Some(1.0), "{after}");
}

#[tokio::test]
async fn a_state_read_again_starts_from_the_held_state_which_metrics_count() {
    let h = Harness::start().await;
    let user = h.register(plugins::USER, true).await;
    seed(&h).await;
    let hits_key = format!(
        "streamfold_state_cache_hits_total{{reducer=\"{}@{}\"}}",
        user.info.name, user.info.version
    );
    let hits = || async {
        let (_, text) = status_and_text(h.get("/metrics").await).await;
        super::groups::metric(&text, &hits_key).unwrap_or(0.0)
    };
    let read = || async {
        let r = h.get(STATE).await;
        assert_eq!(r.status(), StatusCode::OK);
        let tag = header(&r, "etag");
        (tag, r.text().await.unwrap())
    };
    let first = read().await;
    assert_eq!(hits().await, 0.0);
    let again = read().await;
    assert_eq!(again, first, "the same state, the same tag");
    assert_eq!(hits().await, 1.0);

    // What is appended since is folded onto it: never the held state alone.
    h.append(
        "user",
        "1",
        vec![ev("NameChanged", json!({"name": "Alicia"}))],
    )
    .await;
    let (tag, body) = read().await;
    assert_eq!(tag, format!("\"{}:3\"", user.info.digest));
    let doc: Value = serde_json::from_str(&body).expect("a JSON state");
    assert_eq!(doc["name"], "Alicia");
    assert_eq!(hits().await, 2.0);
    let (_, text) = status_and_text(h.get("/metrics").await).await;
    let gauge = |key: &str| super::groups::metric(&text, key).unwrap_or(-1.0);
    assert_eq!(gauge("streamfold_state_cache_entries "), 1.0);
    assert!(
        gauge("streamfold_state_cache_bytes ") >= body.len() as f64,
        "{text}"
    );
}
