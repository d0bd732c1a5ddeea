//! `GET /v1/types` and `GET /v1/aggregates/{type}`: what the store holds, for
//! browsing, behind the same tokens as everything else.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use streamfold_tests::plugins;

use super::auth::secured;
use super::{Harness, json_body, problem, user_created};

#[tokio::test]
async fn types_list_those_with_events_and_those_with_reducers() {
    let h = Harness::start().await;
    h.register(plugins::USER, true).await;
    h.register(plugins::USER_V2, false).await;
    h.register(plugins::CART, true).await;
    h.append("user", "1", vec![user_created(1, "Alice")]).await;
    h.append(
        "order",
        "1",
        vec![super::ev("OrderPlaced", serde_json::json!({}))],
    )
    .await;
    let listed = json_body(h.get("/v1/types").await, StatusCode::OK).await;
    let types = listed["types"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert_eq!(names, ["cart", "order", "user"], "{listed}");
    let by = |name: &str| types.iter().find(|t| t["type"] == name).unwrap().clone();
    let user = by("user");
    assert_eq!(user["has_events"], true);
    assert_eq!(user["partitions"], 1);
    assert_eq!(user["reducer_versions"], 2);
    assert_eq!(user["active_reducer"]["version"], "0.1.0", "{user}");
    let cart = by("cart");
    assert_eq!(
        (cart["has_events"].clone(), cart["partitions"].clone()),
        (Value::Bool(false), Value::Null)
    );
    assert_eq!(cart["active_reducer"]["aggregate_type"], "cart");
    let order = by("order");
    assert_eq!(
        (
            order["reducer_versions"].clone(),
            order["active_reducer"].clone()
        ),
        (0.into(), Value::Null)
    );
}

#[tokio::test]
async fn aggregate_ids_come_a_page_at_a_time_by_prefix() {
    let h = Harness::start().await;
    for i in 0..25 {
        h.append("user", &format!("u{i}"), vec![user_created(i, "A")])
            .await;
    }
    let walk = |query: &'static str| {
        let h = &h;
        async move {
            let mut ids = BTreeSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let url = match &cursor {
                    Some(c) => format!("/v1/aggregates/user?{query}&cursor={c}"),
                    None => format!("/v1/aggregates/user?{query}"),
                };
                let page = json_body(h.get(&url).await, StatusCode::OK).await;
                for id in page["ids"].as_array().unwrap() {
                    assert!(ids.insert(id.as_str().unwrap().to_owned()), "{id} twice");
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return ids,
                }
            }
        }
    };
    let all = walk("limit=4").await;
    assert_eq!(all.len(), 25);
    let twos = walk("prefix=u2&limit=2").await;
    let want: BTreeSet<String> = ["u2", "u20", "u21", "u22", "u23", "u24"]
        .map(String::from)
        .into();
    assert_eq!(twos, want);
    let r = h.get("/v1/aggregates/user?cursor=nope").await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
    let r = h.get("/v1/aggregates/a%7Bb").await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-input").await;
}

#[tokio::test]
async fn a_token_limited_to_some_types_sees_only_those() {
    let t = secured().await;
    let types = |token: String| {
        let h = &t.h;
        async move {
            let r = h
                .http
                .get(h.url("/v1/types"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let listed = json_body(r, StatusCode::OK).await;
            listed["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(types(t.read.clone()).await, ["cart", "user"]);
    assert_eq!(types(t.cart_writer.clone()).await, ["cart"]);
    let r =
        t.h.http
            .get(t.h.url("/v1/aggregates/user"))
            .bearer_auth(&t.cart_writer)
            .send()
            .await
            .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}
