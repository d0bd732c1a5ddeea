//! Appends, bad input, histories and the category feed over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamfold::{CategoryReadOptions, ReadOptions};
use streamfold_test_support::wait_until;

use super::{
    Harness, PATIENCE, content_type, ev, json_body, problem, revisions, runtime_config,
    user_created,
};

const USER_1: &str = "/v1/aggregates/user/1/events";

fn numbered(n: u64) -> Value {
    ev("Counted", json!({ "n": n }))
}

/// What the store holds for `t/id`, read directly (not through the server).
async fn stored(h: &Harness, t: &str, id: &str) -> Vec<streamfold::RecordedEvent> {
    h.env
        .store
        .read_all(t, id, ReadOptions::default())
        .await
        .expect("a direct read")
}

#[tokio::test]
async fn an_append_answers_201_with_its_revisions_and_positions() {
    let h = Harness::start().await;
    let first = h
        .append(
            "user",
            "1",
            vec![
                user_created(1, "Alice"),
                ev("NameChanged", json!({"name": "Alicia"})),
            ],
        )
        .await;
    assert_eq!(first["first_revision"], 1, "{first}");
    assert_eq!(first["last_revision"], 2, "{first}");
    assert_eq!(first["already_appended"], false, "{first}");
    assert_eq!(first["event_ids"].as_array().map(Vec::len), Some(2));

    let events = stored(&h, "user", "1").await;
    let positions: Vec<&str> = events.iter().map(|e| e.position.as_str()).collect();
    assert_eq!(
        first["positions"],
        json!(positions),
        "the positions are the stored entries' stream ids"
    );
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(first["event_ids"], json!(ids));

    // Without `expected_revision` (any), a second append follows the first.
    let second = h.append("user", "1", vec![numbered(3)]).await;
    assert_eq!(second["first_revision"], 3, "{second}");
    assert_eq!(second["last_revision"], 3, "{second}");
    assert_eq!(stored(&h, "user", "1").await.len(), 3);
}

#[tokio::test]
async fn a_retried_append_with_the_same_event_ids_is_200_and_writes_nothing() {
    let h = Harness::start().await;
    let id_a = uuid::Uuid::new_v4();
    let id_b = uuid::Uuid::new_v4();
    let body = json!({
        "expected_revision": "no-stream",
        "events": [
            {"event_type": "Counted", "data": {"n": 1}, "event_id": id_a},
            {"event_type": "Counted", "data": {"n": 2}, "event_id": id_b, "version": "2"},
        ],
    });
    let first = json_body(h.post_json(USER_1, &body).await, StatusCode::CREATED).await;
    assert_eq!(first["already_appended"], false);
    assert_eq!(first["event_ids"], json!([id_a, id_b]));

    // The same request again (a client retrying after a lost answer).
    let retry = json_body(h.post_json(USER_1, &body).await, StatusCode::OK).await;
    assert_eq!(retry["already_appended"], true, "{retry}");
    assert_eq!(retry["first_revision"], first["first_revision"]);
    assert_eq!(retry["last_revision"], first["last_revision"]);
    assert_eq!(retry["positions"], first["positions"]);

    // And a retry of an append without an expected revision.
    let any = json!({"events": [{"event_type": "Counted", "data": {"n": 3}, "event_id": uuid::Uuid::new_v4()}]});
    let appended = json_body(h.post_json(USER_1, &any).await, StatusCode::CREATED).await;
    let again = json_body(h.post_json(USER_1, &any).await, StatusCode::OK).await;
    assert_eq!(again["already_appended"], true, "{again}");
    assert_eq!(again["positions"], appended["positions"]);

    let events = stored(&h, "user", "1").await;
    assert_eq!(events.len(), 3, "nothing was written twice");
    assert_eq!(events[1].version, "2", "the event's version was kept");
    let page = json_body(h.get(USER_1).await, StatusCode::OK).await;
    assert_eq!(revisions(&page), [1, 2, 3]);
}

#[tokio::test]
async fn a_wrong_expected_revision_is_409_naming_expected_and_actual() {
    let h = Harness::start().await;
    h.append("user", "1", vec![numbered(1), numbered(2)]).await;
    let r = h
        .post_json(
            USER_1,
            &json!({"expected_revision": 5, "events": [numbered(3)]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = problem(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(body["expected_revision"], 5, "{body}");
    assert_eq!(body["actual_revision"], 2, "{body}");
    assert_eq!(body["aggregate"], "user/1", "{body}");
    assert_eq!(
        stored(&h, "user", "1").await.len(),
        2,
        "a conflict writes nothing"
    );
}

#[tokio::test]
async fn expected_revision_takes_no_stream_exists_and_numbers() {
    let h = &Harness::start().await;
    let post = |expected: Value, n: u64| {
        let body = json!({"expected_revision": expected, "events": [numbered(n)]});
        async move { h.post_json(USER_1, &body).await }
    };

    let r = post(json!("exists"), 1).await;
    let body = problem(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(body["expected_revision"], "exists", "{body}");
    assert_eq!(body["actual_revision"], 0, "{body}");

    json_body(post(json!("no-stream"), 1).await, StatusCode::CREATED).await;
    let r = post(json!("no-stream"), 2).await;
    let body = problem(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(body["expected_revision"], "no-stream", "{body}");
    assert_eq!(body["actual_revision"], 1, "{body}");

    json_body(post(json!("exists"), 2).await, StatusCode::CREATED).await;
    json_body(post(json!(2), 3).await, StatusCode::CREATED).await;
    problem(post(json!(2), 4).await, StatusCode::CONFLICT, "conflict").await;
    let appended = json_body(post(json!("any"), 4).await, StatusCode::CREATED).await;
    assert_eq!(appended["last_revision"], 4);

    problem(
        post(json!("sometimes"), 5).await,
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    assert_eq!(stored(h, "user", "1").await.len(), 4);
}

#[tokio::test]
async fn bad_appends_are_problems_and_write_nothing() {
    let h = Harness::start_with(runtime_config(), |c| {
        c.append_body_bytes(1024).max_events_per_append(3)
    })
    .await;
    let url = h.url(USER_1);
    let raw = |body: &'static str| {
        h.http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Malformed JSON.
    let r = raw(r#"{"events": [{"event_type": "Counted""#)
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    // A field the API does not know, at the top and in an event.
    let r = raw(r#"{"events": [{"event_type": "Counted", "data": {}}], "extra": 1}"#)
        .await
        .unwrap();
    let body = problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    assert!(body["detail"].as_str().unwrap().contains("extra"), "{body}");
    let r = raw(r#"{"events": [{"event_type": "Counted", "data": {}, "colour": "red"}]}"#)
        .await
        .unwrap();
    let body = problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );

    // No events field at all, and an empty event type.
    problem(
        raw("{}").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid-input",
    )
    .await;
    let r = raw(r#"{"events": [{"event_type": "", "data": {}}]}"#)
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    // No Content-Type.
    let r = h
        .http
        .post(&url)
        .body(r#"{"events": [{"event_type": "Counted", "data": {}}]}"#)
        .send()
        .await
        .unwrap();
    problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    // A body over the route's limit (1 KiB here).
    let big = json!({"events": [ev("Counted", json!({"text": "x".repeat(2000)}))]});
    let r = h.post_json(USER_1, &big).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;

    // More events than one append may hold (3 here).
    let many = json!({"events": [numbered(1), numbered(2), numbered(3), numbered(4)]});
    let body = problem(
        h.post_json(USER_1, &many).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
    )
    .await;
    assert_eq!(body["max_events"], 3, "{body}");

    // An aggregate type no key may hold.
    let r = h
        .post_json(
            "/v1/aggregates/us%7Ber/1/events",
            &json!({"events": [numbered(1)]}),
        )
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;

    assert!(stored(&h, "user", "1").await.is_empty(), "nothing written");
    let feed = h
        .env
        .store
        .read_category("user", CategoryReadOptions::new())
        .await
        .unwrap();
    assert!(feed.is_empty(), "nothing in the category feed: {feed:?}");

    // The same server takes a good append: the limits refused only what was over.
    let ok = json!({"events": [numbered(1), numbered(2), numbered(3)]});
    json_body(h.post_json(USER_1, &ok).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_history_pages_through_next_from_revision_to_a_null_end() {
    let h = Harness::start().await;
    h.append("user", "1", (1..=25).map(numbered).collect())
        .await;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut query = "limit=10".to_owned();
    loop {
        let page = json_body(h.get(&format!("{USER_1}?{query}")).await, StatusCode::OK).await;
        let revs = revisions(&page);
        seen.extend(revs.iter().copied());
        pages.push(revs.len());
        match page["next_from_revision"].as_u64() {
            Some(next) => {
                assert_eq!(next, revs.last().unwrap() + 1, "{page}");
                query = format!("limit=10&from_revision={next}");
            }
            None => {
                assert!(page["next_from_revision"].is_null(), "{page}");
                break;
            }
        }
        assert!(pages.len() < 10, "the pages never end");
    }
    assert_eq!(pages, [10, 10, 5]);
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    let data: Vec<u64> = {
        let page = json_body(h.get(&format!("{USER_1}?limit=3")).await, StatusCode::OK).await;
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["n"].as_u64().expect("data is JSON, not text"))
            .collect()
    };
    assert_eq!(data, [1, 2, 3]);
}

#[tokio::test]
async fn a_page_that_starts_between_pages_is_still_full() {
    let h = Harness::start().await;
    h.append("user", "1", (1..=25).map(numbered).collect())
        .await;
    let page = json_body(
        h.get(&format!("{USER_1}?from_revision=5&limit=10")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revisions(&page), (5..=14).collect::<Vec<_>>(), "{page}");
    assert_eq!(page["next_from_revision"], 15, "{page}");
    let last = json_body(
        h.get(&format!("{USER_1}?from_revision=18&limit=10")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revisions(&last), (18..=25).collect::<Vec<_>>());
    assert!(last["next_from_revision"].is_null(), "{last}");
}

#[tokio::test]
async fn a_history_is_cut_by_revision_range_and_by_time() {
    let h = Harness::start().await;
    let first = h.append("user", "1", (1..=3).map(numbered).collect()).await;
    let last_position = first["positions"][2].as_str().unwrap().to_owned();
    let stored_ms: i64 = last_position.split('-').next().unwrap().parse().unwrap();
    // The next batch must land in a later millisecond than the first one's last.
    wait_until(
        "the clock passes the first batch's millisecond",
        PATIENCE,
        || async { (chrono::Utc::now().timestamp_millis() > stored_ms + 1).then_some(()) },
    )
    .await;
    let second = h.append("user", "1", (4..=6).map(numbered).collect()).await;
    let second_ms: i64 = second["positions"][0]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(second_ms > stored_ms, "{first} {second}");

    let range = json_body(
        h.get(&format!("{USER_1}?from_revision=2&to_revision=4"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revisions(&range), [2, 3, 4]);
    assert!(range["next_from_revision"].is_null(), "{range}");
    let capped = json_body(
        h.get(&format!("{USER_1}?to_revision=4&limit=2")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revisions(&capped), [1, 2]);
    assert_eq!(capped["next_from_revision"], 3, "{capped}");

    let as_of = chrono::DateTime::from_timestamp_millis(stored_ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = h
        .http
        .get(h.url(USER_1))
        .query(&[("as_of", as_of.as_str())])
        .send()
        .await
        .unwrap();
    let then = json_body(r, StatusCode::OK).await;
    assert_eq!(revisions(&then), [1, 2, 3], "as of {as_of}: {then}");

    // Before anything was stored: an empty page, not an error.
    let r = h
        .http
        .get(h.url(USER_1))
        .query(&[("as_of", "2001-01-01T00:00:00Z")])
        .send()
        .await
        .unwrap();
    let before = json_body(r, StatusCode::OK).await;
    assert_eq!(revisions(&before), Vec::<u64>::new());
}

#[tokio::test]
async fn history_parameters_out_of_bounds_are_400() {
    let h = Harness::start().await;
    h.append("user", "1", vec![numbered(1)]).await;
    for query in [
        "limit=10001",
        "limit=0",
        "limit=ten",
        "from_revision=-1",
        "colour=red",
    ] {
        let r = h.get(&format!("{USER_1}?{query}")).await;
        let body = problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}");
    }
    // The maximum itself is fine.
    json_body(
        h.get(&format!("{USER_1}?limit=10000")).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn the_history_of_an_unknown_aggregate_is_404_problem() {
    let h = Harness::start().await;
    h.append("user", "1", vec![numbered(1)]).await;
    let r = h.get("/v1/aggregates/user/2/events").await;
    assert_eq!(content_type(&r), super::PROBLEM_JSON);
    let body = problem(r, StatusCode::NOT_FOUND, "not-found").await;
    assert!(
        body["detail"].as_str().unwrap().contains("user/2"),
        "{body}"
    );
}

#[tokio::test]
async fn the_category_feed_pages_across_aggregates_with_after() {
    let h = Harness::start().await;
    let order = ["a", "b", "a", "c", "b", "a", "c"];
    for (n, id) in order.iter().enumerate() {
        h.append("user", id, vec![numbered(n as u64)]).await;
    }
    h.append("cart", "a", vec![numbered(99)]).await;

    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let mut req = h
            .http
            .get(h.url("/v1/categories/user/events"))
            .query(&[("limit", "3")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let page = json_body(req.send().await.unwrap(), StatusCode::OK).await;
        let events = page["events"].as_array().unwrap();
        sizes.push(events.len());
        if events.is_empty() {
            assert_eq!(
                page["next_after"].as_str(),
                after.as_deref(),
                "an empty page hands back the position it was given: {page}"
            );
            break;
        }
        for e in events {
            assert_eq!(e["aggregate_type"], "user", "{e}");
            seen.push((
                e["aggregate_id"].as_str().unwrap().to_owned(),
                e["data"]["n"].as_u64().unwrap(),
            ));
        }
        let next = page["next_after"].as_str().unwrap().to_owned();
        assert_eq!(
            next,
            events.last().unwrap()["position"].as_str().unwrap(),
            "{page}"
        );
        after = Some(next);
        assert!(sizes.len() < 10, "the feed never ends");
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    let expected: Vec<(String, u64)> = order
        .iter()
        .enumerate()
        .map(|(n, id)| (id.to_string(), n as u64))
        .collect();
    assert_eq!(seen, expected, "every user event once, in append order");

    // A bad position is a 400.
    let r = h
        .get("/v1/categories/user/events?after=not-a-position")
        .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
}

#[tokio::test]
async fn a_client_that_asks_for_gzip_gets_the_same_page_compressed() {
    use std::io::Read;

    let h = Harness::start().await;
    let events: Vec<Value> = (1..=50)
        .map(|i| {
            ev(
                "NoteAdded",
                json!({"n": i, "text": "the same words compress well"}),
            )
        })
        .collect();
    h.append("note", "1", events).await;
    let plain = h.get("/v1/aggregates/note/1/events").await;
    assert_eq!(super::header(&plain, "content-encoding"), "");
    let plain = plain.bytes().await.unwrap();

    let r = h
        .http
        .get(h.url("/v1/aggregates/note/1/events"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(super::header(&r, "content-encoding"), "gzip");
    let gzipped = r.bytes().await.unwrap();
    assert!(
        gzipped.len() < plain.len() / 2,
        "{} bytes gzipped, {} plain",
        gzipped.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, plain, "the same page");
}
