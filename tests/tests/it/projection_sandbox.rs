//! Projections in the sandbox, with real components built from source: the
//! `email-domains` example (`plugins/email-domains`) folding user histories into its
//! read model batch by batch, and the `projection-hostile` fixture
//! (`tests/plugins/projection-hostile`) probing the bounds. No Redis: the read model
//! is a map the tests commit each batch's writes to, as the runtime will in Redis.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use streamfold_sandbox::text::{MESSAGE_BYTES, has_controls};
use streamfold_sandbox::{
    BatchWrites, DocumentSource, Error, FailedProjectionEvent, FailureCause, Limits, LoadedPlugin,
    PluginKind, Projection, ProjectionEvent, ReadModelLimits, RejectionKind, Sandbox,
    SandboxConfig, SessionEvent, SourceError,
};
use streamfold_tests::plugins;

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new(SandboxConfig::default().cache_dir(None).limits(limits)).unwrap()
}

fn email_domains(sandbox: &Sandbox) -> Arc<Projection> {
    sandbox
        .load_projection(&plugins::read(plugins::path("email-domains")))
        .unwrap()
        .0
}

fn hostile(sandbox: &Sandbox) -> Arc<Projection> {
    sandbox
        .load_projection(&plugins::read(plugins::path("projection-hostile")))
        .unwrap()
        .0
}

/// One stored event of a category, owned (the sandbox borrows it).
#[derive(Debug, Clone)]
struct Stored {
    aggregate_type: String,
    aggregate_id: String,
    revision: u64,
    position: String,
    event_id: String,
    event_type: String,
    data: String,
}

impl Stored {
    fn new(n: usize, aggregate_type: &str, id: &str, event_type: &str, data: Value) -> Self {
        Stored {
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            revision: 1,
            position: format!("1733560000{n:03}-0"),
            event_id: format!("event-{n}"),
            event_type: event_type.into(),
            data: data.to_string(),
        }
    }

    fn view(&self) -> ProjectionEvent<'_> {
        ProjectionEvent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            revision: self.revision,
            position: &self.position,
            event_id: &self.event_id,
            event_type: &self.event_type,
            data: &self.data,
            timestamp: "2026-12-07T10:00:00Z",
            version: "1",
        }
    }
}

/// One `user` event of a history: (id, type, email).
type UserEvent<'a> = (&'a str, &'a str, &'a str);

/// A category feed of `user` events.
fn feed(events: &[UserEvent<'_>]) -> Vec<Stored> {
    events
        .iter()
        .enumerate()
        .map(|(n, (id, ty, email))| {
            let data = match *ty {
                "UserCreated" => json!({"id": id, "name": "N", "email": email, "timestamp": "t"}),
                "EmailChanged" => json!({"email": email, "timestamp": "t"}),
                _ => json!({"name": email}),
            };
            Stored::new(n, "user", id, ty, data)
        })
        .collect()
}

/// An in-memory read model: committed documents, read through a lock.
#[derive(Debug, Default, Clone)]
struct Model(Arc<Mutex<BTreeMap<String, String>>>);

impl DocumentSource for Model {
    fn get(&self, key: &str) -> Result<Option<String>, SourceError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
}

impl Model {
    fn apply(&self, p: &Projection, events: &[Stored]) -> Result<BatchWrites, Error> {
        let views: Vec<_> = events.iter().map(Stored::view).collect();
        let writes = p.apply_batch(&views, Arc::new(self.clone()))?;
        writes.apply_to(&mut self.0.lock().unwrap());
        Ok(writes)
    }

    fn documents(&self) -> BTreeMap<String, Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::from_str(v).expect("documents are JSON"),
                )
            })
            .collect()
    }
}

fn projection_failure(e: &Error) -> &streamfold_sandbox::ProjectionFailure {
    e.projection_failure()
        .unwrap_or_else(|| panic!("a projection failure: {e}"))
}

#[test]
fn email_domains_says_what_it_is() {
    let sandbox = sandbox(Limits::default());
    let bytes = plugins::read(plugins::path("email-domains"));
    let p = email_domains(&sandbox);
    let info = p.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("email-domains", "0.1.0")
    );
    assert_eq!(info.sources, ["user"]);
    assert_eq!(info.handles, ["UserCreated", "EmailChanged"]);
    assert_eq!(info.digest, streamfold_sandbox::digest(&bytes));
    assert_eq!(info.kind(), PluginKind::Projection);
    assert!(p.wants("user", "EmailChanged"));
    assert!(!p.wants("user", "NameChanged"));
    assert!(!p.wants("cart", "UserCreated"));
}

// The table of user histories, folded whatever the batch size, is one table for the
// Rust and the JavaScript projection: projection_langs.rs.

#[test]
fn a_batch_gives_its_final_writes_in_key_order_last_write_wins() {
    let sandbox = sandbox(Limits::default());
    let p = email_domains(&sandbox);
    let model = Model::default();
    model
        .apply(&p, &feed(&[("1", "UserCreated", "a@gone.com")]))
        .unwrap();
    let writes = model
        .apply(
            &p,
            &feed(&[
                ("2", "UserCreated", "b@x.com"),
                ("1", "EmailChanged", "a@x.com"),
                ("3", "NameChanged", "skipped"),
            ]),
        )
        .unwrap();
    let keys: Vec<_> = writes.writes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["domain/gone.com", "domain/x.com", "user/1", "user/2"]
    );
    assert_eq!(writes.writes["domain/gone.com"], None, "a delete");
    let x: Value = serde_json::from_str(writes.writes["domain/x.com"].as_deref().unwrap()).unwrap();
    assert_eq!(
        x,
        json!({"domain": "x.com", "users": 2, "user_ids": ["1", "2"]})
    );
    assert_eq!(writes.events_applied, 2);
    // The projection holds its documents for the batch (`ReadModel::update`): each
    // one written once, when the batch ends, domain/x.com too (changed twice).
    assert_eq!(writes.write_calls, 4);
    let bytes: usize = writes
        .writes
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    assert_eq!(writes.bytes, bytes);
    // A batch with nothing the projection wants makes no call and writes nothing.
    let none = model
        .apply(&p, &feed(&[("1", "NameChanged", "x")]))
        .unwrap();
    assert_eq!(none, BatchWrites::default());
}

#[test]
fn reads_see_the_batch_s_own_writes_and_deletes() {
    let sandbox = sandbox(Limits::default());
    let p = hostile(&sandbox);
    let model = Model::default();
    model.0.lock().unwrap().insert("count".into(), "10".into());
    let events: Vec<_> = (0..3)
        .map(|n| Stored::new(n, "hostile", "1", "Count", json!({})))
        .collect();
    let writes = model.apply(&p, &events).unwrap();
    assert_eq!(writes.writes["count"].as_deref(), Some("13"));
    assert_eq!(writes.reads, 3);
    // Delete, then read in the same batch: gone (the fixture rejects otherwise),
    // though the committed model still has it.
    let forget = vec![
        Stored::new(0, "hostile", "1", "Forget", json!({})),
        Stored::new(1, "hostile", "1", "Count", json!({})),
        Stored::new(2, "hostile", "1", "Forget", json!({})),
    ];
    let writes = model.apply(&p, &forget).unwrap();
    assert_eq!(writes.writes["count"], None);
    assert!(model.documents().is_empty());
}

#[test]
fn an_invalid_event_fails_the_batch_naming_it_and_nothing_is_written() {
    let sandbox = sandbox(Limits::default());
    let p = email_domains(&sandbox);
    let model = Model::default();
    let mut events = feed(&[
        ("1", "UserCreated", "a@x.com"),
        ("2", "NameChanged", "skipped: not handled"),
        ("3", "UserCreated", "no-domain"),
        ("4", "UserCreated", "d@x.com"),
    ]);
    events.insert(1, Stored::new(9, "cart", "c", "UserCreated", json!({})));
    let err = model.apply(&p, &events).unwrap_err();
    let f = projection_failure(&err);
    assert!(f.is_rejection(), "{err}");
    assert!(
        matches!(
            &f.cause,
            FailureCause::Rejected { reason: RejectionKind::InvalidData, message } if message.contains("no-domain")
        ),
        "{err}"
    );
    // Index 3 in the caller's batch (the cart event and NameChanged were skipped,
    // so the projection saw it at 1).
    assert_eq!(
        f.event,
        Some(FailedProjectionEvent::Event {
            index: 3,
            aggregate_type: "user".into(),
            aggregate_id: "3".into(),
            position: events[3].position.clone(),
            event_id: events[3].event_id.clone(),
            event_type: "UserCreated".into(),
        })
    );
    let shown = err.to_string();
    assert!(shown.contains("email-domains@0.1.0"), "{shown}");
    assert!(
        shown.contains("at event 3 of its batch (UserCreated event-2 of user/3"),
        "{shown}"
    );
    assert!(
        model.documents().is_empty(),
        "nothing of the batch was committed"
    );

    // Data that is not even JSON, and a document of the read model it cannot read.
    let bad = vec![Stored {
        data: "{nope".into(),
        ..feed(&[("5", "EmailChanged", "")])[0].clone()
    }];
    let f = model.apply(&p, &bad).unwrap_err();
    assert_eq!(
        projection_failure(&f)
            .event
            .as_ref()
            .map(|e| matches!(e, FailedProjectionEvent::Event { index: 0, .. })),
        Some(true)
    );
    model
        .0
        .lock()
        .unwrap()
        .insert("user/6".into(), r#"{"domain": 6}"#.into());
    let err = model
        .apply(&p, &feed(&[("6", "EmailChanged", "a@b.c")]))
        .unwrap_err();
    assert!(
        matches!(
            projection_failure(&err).cause,
            FailureCause::Rejected {
                reason: RejectionKind::InvalidDocument,
                ..
            }
        ),
        "{err}"
    );
}

fn hostile_batch(event_type: &str) -> Vec<Stored> {
    vec![
        Stored::new(0, "hostile", "1", "Count", json!({})),
        Stored::new(1, "hostile", "1", event_type, json!({})),
    ]
}

/// The failure of a hostile batch: over a bound (`WriteLimit`) or breaking the
/// contract (`BadOutput`), for the whole batch, nothing written.
fn refused(p: &Projection, event_type: &str) -> (FailureCause, String) {
    let model = Model::default();
    let err = model.apply(p, &hostile_batch(event_type)).unwrap_err();
    let f = projection_failure(&err);
    assert!(
        matches!(
            f.event,
            Some(FailedProjectionEvent::Batch { events: 2, .. })
        ),
        "{event_type}: {err}"
    );
    assert!(model.documents().is_empty(), "{event_type}");
    let shown = err.to_string();
    assert!(!has_controls(&shown), "{shown:?}");
    assert!(
        shown.len() < 2 * MESSAGE_BYTES,
        "{event_type}: {} bytes",
        shown.len()
    );
    (f.cause.clone(), shown)
}

#[test]
fn the_bounds_on_what_a_batch_writes_are_enforced() {
    let sandbox = sandbox(Limits::default());
    let p = hostile(&sandbox);
    let (cause, shown) = refused(&p, "Flood");
    assert!(matches!(cause, FailureCause::WriteLimit { .. }), "{shown}");
    assert!(
        shown.contains("the limit is 100000 writes per batch"),
        "{shown}"
    );
    let (cause, shown) = refused(&p, "ReadFlood");
    assert!(matches!(cause, FailureCause::WriteLimit { .. }), "{shown}");
    assert!(
        shown.contains("the limit is 100000 reads per batch"),
        "{shown}"
    );
    let (cause, shown) = refused(&p, "BigDoc");
    assert!(matches!(cause, FailureCause::WriteLimit { .. }), "{shown}");
    assert!(
        shown.contains("a document of 2097154 bytes; the limit is 1048576"),
        "{shown}"
    );
    let (cause, shown) = refused(&p, "LongKey");
    assert!(matches!(cause, FailureCause::WriteLimit { .. }), "{shown}");
    assert!(shown.contains("a key of 10000 bytes"), "{shown}");
    let (cause, shown) = refused(&p, "NotJson");
    assert!(matches!(cause, FailureCause::BadOutput { .. }), "{shown}");
    assert!(shown.contains("not JSON"), "{shown}");
    let (cause, shown) = refused(&p, "EscapeKey");
    assert!(matches!(cause, FailureCause::BadOutput { .. }), "{shown}");
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");

    // The bytes of the final write set, with a small bound.
    let small = sandbox_with_read_model(ReadModelLimits::default().write_bytes_per_batch(100));
    let p = email_domains(&small);
    let model = Model::default();
    model
        .apply(&p, &feed(&[("1", "UserCreated", "a@x.com")]))
        .unwrap();
    let err = model
        .apply(
            &p,
            &feed(&[
                ("2", "UserCreated", "b@x.com"),
                ("3", "UserCreated", "c@x.com"),
            ]),
        )
        .unwrap_err();
    assert!(projection_failure(&err).is_write_limit(), "{err}");
    assert!(
        err.to_string().contains("the limit is 100 bytes per batch"),
        "{err}"
    );
    assert_eq!(
        model.documents().len(),
        2,
        "only the first batch was committed"
    );
}

fn sandbox_with_read_model(limits: ReadModelLimits) -> Sandbox {
    sandbox(Limits::default().read_model(limits))
}

#[test]
fn a_spinning_or_hoarding_projection_is_stopped() {
    let sandbox = sandbox(
        Limits::default()
            .call_timeout(Duration::from_millis(300))
            .memory_bytes(64 << 20),
    );
    let p = hostile(&sandbox);
    let model = Model::default();
    let err = model.apply(&p, &hostile_batch("Spin")).unwrap_err();
    assert!(projection_failure(&err).is_timeout(), "{err}");
    let err = model.apply(&p, &hostile_batch("Bomb")).unwrap_err();
    assert!(projection_failure(&err).is_out_of_memory(), "{err}");
    // The projection goes on serving: every batch runs on a fresh instance.
    let writes = model.apply(&p, &hostile_batch("Count")).unwrap();
    assert_eq!(writes.writes["count"].as_deref(), Some("2"));
}

#[test]
fn hostile_text_in_a_rejection_and_in_logs_is_cut_and_escaped() {
    let sandbox = sandbox(Limits::default());
    let p = hostile(&sandbox);
    let model = Model::default();
    let err = model.apply(&p, &hostile_batch("Refuse")).unwrap_err();
    let f = projection_failure(&err);
    let FailureCause::Rejected { message, .. } = &f.cause else {
        panic!("a rejection: {err}")
    };
    assert!(!has_controls(message), "{message:?}");
    assert!(message.starts_with("\\u{1b}[2J\\u{1b}[H"), "{message:?}");
    assert!(message.ends_with("bytes in all]"), "{message:?}");
    assert!(message.len() < MESSAGE_BYTES + 64, "{}", message.len());
    assert!(!err.to_string().contains('\n'));

    let lines = capture_projection_logs(|| {
        model.apply(&p, &hostile_batch("Shout")).unwrap();
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (message, plugin) = &lines[0];
    assert!(!has_controls(message), "{message:?}");
    assert!(message.starts_with("\\u{1b}[2J"), "{message:?}");
    assert!(message.len() < 4096 + 64, "{}", message.len());
    assert!(
        plugin.starts_with("fixture-projection-hostile@0.1.0"),
        "{plugin}"
    );
}

/// The `streamfold::projection` log lines emitted while `f` runs on this thread:
/// (message, plugin).
fn capture_projection_logs(f: impl FnOnce()) -> Vec<(String, String)> {
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    #[derive(Default)]
    struct Capture(Arc<Mutex<Vec<(String, String)>>>);
    struct Fields(BTreeMap<String, String>);
    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().into(), value.into());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().into(), format!("{value:?}"));
        }
    }
    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() == "streamfold::projection" {
                let mut fields = Fields(BTreeMap::new());
                event.record(&mut fields);
                let get = |k: &str| fields.0.get(k).cloned().unwrap_or_default();
                self.0.lock().unwrap().push((get("message"), get("plugin")));
            }
        }
    }
    let capture = Capture::default();
    let lines = capture.0.clone();
    let subscriber = tracing_subscriber::registry().with(capture);
    tracing::subscriber::with_default(subscriber, f);
    lines.lock().unwrap().clone()
}

#[test]
fn a_failing_document_source_is_a_read_model_error_not_the_projection_s() {
    #[derive(Debug)]
    struct Down;
    impl DocumentSource for Down {
        fn get(&self, _: &str) -> Result<Option<String>, SourceError> {
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "redis is down").into())
        }
    }
    let sandbox = sandbox(Limits::default());
    let p = email_domains(&sandbox);
    let events = feed(&[("1", "UserCreated", "a@x.com")]);
    let views: Vec<_> = events.iter().map(Stored::view).collect();
    let err = p.apply_batch(&views, Arc::new(Down)).unwrap_err();
    assert!(err.is_read_model(), "{err}");
    assert!(err.projection_failure().is_none());
    assert!(err.to_string().contains("reading \"user/1\""), "{err}");
    let source = std::error::Error::source(&err).expect("the source's error");
    assert_eq!(
        source
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

#[test]
fn each_kind_is_refused_as_the_other_with_a_clear_error() {
    let sandbox = sandbox(Limits::default());
    let user = plugins::read(plugins::USER);
    let domains = plugins::read(plugins::path("email-domains"));

    let err = sandbox.load_projection(&user).unwrap_err();
    assert!(err.is_invalid_plugin(), "{err}");
    assert!(
        err.to_string().contains(
            "is a reducer (it exports streamfold:reducer/reducer@0.1.0), not a projection"
        ),
        "{err}"
    );
    let err = sandbox.load(&domains).unwrap_err();
    assert!(err.is_invalid_plugin(), "{err}");
    assert!(
        err.to_string().contains(
            "is a projection (it exports streamfold:projection/projection@0.1.0), not a reducer"
        ),
        "{err}"
    );
    let err = sandbox
        .load_projection(&plugins::read(plugins::OTHER_WORLD))
        .unwrap_err();
    assert!(
        err.to_string().contains("does not export the projection world streamfold:projection/projection@0.1.0 (it exports: run)"),
        "{err}"
    );
    let err = sandbox
        .load_any(&plugins::read(plugins::OTHER_WORLD))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not export the reducer world"),
        "{err}"
    );
    assert!(err.to_string().contains("or the projection world"), "{err}");

    let (any, _) = sandbox.load_any(&domains).unwrap();
    assert_eq!(any.kind(), PluginKind::Projection);
    assert_eq!(any.name(), "email-domains");
    let (any, _) = sandbox.load_any(&user).unwrap();
    assert_eq!(any.kind(), PluginKind::Reducer);
    assert!(matches!(any, LoadedPlugin::Reducer(ref p) if p.info().kind() == PluginKind::Reducer));
}

#[test]
fn reducers_built_from_the_current_contract_still_load_and_replay() {
    let sandbox = sandbox(Limits::default());
    let (user, _) = sandbox.load(&plugins::read(plugins::USER)).unwrap();
    let mut session = sandbox.fresh_session(user, "user", "1").unwrap();
    let created = json!({"id": 1, "name": "A", "email": "a@x.com", "timestamp": "t"}).to_string();
    let changed = json!({"email": "b@y.com", "timestamp": "t2"}).to_string();
    let events = [
        ("UserCreated", created.as_str()),
        ("EmailChanged", changed.as_str()),
    ];
    session
        .apply(
            events
                .iter()
                .enumerate()
                .map(|(i, (ty, data))| SessionEvent {
                    revision: i as u64 + 1,
                    position: "1-0",
                    event_id: "e",
                    event_type: ty,
                    data,
                    timestamp: "2026-12-07T10:00:00Z",
                    version: "1",
                }),
        )
        .unwrap();
    let state: Value = serde_json::from_str(&session.state().unwrap()).unwrap();
    assert_eq!(state["email"], "b@y.com");
    assert_eq!(state["email_updated_at"], "t2");
}
