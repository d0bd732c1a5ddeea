//! Text a reducer hands the host (its errors, its log lines, its `info`) is
//! untrusted: bounded and escaped wherever the host keeps or shows it. Driven by
//! the `hostile` and `bad-info` fixtures (`tests/plugins/`).

use serde_json::json;
use streamfold::{
    ExpectedRevision, NewEvent, ReadOptions, RegisterOptions, ReplayOptions, Runtime,
};
use streamfold_sandbox::text::{MESSAGE_BYTES, has_controls};
use streamfold_test_support::Env;
use streamfold_tests::plugins;

/// What `shown` appends to a text it cut.
const CUT_NOTE: usize = "… [cut: 1000000 bytes in all]".len();

async fn hostile_host(env: &Env) -> Runtime {
    let rt = Runtime::new(
        env.store.clone(),
        streamfold::RuntimeConfig::default().cache_dir(None),
    )
    .unwrap();
    rt.register(plugins::read(plugins::HOSTILE), RegisterOptions::default())
        .await
        .unwrap();
    rt
}

async fn append(env: &Env, id: &str, event_type: &str) {
    env.store
        .append(
            "hostile",
            id,
            vec![NewEvent::new(event_type, &json!({}))],
            ExpectedRevision::Any,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rejection_message_is_cut_and_escaped_and_the_history_is_untouched() {
    let env = Env::start().await;
    let rt = hostile_host(&env).await;
    append(&env, "1", "Counted").await;
    append(&env, "1", "Refuse").await;

    let err = rt
        .state("hostile", "1", ReplayOptions::default())
        .await
        .unwrap_err();
    let failure = err.reducer_failure().expect("a reducer failure");
    assert!(failure.is_rejection(), "{err}");
    let streamfold::FailureCause::Rejected { message, .. } = &failure.cause else {
        unreachable!()
    };
    assert!(!has_controls(message), "{message:?}");
    assert!(message.starts_with("\\u{1b}[2J\\u{1b}[H"), "{message:?}");
    assert!(message.contains("\\u{d}\\u{a}error: forged"), "{message:?}");
    assert!(
        message.len() <= MESSAGE_BYTES + CUT_NOTE,
        "{}",
        message.len()
    );
    assert!(message.ends_with("bytes in all]"), "{message:?}");
    // What a terminal or a log would show: the whole error, one line, no escapes.
    let shown = err.to_string();
    assert!(!has_controls(&shown), "{shown:?}");
    assert!(!shown.contains('\n'), "{shown:?}");

    let stored = env
        .store
        .read_all("hostile", "1", ReadOptions::default())
        .await
        .unwrap();
    let types: Vec<_> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Counted", "Refuse"]);
}

#[tokio::test]
async fn a_log_line_is_cut_and_escaped() {
    crate::logs::capture();
    let env = Env::start().await;
    let rt = hostile_host(&env).await;
    append(&env, "shout-1", "Shout").await;

    let replayed = rt
        .state("hostile", "shout-1", ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(replayed.state, "1");
    let lines = crate::logs::of("hostile/shout-1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let message = lines[0].field("message");
    assert_eq!(lines[0].level, tracing::Level::WARN);
    assert!(!has_controls(message), "{message:?}");
    assert!(message.starts_with("\\u{1b}[2J"), "{message:?}");
    let limit = streamfold::Limits::default().log_line_bytes;
    assert!(message.len() <= limit + CUT_NOTE, "{}", message.len());
    assert!(message.ends_with("bytes in all]"), "{message:?}");
}

#[tokio::test]
async fn a_plugin_whose_info_holds_terminal_escapes_is_refused() {
    let env = Env::start().await;
    let rt = Runtime::new(
        env.store.clone(),
        streamfold::RuntimeConfig::default().cache_dir(None),
    )
    .unwrap();
    let err = rt
        .register(plugins::read(plugins::BAD_INFO), RegisterOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_invalid_plugin(), "{err}");
    let shown = err.to_string();
    assert!(!has_controls(&shown), "{shown:?}");
    assert!(shown.contains("info.name"), "{shown}");
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    assert!(rt.plugins(None).await.unwrap().is_empty());
}

/// A payload nested far deeper than the store accepts, as an older writer (or a
/// hand-made entry) could have left it.
fn deep_payload(depth: usize) -> String {
    format!(
        "{{\"id\": 1, \"name\": \"x\", \"email\": {}1{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[tokio::test]
async fn deeply_nested_payloads_are_refused_and_a_stored_one_cannot_crash_the_host() {
    let env = Env::start().await;
    // Written through the store: refused, naming the limit.
    let e = env
        .store
        .append(
            "user",
            "deep",
            vec![NewEvent {
                event_id: None,
                event_type: "UserCreated".into(),
                data: deep_payload(20_000),
                timestamp: None,
                version: None,
            }],
            ExpectedRevision::NoStream,
        )
        .await;
    let err = match e {
        Err(e) => e,
        Ok(_) => panic!("a 20,000-deep payload was stored"),
    };
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("nest"), "{err}");
    assert!(
        NewEvent::from_json_text(
            "UserCreated",
            deep_payload(streamfold_store::MAX_JSON_DEPTH - 1)
        )
        .is_ok()
    );

    // Put in the aggregate stream by hand: the JavaScript reducer's parser runs out
    // of its wasm stack and the replay fails, instead of the process.
    let rt = Runtime::new(
        env.store.clone(),
        streamfold::RuntimeConfig::default().cache_dir(None),
    )
    .unwrap();
    rt.register(plugins::read(plugins::USER_JS), RegisterOptions::default())
        .await
        .unwrap();
    env.store
        .append(
            "user",
            "deep",
            vec![NewEvent::new(
                "UserCreated",
                &json!({"id": 1, "name": "x", "email": "x@y", "timestamp": "t1"}),
            )],
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    let keys = env.store.keys("user", "deep").unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&keys.stream)
        .arg("*")
        .arg("event_id")
        .arg(uuid::Uuid::new_v4().to_string())
        .arg("aggregate_type")
        .arg("user")
        .arg("aggregate_id")
        .arg("deep")
        .arg("event_type")
        .arg("EmailChanged")
        .arg("data")
        .arg(deep_payload(20_000))
        .arg("timestamp")
        .arg("2026-12-07T10:00:00.000000Z")
        .arg("version")
        .arg("1")
        .arg("revision")
        .arg("2")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let replay = rt.state("user", "deep", ReplayOptions::default()).await;
    assert!(replay.is_err(), "the deep payload replayed: {replay:?}");
    // The host goes on.
    let fine = rt
        .state("user", "deep", ReplayOptions::default().at_revision(1))
        .await
        .unwrap();
    assert_eq!(fine.revision, 1);
}
