//! Projections' store half: commits with their checkpoint in one step, leases with
//! fencing tokens, pages of documents, dead letters, failures, the change stream,
//! rebuilds, dropping a version, the registry's pointers, the bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use streamfold_store::{
    ChangeOp, Checkpoint, CommitBatch, DeadLetter, DocWrite, ErrorKind, EventStore,
    ExpectedRevision, Lease, MAX_COMMIT_WRITES, MAX_DOC_BYTES, MAX_DOC_PAGE, Pointer,
    ProjectionFailure, ProjectionVersion, RecordedEvent,
};
use streamfold_test_support::{Backend, Env, counted_events, eventually, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(30);

async fn env() -> Env {
    Env::start_with(|c| c.partitions_for("order", 3).prefix("pj")).await
}

fn ckpt(pairs: &[(&str, &str)]) -> Checkpoint {
    pairs
        .iter()
        .map(|(s, p)| ((*s).to_owned(), (*p).to_owned()))
        .collect()
}

async fn leased(s: &EventStore, name: &str, vid: &str) -> (ProjectionVersion, Lease) {
    let v = s.projection(name, vid).unwrap();
    let lease = v.acquire_lease("host-a", TTL).await.unwrap().unwrap();
    (v, lease)
}

/// Every key, document, index entry, checkpoint position and change of a version, read
/// raw: what a refused commit must leave as it was.
async fn everything(env: &Env, v: &ProjectionVersion) -> (Vec<String>, String) {
    let mut con = env.raw().await;
    let tag = format!("pj:pj:{{{}:{}}}", v.name(), v.vid());
    let docs: BTreeMap<String, String> = con.hgetall(format!("{tag}:docs")).await.unwrap();
    let keys: Vec<String> = con.zrange(format!("{tag}:keys"), 0, -1).await.unwrap();
    let ck: BTreeMap<String, String> = con.hgetall(format!("{tag}:ckpt")).await.unwrap();
    let changes = env.stream_entries(&format!("{tag}:changes")).await;
    let dead = env.xlen(&format!("{tag}:dead")).await;
    let status = v.status().await.unwrap();
    (
        keys,
        format!(
            "{docs:?} {ck:?} {changes:?} {dead} {} {}",
            status.events, status.commits
        ),
    )
}

#[tokio::test]
async fn a_commit_applies_writes_and_checkpoint_together_and_a_stale_one_changes_nothing() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    assert!(v.checkpoint().await.unwrap().is_empty());

    let first = v
        .commit(
            &lease,
            &CommitBatch {
                expected: Checkpoint::new(),
                advance: ckpt(&[("s:a", "5-0"), ("s:b", "7-1")]),
                events: 4,
                writes: vec![
                    DocWrite::put("o1", r#"{"n":1}"#, "5-0"),
                    DocWrite::put("o2", r#"{"n":2}"#, "7-1"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.checkpoint, ckpt(&[("s:a", "5-0"), ("s:b", "7-1")]));
    assert_eq!(first.changed, 2);
    assert!(!first.already_committed);
    assert_eq!(v.checkpoint().await.unwrap(), first.checkpoint);
    assert_eq!(v.get("o1").await.unwrap().as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(v.get("nope").await.unwrap(), None);

    let second = v
        .commit(
            &lease,
            &CommitBatch {
                expected: first.checkpoint.clone(),
                advance: ckpt(&[("s:a", "9-0")]),
                events: 1,
                writes: vec![DocWrite::put("o1", r#"{"n":10}"#, "9-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.checkpoint, ckpt(&[("s:a", "9-0"), ("s:b", "7-1")]));

    // The first batch again (a runner that did not see the second commit).
    let before = everything(&env, &v).await;
    let err = v
        .commit(
            &lease,
            &CommitBatch {
                expected: first.checkpoint.clone(),
                advance: ckpt(&[("s:a", "9-0")]),
                events: 1,
                writes: vec![
                    DocWrite::put("o1", r#"{"n":99}"#, "9-0"),
                    DocWrite::delete("o2", "9-0"),
                ],
                dead_letters: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(!err.is_fenced());
    assert_eq!(everything(&env, &v).await, before);
    assert_eq!(v.get("o1").await.unwrap().as_deref(), Some(r#"{"n":10}"#));

    let status = v.status().await.unwrap();
    assert_eq!((status.events, status.commits), (5, 2));
    assert!(status.last_commit_ms.is_some());
    assert_eq!(status.checkpoint, second.checkpoint);
    assert_eq!(status.lease.as_ref().unwrap().holder, "host-a");
    assert_eq!(status.lease.as_ref().unwrap().token, lease.token);
    assert!(status.failure.is_none());
}

#[tokio::test]
async fn a_lost_lease_can_never_commit_again() {
    let env = env().await;
    let s = &env.store;
    let v = s.projection("orders", "v1").unwrap();
    let a = v
        .acquire_lease("host-a", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    // Held: another host cannot take it, the holder can renew it.
    assert_eq!(v.acquire_lease("host-b", TTL).await.unwrap(), None);
    assert!(v.renew_lease(&a, Duration::from_millis(300)).await.unwrap());
    let b = wait_until("the lease to expire", DEADLINE, || async {
        v.acquire_lease("host-b", TTL).await.unwrap()
    })
    .await;
    assert!(b.token > a.token, "{} > {}", b.token, a.token);

    let before = everything(&env, &v).await;
    let err = v
        .commit(
            &a,
            &CommitBatch {
                advance: ckpt(&[("s:a", "1-0")]),
                events: 1,
                writes: vec![DocWrite::put("k", "1", "1-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Fenced);
    assert_eq!(everything(&env, &v).await, before);
    assert!(!v.renew_lease(&a, TTL).await.unwrap());
    assert!(!v.release_lease(&a).await.unwrap());

    v.commit(
        &b,
        &CommitBatch {
            advance: ckpt(&[("s:a", "1-0")]),
            events: 1,
            writes: vec![DocWrite::put("k", "1", "1-0")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(v.get("k").await.unwrap().as_deref(), Some("1"));

    // Released, another host takes it at once, with a larger token still.
    assert!(v.release_lease(&b).await.unwrap());
    let c = v.acquire_lease("host-c", TTL).await.unwrap().unwrap();
    assert!(c.token > b.token);
    // The same holder taking it again gets a new token, fencing its older self.
    let c2 = v.acquire_lease("host-c", TTL).await.unwrap().unwrap();
    assert!(c2.token > c.token);
    let err = v
        .commit(
            &c,
            &CommitBatch {
                expected: ckpt(&[("s:a", "1-0")]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // A lease of another version is not this one's.
    let other = s.projection("orders", "v2").unwrap();
    assert!(
        other
            .commit(&c2, &CommitBatch::default())
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

#[tokio::test]
async fn pages_follow_key_order_by_prefix_and_after() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let keys = [
        "a", "b:1", "b:10", "b:2", "b:3", "b;", "b", "c:1", "b:\u{e9}", "ba",
    ];
    v.commit(
        &lease,
        &CommitBatch {
            advance: ckpt(&[("s", "1-0")]),
            writes: keys
                .iter()
                .map(|k| DocWrite::put(*k, format!("{{\"k\":{k:?}}}"), "1-0"))
                .collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let keys_of = |p: &streamfold_store::DocPage| -> Vec<String> {
        p.docs.iter().map(|(k, _)| k.clone()).collect()
    };

    let all = v.page("", None, MAX_DOC_PAGE).await.unwrap();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort(); // bytes order, as Redis compares
    assert_eq!(keys_of(&all), sorted);
    assert_eq!(all.next_after, None);
    assert!(all.head.is_some());
    assert_eq!(all.docs[0].1, r#"{"k":"a"}"#);

    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page = v.page("b:", after.as_deref(), 2).await.unwrap();
        assert!(page.docs.len() <= 2);
        got.extend(keys_of(&page));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(got, ["b:1", "b:10", "b:2", "b:3", "b:\u{e9}"]);

    // `after` before the prefix starts at the prefix; after its last key, nothing.
    let page = v.page("b:", Some("a"), 10).await.unwrap();
    assert_eq!(keys_of(&page)[0], "b:1");
    let page = v.page("b:", Some("b:\u{e9}"), 10).await.unwrap();
    assert!(page.docs.is_empty());
    assert_eq!(page.next_after, None);
    // A prefix nothing has.
    assert!(v.page("zz", None, 10).await.unwrap().docs.is_empty());
    // An exact fit: no next page announced.
    let page = v.page("c", None, 1).await.unwrap();
    assert_eq!(
        (keys_of(&page), page.next_after),
        (vec!["c:1".to_owned()], None)
    );
}

#[tokio::test]
async fn a_delete_removes_the_document_and_its_index_entry() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                writes: vec![
                    DocWrite::put("x", "1", "1-0"),
                    DocWrite::put("y", "2", "1-0"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let two = v
        .commit(
            &lease,
            &CommitBatch {
                expected: one.checkpoint,
                advance: ckpt(&[("s", "2-0")]),
                writes: vec![
                    DocWrite::delete("x", "2-0"),
                    DocWrite::delete("never", "2-0"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        two.changed, 1,
        "deleting a missing document changes nothing"
    );
    assert_eq!(v.get("x").await.unwrap(), None);
    let mut con = env.raw().await;
    let index: Vec<String> = con.zrange("pj:pj:{orders:v1}:keys", 0, -1).await.unwrap();
    assert_eq!(index, ["y"]);
    let page = v.page("", None, 10).await.unwrap();
    assert_eq!(page.docs, [("y".to_owned(), "2".to_owned())]);
}

fn event(position: &str, id: &str) -> RecordedEvent {
    RecordedEvent {
        event_id: format!("e-{position}"),
        aggregate_type: "order".into(),
        aggregate_id: id.into(),
        event_type: "Placed".into(),
        data: r#"{"bad":true}"#.into(),
        timestamp: "2026-01-01T00:00:00Z".into(),
        version: "1".into(),
        revision: 3,
        position: position.into(),
    }
}

#[tokio::test]
async fn dead_letters_and_failures_are_committed_with_the_batch() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let letter = DeadLetter {
        stream: "s".into(),
        event: event("2-0", "o7"),
        error: "no such field: total".into(),
    };
    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "3-0")]),
                events: 3,
                writes: vec![DocWrite::put("o1", "{}", "1-0")],
                dead_letters: vec![letter.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dead = v.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].letter, letter);
    assert!(
        v.dead_letters(Some(&dead[0].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let status = v.status().await.unwrap();
    assert_eq!((status.dead_letters, status.dead_letters_total), (1, 1));
    assert_eq!(status.events, 3);

    // Stopping at an event: the failure is recorded, the checkpoint stays before it.
    let failure = ProjectionFailure::on("s", &event("4-0", "o9"), "division by zero");
    v.commit(
        &lease,
        &CommitBatch {
            expected: one.checkpoint.clone(),
            failure: Some(failure.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let status = v.status().await.unwrap();
    let recorded = status.failure.unwrap();
    assert_eq!(
        (
            recorded.aggregate_id.as_str(),
            recorded.position.as_str(),
            recorded.error.as_str(),
            recorded.event_id.as_str()
        ),
        ("o9", "4-0", "division by zero", "e-4-0")
    );
    assert!(recorded.at_ms > 0);
    assert_eq!(status.checkpoint, one.checkpoint);
    // Reads keep serving the last committed state.
    assert_eq!(v.get("o1").await.unwrap().as_deref(), Some("{}"));

    // Moving on (the projection was fixed) clears it.
    v.commit(
        &lease,
        &CommitBatch {
            expected: one.checkpoint,
            advance: ckpt(&[("s", "4-0")]),
            events: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(v.status().await.unwrap().failure.is_none());
}

#[tokio::test]
async fn every_change_is_in_the_change_stream_and_readable_after_a_position() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let mut feed = v
        .watch_changes(None, 100, Duration::from_millis(200))
        .unwrap();
    let quiet = feed.next().await.unwrap();
    assert!(quiet.changes.is_empty() && !quiet.missed);

    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                writes: vec![
                    DocWrite::put("a", "1", "1-0"),
                    DocWrite::put("b", "1", "1-0"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let two = v
        .commit(
            &lease,
            &CommitBatch {
                expected: one.checkpoint.clone(),
                advance: ckpt(&[("s", "2-5")]),
                writes: vec![
                    DocWrite::put("a", "1", "2-5"), // the same document: no change
                    DocWrite::put("b", "2", "2-5"),
                    DocWrite::delete("a", "2-5"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(two.changed, 2);

    let all = v.changes(None, 100).await.unwrap();
    let seen: Vec<(&str, ChangeOp, &str)> = all
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.op, c.position.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", ChangeOp::Put, "1-0"),
            ("b", ChangeOp::Put, "1-0"),
            ("b", ChangeOp::Put, "2-5"),
            ("a", ChangeOp::Delete, "2-5"),
        ]
    );
    assert!(!all.missed);
    assert_eq!(all.next.as_deref(), two.last_change.as_deref());
    assert_eq!(v.head().await.unwrap(), two.last_change);
    let after_first = v.changes(one.last_change.as_deref(), 100).await.unwrap();
    assert_eq!(after_first.changes, all.changes[2..]);
    let none = v.changes(two.last_change.as_deref(), 100).await.unwrap();
    assert!(none.changes.is_empty());
    assert_eq!(none.next, two.last_change);

    // The feed hands out what was committed, then waits for the next commit.
    let got = feed.next().await.unwrap();
    assert_eq!(got.changes, all.changes);
    assert_eq!(feed.position(), two.last_change.as_deref());
    let (v2, lease2, expected) = (v.clone(), lease.clone(), two.checkpoint.clone());
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        v2.commit(
            &lease2,
            &CommitBatch {
                expected,
                advance: ckpt(&[("s", "3-0")]),
                writes: vec![DocWrite::put("c", "3", "3-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap()
    });
    let mut live = Vec::new();
    while live.is_empty() {
        live = feed.next().await.unwrap().changes;
    }
    let three = writer.await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].key, "c");
    assert_eq!(Some(&live[0].id), three.last_change.as_ref());

    // A capped stream: a reader behind the trim is told it missed changes.
    let mut expected = three.checkpoint;
    for i in 0..300u32 {
        let pos = format!("{}-0", 10 + i);
        expected = v
            .commit(
                &lease,
                &CommitBatch {
                    expected,
                    advance: ckpt(&[("s", &pos)]),
                    writes: vec![DocWrite::put("n", i.to_string(), &pos)],
                    changes_max_len: Some(10),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .checkpoint;
    }
    let behind = v.changes(three.last_change.as_deref(), 10).await.unwrap();
    assert!(behind.missed);
    let kept = v.changes(None, 1000).await.unwrap().changes.len();
    assert!(kept < 300, "the change stream is capped, it keeps {kept}");
}

#[tokio::test]
async fn a_reset_starts_the_version_over_and_fences_its_holder() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                events: 1,
                writes: vec![DocWrite::put("a", "1", "1-0")],
                dead_letters: vec![DeadLetter {
                    stream: "s".into(),
                    event: event("1-0", "o1"),
                    error: "x".into(),
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reset = v.reset().await.unwrap();
    assert!(v.checkpoint().await.unwrap().is_empty());
    assert_eq!(v.get("a").await.unwrap(), None);
    let status = v.status().await.unwrap();
    assert_eq!(
        (status.events, status.dead_letters, status.lease),
        (0, 0, None)
    );
    assert_eq!(status.head.as_deref(), Some(reset.as_str()));
    let err = v
        .commit(
            &lease,
            &CommitBatch {
                expected: one.checkpoint,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // A reader that had every change sees the reset; one that had not, missed some.
    let page = v.changes(one.last_change.as_deref(), 10).await.unwrap();
    assert!(!page.missed);
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].op, ChangeOp::Reset);
    assert_eq!(page.changes[0].id, reset);
    let page = v.changes(Some("0-1"), 10).await.unwrap();
    assert!(page.missed);
    assert_eq!(page.changes.len(), 1);
    // The runner starts again from position 0 with a new, larger token.
    let again = v.acquire_lease("host-a", TTL).await.unwrap().unwrap();
    assert!(again.token > lease.token);
    v.commit(
        &again,
        &CommitBatch {
            advance: ckpt(&[("s", "1-0")]),
            writes: vec![DocWrite::put("a", "2", "1-0")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(v.get("a").await.unwrap().as_deref(), Some("2"));
}

#[tokio::test]
async fn dropping_a_version_frees_every_key_and_keeps_tokens_growing() {
    let env = env().await;
    let s = &env.store;
    let (v1, l1) = leased(s, "orders", "v1").await;
    let (v2, l2) = leased(s, "orders", "v2").await;
    for (v, l) in [(&v1, &l1), (&v2, &l2)] {
        v.commit(
            l,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                writes: vec![DocWrite::put("a", "1", "1-0")],
                dead_letters: vec![DeadLetter {
                    stream: "s".into(),
                    event: event("1-0", "o1"),
                    error: "x".into(),
                }],
                failure: Some(ProjectionFailure::on("s", &event("2-0", "o2"), "boom")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(
        s.keys_with_prefix("pj:pj:{orders:v1}").await.unwrap().len(),
        8
    );
    v1.drop_version().await.unwrap();
    assert!(
        s.keys_with_prefix("pj:pj:{orders:v1}")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.keys_with_prefix("pj:pj:{orders:v2}").await.unwrap().len(),
        8
    );
    assert!(v1.get("a").await.unwrap().is_none());
    assert!(
        v1.commit(&l1, &CommitBatch::default())
            .await
            .unwrap_err()
            .is_fenced()
    );
    let again = v1.acquire_lease("host-a", TTL).await.unwrap().unwrap();
    assert!(again.token > l1.token, "{} > {}", again.token, l1.token);

    // Through the registry: refused while a pointer names it.
    s.register_projection_version("orders", "v2", r#"{"digest":"d2"}"#)
        .await
        .unwrap();
    s.set_projection_pointer("orders", Pointer::Serving, None, Some("v2"))
        .await
        .unwrap();
    let err = s
        .remove_projection_version("orders", "v2")
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    s.set_projection_pointer("orders", Pointer::Serving, Some("v2"), None)
        .await
        .unwrap();
    s.remove_projection_version("orders", "v2").await.unwrap();
    assert!(
        s.keys_with_prefix("pj:pj:")
            .await
            .unwrap()
            .iter()
            .all(|k| !k.contains("v2"))
    );
    assert!(
        s.projection_info("orders")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(s.list_projections().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_serving_pointer_moves_by_compare_and_set() {
    let env = env().await;
    let s = &env.store;
    assert!(
        s.register_projection_version("orders", "v1", "m1")
            .await
            .unwrap()
    );
    assert!(
        !s.register_projection_version("orders", "v1", "m1")
            .await
            .unwrap()
    );
    assert!(
        s.register_projection_version("orders", "v1", "other")
            .await
            .unwrap_err()
            .is_conflict()
    );
    s.register_projection_version("orders", "v2", "m2")
        .await
        .unwrap();
    s.register_projection_version("users", "u1", "m")
        .await
        .unwrap();

    let err = s
        .set_projection_pointer("orders", Pointer::Serving, None, Some("v9"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    s.set_projection_pointer("orders", Pointer::Serving, None, Some("v1"))
        .await
        .unwrap();
    s.set_projection_pointer("orders", Pointer::Active, None, Some("v2"))
        .await
        .unwrap();
    // Someone else switched first: refused, unchanged.
    let err = s
        .set_projection_pointer("orders", Pointer::Serving, None, Some("v2"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("v1"), "{err}");
    s.set_projection_pointer("orders", Pointer::Serving, Some("v1"), Some("v2"))
        .await
        .unwrap();
    // The same switch again (a retry after a lost reply) finds it done.
    s.set_projection_pointer("orders", Pointer::Serving, Some("v1"), Some("v2"))
        .await
        .unwrap();
    assert_eq!(
        s.projection_pointer("orders", Pointer::Serving)
            .await
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    // Rollback.
    s.set_projection_pointer("orders", Pointer::Serving, Some("v2"), Some("v1"))
        .await
        .unwrap();

    let info = s.projection_info("orders").await.unwrap();
    assert_eq!(info.serving.as_deref(), Some("v1"));
    assert_eq!(info.active.as_deref(), Some("v2"));
    assert_eq!(
        info.versions.into_iter().collect::<Vec<_>>(),
        [("v1".into(), "m1".into()), ("v2".into(), "m2".into())]
    );
    let names: Vec<String> = s
        .list_projections()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["orders", "users"]);
}

#[tokio::test]
async fn out_of_bounds_input_is_refused_before_anything_is_written() {
    let env = env().await;
    let s = &env.store;
    for (name, vid) in [
        ("", "v"),
        ("a b", "v"),
        ("a{", "v"),
        ("n", ""),
        ("n", "a:b"),
    ] {
        assert!(s.projection(name, vid).unwrap_err().is_invalid_input());
    }
    let (v, lease) = leased(s, "orders", "v1").await;
    assert!(
        v.acquire_lease("with space", TTL)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(
        v.acquire_lease("h", Duration::from_secs(3600))
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    let before = everything(&env, &v).await;
    let bad = |batch: CommitBatch| {
        let (v, lease) = (v.clone(), lease.clone());
        async move { v.commit(&lease, &batch).await.unwrap_err() }
    };
    let one = |w: DocWrite| CommitBatch {
        advance: ckpt(&[("s", "1-0")]),
        writes: vec![w],
        ..Default::default()
    };
    for err in [
        bad(one(DocWrite::put("k", "not json", "1-0"))).await,
        bad(one(DocWrite::put("", "1", "1-0"))).await,
        bad(one(DocWrite::put("k".repeat(2000), "1", "1-0"))).await,
        bad(one(DocWrite::put("k", "1", "later"))).await,
        bad(one(DocWrite::put(
            "k",
            format!("\"{}\"", "x".repeat(MAX_DOC_BYTES)),
            "1-0",
        )))
        .await,
        bad(CommitBatch {
            writes: (0..=MAX_COMMIT_WRITES)
                .map(|i| DocWrite::put(i.to_string(), "1", "1-0"))
                .collect(),
            ..Default::default()
        })
        .await,
        bad(CommitBatch {
            expected: ckpt(&[("s", "5-0")]),
            advance: ckpt(&[("s", "4-0")]),
            ..Default::default()
        })
        .await,
        bad(CommitBatch {
            advance: ckpt(&[("has space", "4-0")]),
            ..Default::default()
        })
        .await,
        bad(CommitBatch {
            failure: Some(ProjectionFailure::on(
                "s",
                &event("1-0", "o"),
                "e".repeat(5000),
            )),
            ..Default::default()
        })
        .await,
        bad(CommitBatch {
            changes_max_len: Some(0),
            ..Default::default()
        })
        .await,
        // Many documents under the per-document limit, over the per-commit one.
        bad(CommitBatch {
            writes: (0..20)
                .map(|i| {
                    DocWrite::put(
                        i.to_string(),
                        format!("\"{}\"", "x".repeat((1 << 20) - 8)),
                        "1-0",
                    )
                })
                .collect(),
            ..Default::default()
        })
        .await,
    ] {
        assert!(err.is_invalid_input(), "{err}");
    }
    assert_eq!(everything(&env, &v).await, before);
    assert!(v.page("", None, 0).await.unwrap_err().is_invalid_input());
    assert!(
        v.page("", None, MAX_DOC_PAGE + 1)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(
        v.changes(Some("x"), 10)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(v.changes(None, 0).await.unwrap_err().is_invalid_input());
    assert!(v.get("").await.unwrap_err().is_invalid_input());
    assert!(
        s.register_projection_version("orders", "v1", &"m".repeat(70_000))
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

/// Runners that take over from each other (one "crashes" after every few batches:
/// it drops its lease without releasing it, sometimes after reading and applying a
/// batch it never commits) fold every event exactly once: a count per aggregate, and
/// a total, match what was appended.
#[tokio::test]
async fn runners_taking_over_from_each_other_apply_every_event_exactly_once() {
    let env = env().await;
    let s = &env.store;
    for i in 0..12 {
        s.append(
            "order",
            &format!("o{i}"),
            counted_events(1, 10),
            ExpectedRevision::Any,
        )
        .await
        .unwrap();
    }
    s.append("user", "u1", counted_events(1, 5), ExpectedRevision::Any)
        .await
        .unwrap();
    let sources = s.projection_sources(&["order", "user"]).await.unwrap();
    assert_eq!(sources.len(), 4);
    assert!(
        s.trimmed_projection_sources(&sources, &Checkpoint::new())
            .await
            .unwrap()
            .is_empty()
    );
    let v = s.projection("counts", "v1").unwrap();

    let mut round = 0u32;
    loop {
        round += 1;
        assert!(round < 200, "the runners never finished");
        let holder = format!("runner-{round}");
        // The last holder crashed: wait for its lease to expire.
        let lease = wait_until("the lease", DEADLINE, || async {
            v.acquire_lease(&holder, Duration::from_millis(150))
                .await
                .unwrap()
        })
        .await;
        let mut checkpoint = v.checkpoint().await.unwrap();
        let mut done = false;
        for batch in 0..3 {
            let events = s
                .read_projection_sources(&sources, &checkpoint, 7)
                .await
                .unwrap();
            if events.is_empty() {
                done = true;
                break;
            }
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut advance = Checkpoint::new();
            for e in &events {
                *counts.entry(e.event.aggregate_id.clone()).or_default() += 1;
                *counts.entry("total".into()).or_default() += 1;
                advance.insert(e.stream.clone(), e.event.position.clone());
            }
            let mut writes = Vec::new();
            for (key, n) in counts {
                let old: u64 = v.get(&key).await.unwrap().map_or(0, |d| d.parse().unwrap());
                writes.push(DocWrite::put(key, (old + n).to_string(), "1-0"));
            }
            // This runner crashes before committing its third batch on odd rounds.
            if round % 2 == 1 && batch == 2 {
                break;
            }
            match v
                .commit(
                    &lease,
                    &CommitBatch {
                        expected: checkpoint.clone(),
                        advance,
                        events: events.len() as u64,
                        writes,
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(outcome) => checkpoint = outcome.checkpoint,
                Err(e) if e.is_fenced() => break,
                Err(e) => panic!("{e}"),
            }
        }
        if done {
            break;
        }
    }
    let status = v.status().await.unwrap();
    assert_eq!(status.events, 125);
    assert_eq!(v.get("total").await.unwrap().as_deref(), Some("125"));
    for i in 0..12 {
        assert_eq!(
            v.get(&format!("o{i}")).await.unwrap().as_deref(),
            Some("10"),
            "o{i}"
        );
    }
    assert_eq!(v.get("u1").await.unwrap().as_deref(), Some("5"));
    assert_eq!(status.checkpoint.len(), 4);

    // Lag: caught up everywhere, until an event is appended.
    let lag = s
        .projection_lag(&sources, &status.checkpoint)
        .await
        .unwrap();
    assert!(
        lag.iter().all(|l| l.caught_up && l.behind_ms == 0),
        "{lag:?}"
    );
    let more = s
        .append("user", "u1", counted_events(6, 1), ExpectedRevision::Any)
        .await
        .unwrap();
    let lag = s
        .projection_lag(&sources, &status.checkpoint)
        .await
        .unwrap();
    let behind: Vec<_> = lag.iter().filter(|l| !l.caught_up).collect();
    assert_eq!(behind.len(), 1);
    assert_eq!(behind[0].head.as_ref(), more.positions.last());
    let lag = s
        .projection_lag(&sources, &Checkpoint::new())
        .await
        .unwrap();
    assert!(lag.iter().all(|l| !l.caught_up && l.position.is_none()));

    // A category trimmed past a checkpoint is reported.
    let user = sources.iter().find(|s| s.aggregate_type == "user").unwrap();
    let mut con = env.raw().await;
    let _: u64 = redis::cmd("XTRIM")
        .arg(&user.key)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        s.trimmed_projection_sources(&sources, &status.checkpoint)
            .await
            .unwrap(),
        std::slice::from_ref(user),
        "the event appended last was trimmed before it was applied"
    );
    let mut caught_up = status.checkpoint.clone();
    caught_up.insert(user.key.clone(), more.positions.last().unwrap().clone());
    assert!(
        s.trimmed_projection_sources(&sources, &caught_up)
            .await
            .unwrap()
            .is_empty(),
        "everything trimmed had been applied"
    );
    let trimmed = s
        .trimmed_projection_sources(&sources, &Checkpoint::new())
        .await
        .unwrap();
    assert_eq!(trimmed, std::slice::from_ref(user));
}

#[tokio::test]
async fn a_key_of_another_kind_fails_the_commit_before_anything_is_written() {
    let env = env().await;
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                writes: vec![DocWrite::put("a", "1", "1-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut con = env.raw().await;
    let _: () = con
        .set("pj:pj:{orders:v1}:dead", "not a stream")
        .await
        .unwrap();
    let stat = "pj:pj:{orders:v1}:stat";
    let before: BTreeMap<String, String> = con.hgetall(stat).await.unwrap();
    let err = v
        .commit(
            &lease,
            &CommitBatch {
                expected: one.checkpoint.clone(),
                advance: ckpt(&[("s", "2-0")]),
                writes: vec![DocWrite::put("a", "2", "2-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    let after: BTreeMap<String, String> = con.hgetall(stat).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(env.xlen("pj:pj:{orders:v1}:changes").await, 1);
    assert_eq!(v.get("a").await.unwrap().as_deref(), Some("1"));
    assert_eq!(v.checkpoint().await.unwrap(), one.checkpoint);
}

/// Redis restarted from a snapshot taken between two commits: the read model, the
/// checkpoint and the counters come back together (one commit is one step in the
/// snapshot, as in an AOF or on a replica), so the runner re-applies exactly what
/// was lost. The name holds "restart": `./dev test` runs it on a single Redis only.
#[tokio::test]
async fn after_a_redis_restart_the_read_model_and_checkpoint_still_agree() {
    let mut env = env().await;
    if env.backend() == Backend::Cluster {
        return; // about one redis-server
    }
    let (v, lease) = leased(&env.store, "orders", "v1").await;
    let one = v
        .commit(
            &lease,
            &CommitBatch {
                advance: ckpt(&[("s", "1-0")]),
                events: 1,
                writes: vec![DocWrite::put("a", "1", "1-0")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut con = env.raw().await;
    let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    let two = v
        .commit(
            &lease,
            &CommitBatch {
                expected: one.checkpoint.clone(),
                advance: ckpt(&[("s", "2-0")]),
                events: 1,
                writes: vec![
                    DocWrite::put("a", "2", "2-0"),
                    DocWrite::put("b", "1", "2-0"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();

    env.redis_mut().start_again().unwrap();
    let checkpoint = eventually(50, Duration::from_millis(100), || v.checkpoint())
        .await
        .unwrap();
    assert_eq!(checkpoint, one.checkpoint);
    assert_eq!(v.get("a").await.unwrap().as_deref(), Some("1"));
    assert_eq!(v.get("b").await.unwrap(), None);
    let status = v.status().await.unwrap();
    assert_eq!((status.events, status.commits), (1, 1));
    // The lease came back with the snapshot: its holder re-applies the lost batch; a
    // batch that expects the lost checkpoint is refused.
    let err = v
        .commit(
            &lease,
            &CommitBatch {
                expected: two.checkpoint.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let again = v
        .commit(
            &lease,
            &CommitBatch {
                expected: checkpoint,
                advance: ckpt(&[("s", "2-0")]),
                events: 1,
                writes: vec![
                    DocWrite::put("a", "2", "2-0"),
                    DocWrite::put("b", "1", "2-0"),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.checkpoint, two.checkpoint);
    assert_eq!(v.status().await.unwrap().events, 2);
}
