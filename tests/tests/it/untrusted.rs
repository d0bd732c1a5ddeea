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
