//! Projections written in other languages, in the sandbox, with the real components
//! built from source (`tests/build.rs`):
//!
//! - `email-domains-js` (`plugins/email-domains-js`, JavaScript) and
//!   `email-domains-py` (`plugins/email-domains-py`, Python) against the Rust
//!   `email-domains` (`plugins/email-domains`): one table of user histories, folded
//!   by each in batches of several sizes, must give the expected read model and the
//!   very same documents (byte for byte); one table of invalid events, refused by
//!   each with the same kind of error naming the same event, nothing written;
//! - `cart-daily-totals-py` (`plugins/cart-daily-totals-py`, Python): cart histories
//!   across two days give the expected documents whatever the batch size, agree
//!   with the Rust `cart` reducer's state of each cart, and invalid events are
//!   refused.
//!
//! No Redis: the read model is a map each batch's writes are committed to, as in
//! `projection_sandbox.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use streamfold_sandbox::{
    BatchWrites, DocumentSource, Error, FailedProjectionEvent, FailureCause, Projection,
    ProjectionEvent, RejectionKind, Sandbox, SandboxConfig, SessionEvent, SourceError,
};
use streamfold_tests::plugins;

/// A sandbox that keeps compiled code in the tests' shared cache: the JavaScript
/// and Python components take seconds to compile.
fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default().cache_dir(Some(plugins::code_cache_dir()))).unwrap()
}

fn projection(sandbox: &Sandbox, name: &str) -> Arc<Projection> {
    sandbox
        .load_projection(&plugins::read(plugins::path(name)))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
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
    timestamp: String,
}

impl Stored {
    fn view(&self) -> ProjectionEvent<'_> {
        ProjectionEvent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            revision: self.revision,
            position: &self.position,
            event_id: &self.event_id,
            event_type: &self.event_type,
            data: &self.data,
            timestamp: &self.timestamp,
            version: "1",
        }
    }
}

/// One event of a category feed: (aggregate id, event type, data as JSON text,
/// timestamp).
type FeedEvent<'a> = (&'a str, &'a str, String, &'a str);

/// One `user` event: (id, event type, email).
type UserEvent<'a> = (&'a str, &'a str, &'a str);

/// A case of invalid events: (what it shows, the batch, the index of the event
/// refused in it, the error's kind, what its message says).
type Refused<'a, E> = (&'a str, Vec<E>, usize, RejectionKind, &'a str);

/// A category feed. Revisions count each aggregate's events.
fn category(aggregate_type: &str, events: &[FeedEvent<'_>]) -> Vec<Stored> {
    let mut revisions = BTreeMap::new();
    events
        .iter()
        .enumerate()
        .map(|(n, (id, ty, data, at))| {
            let revision = revisions.entry(*id).or_insert(0);
            *revision += 1;
            Stored {
                aggregate_type: aggregate_type.into(),
                aggregate_id: (*id).into(),
                revision: *revision,
                position: format!("1733560000{n:03}-0"),
                event_id: format!("event-{n}"),
                event_type: (*ty).into(),
                data: data.clone(),
                timestamp: (*at).into(),
            }
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

    /// Folds `events` in batches of `batch`; the documents' text.
    fn fold(p: &Projection, events: &[Stored], batch: usize) -> BTreeMap<String, String> {
        let model = Model::default();
        for chunk in events.chunks(batch) {
            model
                .apply(p, chunk)
                .unwrap_or_else(|e| panic!("batches of {batch}: {e}"));
        }
        model.texts()
    }

    fn texts(&self) -> BTreeMap<String, String> {
        self.0.lock().unwrap().clone()
    }
}

/// The documents parsed.
fn parsed(texts: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    texts
        .iter()
        .map(|(k, v)| {
            let doc = serde_json::from_str(v).unwrap_or_else(|e| panic!("{k}: {e}: {v}"));
            (k.clone(), doc)
        })
        .collect()
}

fn expected(docs: Value) -> BTreeMap<String, Value> {
    docs.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a failed batch says: (error kind, event index in the caller's batch, message).
fn refusal(err: &Error) -> (RejectionKind, usize, String) {
    let f = err
        .projection_failure()
        .unwrap_or_else(|| panic!("a projection failure: {err}"));
    let FailureCause::Rejected { reason, message } = &f.cause else {
        panic!("a rejection: {err}")
    };
    let Some(FailedProjectionEvent::Event { index, .. }) = &f.event else {
        panic!("an error naming its event: {err}")
    };
    (*reason, *index, message.clone())
}

// ---------------------------------------------------------------------------------
// email-domains, in Rust, JavaScript and Python

/// The email-domains projections: the Rust reference first.
const EMAIL_DOMAINS: [&str; 3] = ["email-domains", "email-domains-js", "email-domains-py"];

const AT: &str = "2026-12-07T10:00:00Z";

/// `user` events: (id, type, email); the data as the `user` reducer's events hold it.
fn users(events: &[UserEvent<'_>]) -> Vec<Stored> {
    let events: Vec<_> = events
        .iter()
        .map(|&(id, ty, email)| {
            let data = match ty {
                "UserCreated" => json!({"id": id, "name": "N", "email": email, "timestamp": "t"}),
                "EmailChanged" => json!({"email": email, "timestamp": "t"}),
                _ => json!({"name": email}),
            };
            (id, ty, data.to_string(), AT)
        })
        .collect();
    category("user", &events)
}

#[test]
fn email_domains_in_javascript_and_python_say_what_they_are() {
    let sandbox = sandbox();
    let [rust, others @ ..] = EMAIL_DOMAINS.map(|name| projection(&sandbox, name));
    let rust = rust.info();
    for (p, name) in others.iter().zip(&EMAIL_DOMAINS[1..]) {
        let info = p.info();
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            (*name, "0.1.0")
        );
        assert_eq!(info.sources, rust.sources);
        assert_eq!(info.handles, rust.handles);
    }
}

#[test]
fn email_domains_in_rust_javascript_and_python_fold_one_table_into_the_same_read_model() {
    let table: Vec<(&str, Vec<UserEvent<'_>>, Value)> = vec![
        (
            "users are grouped by lowercased domain (the part after the last @), ids sorted",
            vec![
                ("u2", "UserCreated", "b@Example.com"),
                ("u10", "UserCreated", "a@example.COM"),
                ("u1", "UserCreated", "c@x@example.com"),
                ("u3", "UserCreated", "d@other.org"),
                ("u4", "UserCreated", "E@OTHER.ORG"),
            ],
            json!({
                "domain/example.com": {"domain": "example.com", "users": 3, "user_ids": ["u1", "u10", "u2"]},
                "domain/other.org": {"domain": "other.org", "users": 2, "user_ids": ["u3", "u4"]},
                "user/u1": {"domain": "example.com"},
                "user/u10": {"domain": "example.com"},
                "user/u2": {"domain": "example.com"},
                "user/u3": {"domain": "other.org"},
                "user/u4": {"domain": "other.org"},
            }),
        ),
        (
            "users move; a domain left empty is deleted; other types are skipped",
            vec![
                ("a", "UserCreated", "a@old.com"),
                ("b", "UserCreated", "b@old.com"),
                ("c", "UserCreated", "c@gone.net"),
                ("a", "NameChanged", "Ann"),
                ("a", "EmailChanged", "a@new.com"),
                ("c", "EmailChanged", "c@NEW.com"),
                ("b", "EmailChanged", "b2@Old.Com"),
                ("d", "UserCreated", "d@gone.net"),
                ("d", "EmailChanged", "d@new.com"),
            ],
            json!({
                "domain/new.com": {"domain": "new.com", "users": 3, "user_ids": ["a", "c", "d"]},
                "domain/old.com": {"domain": "old.com", "users": 1, "user_ids": ["b"]},
                "user/a": {"domain": "new.com"},
                "user/b": {"domain": "old.com"},
                "user/c": {"domain": "new.com"},
                "user/d": {"domain": "new.com"},
            }),
        ),
        (
            "moving away and back leaves one membership; a user never seen created counts",
            vec![
                ("z", "UserCreated", "z@one.io"),
                ("z", "EmailChanged", "z@two.io"),
                ("z", "EmailChanged", "z@one.io"),
                ("y", "EmailChanged", "y@two.io"),
                ("y", "EmailChanged", "y@ONE.io"),
                ("x", "UserCreated", "x@two.io"),
                ("x", "EmailChanged", "other-x@two.io"),
            ],
            json!({
                "domain/one.io": {"domain": "one.io", "users": 2, "user_ids": ["y", "z"]},
                "domain/two.io": {"domain": "two.io", "users": 1, "user_ids": ["x"]},
                "user/x": {"domain": "two.io"},
                "user/y": {"domain": "one.io"},
                "user/z": {"domain": "one.io"},
            }),
        ),
        (
            "everyone leaves: only the users' documents are left",
            vec![
                ("1", "UserCreated", "a@solo.dev"),
                ("2", "UserCreated", "b@solo.dev"),
                ("1", "EmailChanged", "a@elsewhere.dev"),
                ("2", "EmailChanged", "b@elsewhere.dev"),
                ("1", "EmailChanged", "a@away.dev"),
            ],
            json!({
                "domain/away.dev": {"domain": "away.dev", "users": 1, "user_ids": ["1"]},
                "domain/elsewhere.dev": {"domain": "elsewhere.dev", "users": 1, "user_ids": ["2"]},
                "user/1": {"domain": "away.dev"},
                "user/2": {"domain": "elsewhere.dev"},
            }),
        ),
        (
            "Unicode: lowercased as Rust does (a final sigma too), ids in code point order",
            vec![
                ("\u{ff61}", "UserCreated", "a@BÜCHER.de"),
                ("😀", "UserCreated", "b@bücher.DE"),
                ("é", "UserCreated", "c@Bücher.de"),
                ("z", "UserCreated", "d@ΟΔΟΣ"),
                ("Z", "UserCreated", "e@x\"y\\z.example"),
                ("I", "UserCreated", "f@İZMİR.tr"),
            ],
            json!({
                "domain/bücher.de": {"domain": "bücher.de", "users": 3, "user_ids": ["é", "\u{ff61}", "😀"]},
                "domain/οδος": {"domain": "οδος", "users": 1, "user_ids": ["z"]},
                "domain/x\"y\\z.example": {"domain": "x\"y\\z.example", "users": 1, "user_ids": ["Z"]},
                "user/\u{ff61}": {"domain": "bücher.de"},
                "user/😀": {"domain": "bücher.de"},
                "user/é": {"domain": "bücher.de"},
                "user/z": {"domain": "οδος"},
                "user/Z": {"domain": "x\"y\\z.example"},
                "domain/i\u{307}zmi\u{307}r.tr": {"domain": "i\u{307}zmi\u{307}r.tr", "users": 1, "user_ids": ["I"]},
                "user/I": {"domain": "i\u{307}zmi\u{307}r.tr"},
            }),
        ),
    ];
    let sandbox = sandbox();
    let projections = EMAIL_DOMAINS.map(|name| (name, projection(&sandbox, name)));
    for (what, history, docs) in table {
        let events = users(&history);
        let mut reference = None;
        for (name, p) in &projections {
            for batch in [1, 2, 3, 5, events.len()] {
                let texts = Model::fold(p, &events, batch);
                assert_eq!(
                    parsed(&texts),
                    expected(docs.clone()),
                    "{name}: {what}, batches of {batch}"
                );
                // The same documents, byte for byte, as the Rust projection's.
                let reference = reference.get_or_insert_with(|| texts.clone());
                assert_eq!(&texts, reference, "{name}: {what}, batches of {batch}");
            }
        }
    }
}

#[test]
fn email_domains_in_rust_javascript_and_python_read_payloads_alike() {
    // What serde_json's struct `{email: String}` takes: other fields are skipped
    // over (even numbers beyond a double and lone surrogates), an array holds the
    // fields in order.
    let events = category(
        "user",
        &[
            (
                "1",
                "EmailChanged",
                r#"{"email": "a@b.c", "n": 1e400}"#.into(),
                AT,
            ),
            (
                "2",
                "EmailChanged",
                r#"{"note": "\ud800", "email": "b@B.c", "y": {"email": 2}}"#.into(),
                AT,
            ),
            ("3", "UserCreated", r#"["c@b.C"]"#.into(), AT),
            (
                "4",
                "EmailChanged",
                r#"{"email": "d@b.c", "ok": true, "more": {"deep": [1, 2.5, null]}}"#.into(),
                AT,
            ),
        ],
    );
    let sandbox = sandbox();
    let [rust, others @ ..] = EMAIL_DOMAINS.map(|name| projection(&sandbox, name));
    let texts = Model::fold(&rust, &events, 2);
    assert_eq!(
        parsed(&texts),
        expected(json!({
            "domain/b.c": {"domain": "b.c", "users": 4, "user_ids": ["1", "2", "3", "4"]},
            "user/1": {"domain": "b.c"},
            "user/2": {"domain": "b.c"},
            "user/3": {"domain": "b.c"},
            "user/4": {"domain": "b.c"},
        }))
    );
    for (p, name) in others.iter().zip(&EMAIL_DOMAINS[1..]) {
        assert_eq!(Model::fold(p, &events, 2), texts, "{name}");
    }
}

#[test]
fn email_domains_in_rust_javascript_and_python_refuse_the_same_events() {
    let sandbox = sandbox();
    let projections = EMAIL_DOMAINS.map(|name| (name, projection(&sandbox, name)));
    // Each case: a batch whose event `index` must be refused with `kind`, its message
    // containing `says` (in both languages), after a first committed batch.
    let created = |id: &str, email: &str| {
        json!({"id": id, "name": "N", "email": email, "timestamp": "t"}).to_string()
    };
    let table: Vec<Refused<'_, (&str, &str, String)>> = vec![
        (
            "no @",
            vec![
                ("2", "UserCreated", created("2", "b@x.com")),
                ("2", "NameChanged", json!({"name": "skipped"}).to_string()),
                ("3", "UserCreated", created("3", "no-domain")),
                ("4", "UserCreated", created("4", "d@x.com")),
            ],
            2,
            RejectionKind::InvalidData,
            r#"email "no-domain" has no domain after an @"#,
        ),
        (
            "nothing after the last @",
            vec![("1", "EmailChanged", json!({"email": "a@b.c@"}).to_string())],
            0,
            RejectionKind::InvalidData,
            r#"email "a@b.c@" has no domain after an @"#,
        ),
        (
            "whitespace in the domain (Unicode's, an em space)",
            vec![
                ("2", "UserCreated", created("2", "b@x.com")),
                (
                    "1",
                    "EmailChanged",
                    json!({"email": "a@x\u{2003}y.com"}).to_string(),
                ),
            ],
            1,
            RejectionKind::InvalidData,
            "has no domain after an @",
        ),
        (
            "a control character in the domain",
            vec![(
                "1",
                "EmailChanged",
                json!({"email": "a@x\u{85}y.com"}).to_string(),
            )],
            0,
            RejectionKind::InvalidData,
            "has no domain after an @",
        ),
        (
            "no email field",
            vec![(
                "5",
                "UserCreated",
                json!({"id": "5", "name": "N"}).to_string(),
            )],
            0,
            RejectionKind::InvalidData,
            "missing field `email`",
        ),
        (
            "an email that is not a string",
            vec![("5", "EmailChanged", json!({"email": 5}).to_string())],
            0,
            RejectionKind::InvalidData,
            "email",
        ),
        (
            "data that is not JSON",
            vec![
                ("2", "UserCreated", created("2", "b@x.com")),
                ("5", "EmailChanged", "{nope".into()),
            ],
            1,
            RejectionKind::InvalidData,
            "",
        ),
        (
            "JSON serde_json refuses: a lone surrogate escape",
            vec![("5", "EmailChanged", r#"{"email": "a@b.c\ud800"}"#.into())],
            0,
            RejectionKind::InvalidData,
            "escape",
        ),
        (
            "a repeated email field (serde refuses it; JSON.parse and Python's json keep the last)",
            vec![(
                "5",
                "EmailChanged",
                r#"{"email": "a@b.c", "x": {"email": 1}, "\u0065mail": "b@c.d"}"#.into(),
            )],
            0,
            RejectionKind::InvalidData,
            "duplicate field `email`",
        ),
        (
            "an array of more than the email",
            vec![("5", "EmailChanged", r#"["a@b.c", "x"]"#.into())],
            0,
            RejectionKind::InvalidData,
            "trailing characters",
        ),
        (
            "a user document it cannot read",
            vec![
                ("2", "UserCreated", created("2", "b@x.com")),
                ("6", "EmailChanged", json!({"email": "a@b.c"}).to_string()),
            ],
            1,
            RejectionKind::InvalidDocument,
            "user/6",
        ),
        (
            "a domain document it cannot read",
            vec![(
                "7",
                "EmailChanged",
                json!({"email": "a@broken.org"}).to_string(),
            )],
            0,
            RejectionKind::InvalidDocument,
            "domain/broken.org",
        ),
    ];
    for (what, events, index, kind, says) in table {
        let events: Vec<_> = events
            .into_iter()
            .map(|(id, ty, d)| (id, ty, d, AT))
            .collect();
        let batch = category("user", &events);
        let mut answers = Vec::new();
        for (name, p) in &projections {
            let model = Model::default();
            model
                .apply(p, &users(&[("1", "UserCreated", "a@x.com")]))
                .unwrap();
            {
                let mut docs = model.0.lock().unwrap();
                docs.insert("user/6".into(), r#"{"domain": 6}"#.into());
                docs.insert(
                    "domain/broken.org".into(),
                    r#"{"domain": "broken.org", "users": "1", "user_ids": []}"#.into(),
                );
            }
            let before = model.texts();
            let err = model
                .apply(p, &batch)
                .expect_err(&format!("{name}: {what}"));
            let (got_kind, got_index, message) = refusal(&err);
            assert_eq!(
                (got_kind, got_index),
                (kind, index),
                "{name}: {what}: {err}"
            );
            assert!(message.contains(says), "{name}: {what}: {message}");
            assert_eq!(model.texts(), before, "{name}: {what}: nothing written");
            answers.push((got_kind, got_index));
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{what}");
    }
}

// ---------------------------------------------------------------------------------
// cart-daily-totals, in Python

const CART_DAILY_TOTALS: &str = "cart-daily-totals-py";

/// Two days of carts: (cart, event type, data, append time).
fn two_days() -> Vec<Stored> {
    let opened = |who: &str| json!({"customer": who}).to_string();
    let added = |sku: &str, quantity: i64, price: i64| {
        json!({"sku": sku, "name": sku.to_uppercase(), "quantity": quantity, "unit_price_cents": price})
            .to_string()
    };
    let removed = |sku: &str, quantity: Option<i64>| match quantity {
        Some(q) => json!({"sku": sku, "quantity": q}).to_string(),
        None => json!({"sku": sku}).to_string(),
    };
    let changed = |sku: &str, quantity: i64| json!({"sku": sku, "quantity": quantity}).to_string();
    let none = || "{}".to_string();
    category(
        "cart",
        &[
            // 2026-12-06
            ("c1", "CartOpened", opened("alice"), "2026-12-06T09:00:00Z"),
            (
                "c1",
                "ItemAdded",
                added("apple", 2, 50),
                "2026-12-06T09:01:00Z",
            ),
            (
                "c1",
                "ItemAdded",
                added("fig", 3, 30),
                "2026-12-06T09:02:00Z",
            ),
            (
                "c1",
                "ItemAdded",
                added("apple", 1, 50),
                "2026-12-06T09:03:00Z",
            ),
            ("c2", "CartOpened", opened("bob"), "2026-12-06T10:00:00Z"),
            (
                "c2",
                "ItemAdded",
                added("pear", 1, 120),
                "2026-12-06T10:01:00Z",
            ),
            (
                "c1",
                "ItemRemoved",
                removed("fig", Some(1)),
                "2026-12-06T10:02:00Z",
            ),
            ("c3", "CartOpened", opened("carol"), "2026-12-06T23:00:00Z"),
            (
                "c3",
                "ItemAdded",
                added("kiwi", 4, 25),
                "2026-12-06T23:01:00Z",
            ),
            ("c1", "CheckedOut", none(), "2026-12-06T23:59:59.999999Z"),
            // 2026-12-07
            (
                "c2",
                "QuantityChanged",
                changed("pear", 2),
                "2026-12-07T00:00:00Z",
            ),
            (
                "c2",
                "ItemAdded",
                added("plum", 1, 0),
                "2026-12-07T00:00:01Z",
            ),
            ("c2", "CheckedOut", none(), "2026-12-07T00:00:02.5Z"),
            (
                "c3",
                "ItemRemoved",
                removed("kiwi", None),
                "2026-12-07T07:00:00Z",
            ),
            ("c3", "CartAbandoned", none(), "2026-12-07T08:00:00Z"),
            ("c4", "CartOpened", opened("dave"), "2026-12-07T09:00:00Z"),
            (
                "c4",
                "ItemAdded",
                added("apple", 1, 55),
                "2026-12-07T09:01:00Z",
            ),
        ],
    )
}

#[test]
fn cart_daily_totals_says_what_it_is() {
    let sandbox = sandbox();
    let p = projection(&sandbox, CART_DAILY_TOTALS);
    let info = p.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("cart-daily-totals-py", "0.1.0")
    );
    assert_eq!(info.sources, ["cart"]);
    assert_eq!(
        info.handles,
        [
            "CartOpened",
            "ItemAdded",
            "ItemRemoved",
            "QuantityChanged",
            "CheckedOut",
            "CartAbandoned"
        ]
    );
}

#[test]
fn cart_histories_across_two_days_fold_into_daily_totals_whatever_the_batch_size() {
    let sandbox = sandbox();
    let p = projection(&sandbox, CART_DAILY_TOTALS);
    let events = two_days();
    let line = |quantity: u64, price: u64| json!({"quantity": quantity, "unit_price_cents": price});
    let docs = json!({
        "day/2026-12-06": {
            "day": "2026-12-06", "carts_opened": 3, "carts_checked_out": 1,
            "carts_abandoned": 0, "items_sold": 5, "revenue_cents": 210,
        },
        "day/2026-12-07": {
            "day": "2026-12-07", "carts_opened": 1, "carts_checked_out": 1,
            "carts_abandoned": 1, "items_sold": 3, "revenue_cents": 240,
        },
        "cart/c1": {"status": "checked_out", "items": {"apple": line(3, 50), "fig": line(2, 30)}},
        "cart/c2": {"status": "checked_out", "items": {"pear": line(2, 120), "plum": line(1, 0)}},
        "cart/c3": {"status": "abandoned", "items": {}},
        "cart/c4": {"status": "open", "items": {"apple": line(1, 55)}},
    });
    let mut first = None;
    for batch in [1, 2, 3, 7, events.len()] {
        let texts = Model::fold(&p, &events, batch);
        assert_eq!(parsed(&texts), expected(docs.clone()), "batches of {batch}");
        let first = first.get_or_insert_with(|| texts.clone());
        assert_eq!(&texts, first, "batches of {batch}: the same bytes");
    }
    // The documents' text, as the README shows it.
    let texts = first.unwrap();
    assert_eq!(
        texts["day/2026-12-06"],
        r#"{"day":"2026-12-06","carts_opened":3,"carts_checked_out":1,"carts_abandoned":0,"items_sold":5,"revenue_cents":210}"#
    );
    assert_eq!(
        texts["cart/c2"],
        r#"{"status":"checked_out","items":{"pear":{"quantity":2,"unit_price_cents":120},"plum":{"quantity":1,"unit_price_cents":0}}}"#
    );
}

/// The Rust `cart` reducer's state of each cart of `events`.
fn cart_states(sandbox: &Sandbox, events: &[Stored]) -> BTreeMap<String, Value> {
    let (reducer, _) = sandbox.load(&plugins::read(plugins::CART)).unwrap();
    let mut ids: Vec<_> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mut session = sandbox.fresh_session(reducer.clone(), "cart", id).unwrap();
            session
                .apply(
                    events
                        .iter()
                        .filter(|e| e.aggregate_id == id)
                        .map(|e| SessionEvent {
                            revision: e.revision,
                            position: &e.position,
                            event_id: &e.event_id,
                            event_type: &e.event_type,
                            data: &e.data,
                            timestamp: &e.timestamp,
                            version: "1",
                        }),
                )
                .unwrap();
            let state = serde_json::from_str(&session.state().unwrap()).unwrap();
            (id.to_string(), state)
        })
        .collect()
}

#[test]
fn cart_daily_totals_agree_with_the_cart_reducer() {
    let sandbox = sandbox();
    let p = projection(&sandbox, CART_DAILY_TOTALS);
    let events = two_days();
    let docs = parsed(&Model::fold(&p, &events, 4));
    let mut days: BTreeMap<String, Value> = BTreeMap::new();
    let day = |at: &Value| at.as_str().map(|at| at[..10].to_string());
    for (id, state) in cart_states(&sandbox, &events) {
        // Each cart's status and lines are the reducer's.
        let cart = &docs[&format!("cart/{id}")];
        assert_eq!(cart["status"], state["status"], "{id}");
        let items = state["items"].as_object().unwrap();
        assert_eq!(
            cart["items"].as_object().unwrap().len(),
            items.len(),
            "{id}"
        );
        for (sku, line) in items {
            for field in ["quantity", "unit_price_cents"] {
                assert_eq!(cart["items"][sku][field], line[field], "{id} {sku}");
            }
        }
        // And each day's totals the sum of the reducer's carts of that day.
        let mut add = |on: Option<String>, counter: &str, n: u64| {
            if let Some(day) = on {
                let d = days.entry(day.clone()).or_insert_with(|| {
                    json!({"day": day, "carts_opened": 0, "carts_checked_out": 0,
                        "carts_abandoned": 0, "items_sold": 0, "revenue_cents": 0})
                });
                d[counter] = (d[counter].as_u64().unwrap() + n).into();
            }
        };
        add(day(&state["opened_at"]), "carts_opened", 1);
        add(day(&state["abandoned_at"]), "carts_abandoned", 1);
        let checked_out = day(&state["checked_out_at"]);
        add(checked_out.clone(), "carts_checked_out", 1);
        add(
            checked_out.clone(),
            "items_sold",
            state["item_count"].as_u64().unwrap(),
        );
        add(
            checked_out,
            "revenue_cents",
            state["total_cents"].as_u64().unwrap(),
        );
    }
    let from_reducer: BTreeMap<_, _> = days
        .into_iter()
        .map(|(day, doc)| (format!("day/{day}"), doc))
        .collect();
    let from_projection: BTreeMap<_, _> = docs
        .into_iter()
        .filter(|(k, _)| k.starts_with("day/"))
        .collect();
    assert_eq!(from_projection, from_reducer);
}

#[test]
fn cart_daily_totals_refuse_invalid_events_naming_them() {
    let sandbox = sandbox();
    let p = projection(&sandbox, CART_DAILY_TOTALS);
    let item = |quantity: Value| {
        json!({"sku": "apple", "name": "Apple", "quantity": quantity, "unit_price_cents": 50})
            .to_string()
    };
    let at = "2026-12-07T12:00:00Z";
    // After the first day's history (committed): a batch whose event `index` is refused.
    let table: Vec<Refused<'_, FeedEvent<'_>>> = vec![
        (
            "a quantity that is not an integer",
            vec![
                ("c4", "CartOpened", json!({"customer": "d"}).to_string(), at),
                ("c4", "Noted", "{}".into(), at),
                ("c4", "ItemAdded", item(json!("two")), at),
            ],
            2,
            RejectionKind::InvalidData,
            "quantity",
        ),
        (
            "a float quantity (serde reads an i64)",
            vec![("c2", "ItemAdded", item(json!(2.0)), at)],
            0,
            RejectionKind::InvalidData,
            "quantity",
        ),
        (
            "data that is not JSON",
            vec![("c2", "ItemRemoved", "{nope".into(), at)],
            0,
            RejectionKind::InvalidData,
            "",
        ),
        (
            "a repeated field",
            vec![(
                "c2",
                "ItemRemoved",
                r#"{"sku": "pear", "sku": "fig"}"#.into(),
                at,
            )],
            0,
            RejectionKind::InvalidData,
            "duplicate field `sku`",
        ),
        (
            "a missing field",
            vec![(
                "c2",
                "QuantityChanged",
                json!({"sku": "pear"}).to_string(),
                at,
            )],
            0,
            RejectionKind::InvalidData,
            "missing field `quantity`",
        ),
        (
            "an append time that is not UTC",
            vec![("c2", "CheckedOut", "{}".into(), "2026-12-07T01:00:00+01:00")],
            0,
            RejectionKind::InvalidData,
            "not an RFC 3339 time in UTC",
        ),
        (
            "items added to a cart checked out",
            vec![
                ("c2", "ItemAdded", item(json!(1)), at),
                ("c1", "ItemAdded", item(json!(1)), at),
            ],
            1,
            RejectionKind::RuleViolation,
            "cannot add items to a cart that is checked out",
        ),
        (
            "a cart never opened",
            vec![("c9", "CheckedOut", "{}".into(), at)],
            0,
            RejectionKind::RuleViolation,
            "cannot check out a cart before CartOpened",
        ),
        (
            "an empty cart checked out",
            vec![
                ("c5", "CartOpened", json!({"customer": "e"}).to_string(), at),
                ("c5", "CheckedOut", "{}".into(), at),
            ],
            1,
            RejectionKind::RuleViolation,
            "cannot check out an empty cart",
        ),
        (
            "more removed than the cart holds",
            vec![(
                "c2",
                "ItemRemoved",
                json!({"sku": "pear", "quantity": 2}).to_string(),
                at,
            )],
            0,
            RejectionKind::RuleViolation,
            r#"cannot remove 2 of sku "pear": the cart holds 1"#,
        ),
        (
            "a day document it cannot read",
            vec![("c3", "CartAbandoned", "{}".into(), "2026-12-08T00:00:00Z")],
            0,
            RejectionKind::InvalidDocument,
            "day/2026-12-08",
        ),
    ];
    let first_day: Vec<_> = two_days()
        .into_iter()
        .filter(|e| e.timestamp.starts_with("2026-12-06"))
        .collect();
    for (what, events, index, kind, says) in table {
        let model = Model::default();
        model.apply(&p, &first_day).unwrap();
        model.0.lock().unwrap().insert(
            "day/2026-12-08".into(),
            r#"{"day": "2026-12-08", "carts_opened": "many"}"#.into(),
        );
        let before = model.texts();
        let batch = category("cart", &events);
        let err = model.apply(&p, &batch).expect_err(what);
        let (got_kind, got_index, message) = refusal(&err);
        assert_eq!((got_kind, got_index), (kind, index), "{what}: {err}");
        assert!(message.contains(says), "{what}: {message}");
        assert_eq!(model.texts(), before, "{what}: nothing written");
    }
}
