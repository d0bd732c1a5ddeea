//! Category partitions, the category feed read in steps, and listing a type's
//! aggregate ids.

use streamfold_store::{CategoryReadOptions, ExpectedRevision, IdsPageOptions};
use streamfold_test_support::{Env, counted_events, event_ids};

/// A store with prefix `shop` and 4 category partitions for `order`; orders `o0`..`o19`
/// with two events each, and one `user`, `u1`.
pub(crate) async fn twenty_orders_in_four_partitions() -> Env {
    let env = Env::start_with(|c| c.partitions_for("order", 4).prefix("shop")).await;
    let s = &env.store;
    for i in 0..20 {
        s.append(
            "order",
            &format!("o{i}"),
            counted_events(1, 2),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    }
    s.append(
        "user",
        "u1",
        counted_events(1, 1),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    env
}

#[tokio::test]
async fn partitions_split_the_category_stream_by_aggregate() {
    let env = twenty_orders_in_four_partitions().await;
    let s = &env.store;
    let mut per_partition = 0;
    let mut used = 0;
    for p in 0..4 {
        let events = s
            .read_category("order", CategoryReadOptions::default().partition(p))
            .await
            .unwrap();
        for e in &events {
            assert_eq!(s.keys("order", &e.aggregate_id).unwrap().partition, p);
            assert!(
                s.keys("order", &e.aggregate_id)
                    .unwrap()
                    .stream
                    .starts_with(&format!("shop:{{order:{p}}}:"))
            );
        }
        used += usize::from(!events.is_empty());
        per_partition += events.len();
    }
    assert_eq!(per_partition, 40);
    assert!(used >= 2, "20 ids spread over partitions");
}

#[tokio::test]
async fn reading_a_partition_past_the_types_count_is_invalid() {
    let env = twenty_orders_in_four_partitions().await;
    assert!(
        env.store
            .read_category("order", CategoryReadOptions::default().partition(4))
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

#[tokio::test]
async fn the_aggregate_ids_of_a_type_can_be_listed() {
    let env = twenty_orders_in_four_partitions().await;
    let s = &env.store;
    let mut listed = s.aggregate_ids("order", None).await.unwrap();
    listed.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(s.aggregate_ids("order", Some(5)).await.unwrap().len(), 5);
    assert_eq!(s.aggregate_ids("user", None).await.unwrap(), ["u1"]);
}

/// Every id of `order`, walking pages of `options` (with their cursors) to the end.
async fn walk(env: &Env, options: IdsPageOptions) -> Vec<String> {
    let mut ids = Vec::new();
    let mut options = options;
    for _ in 0..1000 {
        let page = env
            .store
            .aggregate_ids_page("order", options.clone())
            .await
            .unwrap();
        ids.extend(page.ids);
        match page.next_cursor {
            Some(c) => options = options.cursor(c),
            None => {
                ids.sort();
                return ids;
            }
        }
    }
    panic!("the walk never ended");
}

#[tokio::test]
async fn aggregate_ids_page_through_every_partition_once_and_by_prefix() {
    let env = twenty_orders_in_four_partitions().await;
    let mut want: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
    want.sort();
    // Small pages: each id once, across the four partitions.
    assert_eq!(walk(&env, IdsPageOptions::new().count(3)).await, want);
    assert_eq!(walk(&env, IdsPageOptions::new().count(1000)).await, want);
    // A prefix: o1, o10..o19.
    let ones: Vec<String> = want
        .iter()
        .filter(|id| id.starts_with("o1"))
        .cloned()
        .collect();
    assert_eq!(ones.len(), 11);
    assert_eq!(
        walk(&env, IdsPageOptions::new().prefix("o1").count(2)).await,
        ones
    );
    // A prefix with glob characters is taken literally.
    assert!(
        walk(&env, IdsPageOptions::new().prefix("o*"))
            .await
            .is_empty()
    );
    // A cursor past the partitions ends the walk; a malformed one is invalid input.
    let past = env
        .store
        .aggregate_ids_page("order", IdsPageOptions::new().cursor("4-0"))
        .await
        .unwrap();
    assert_eq!((past.ids.len(), past.next_cursor), (0, None));
    let bad = env
        .store
        .aggregate_ids_page("order", IdsPageOptions::new().cursor("x"))
        .await
        .unwrap_err();
    assert!(bad.is_invalid_input(), "{bad}");
    // The types with events, with their partition counts.
    assert_eq!(
        env.store.aggregate_types().await.unwrap(),
        [("order".to_owned(), 4), ("user".to_owned(), 1)]
    );
}

/// Reading the category feed in steps, after the last position seen.
#[tokio::test]
async fn the_category_feed_reads_in_steps_after_the_last_position_seen() {
    let env = twenty_orders_in_four_partitions().await;
    let s = &env.store;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut opts = CategoryReadOptions::default().partition(0).count(3);
        if let Some(p) = &after {
            opts = opts.after(p.clone());
        }
        let page = s.read_category("order", opts).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.position.clone());
        seen.extend(page);
    }
    let whole = s
        .read_category("order", CategoryReadOptions::default().partition(0))
        .await
        .unwrap();
    assert!(
        whole.len() > 3,
        "partition 0 has more than one step: {}",
        whole.len()
    );
    assert_eq!(event_ids(&seen), event_ids(&whole));
}

#[tokio::test]
async fn a_types_partition_count_is_recorded_and_a_store_configured_otherwise_is_refused() {
    let env = twenty_orders_in_four_partitions().await;
    // Another host with 2 partitions for `order` would look for o1 under another key.
    let other = env
        .store_with(
            streamfold_store::StoreConfig::default()
                .prefix("shop")
                .partitions_for("order", 2),
        )
        .await;
    let e = other
        .append("order", "o1", counted_events(3, 1), ExpectedRevision::Any)
        .await
        .unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
    assert!(
        e.to_string().contains("first written with 4 partition(s)"),
        "{e}"
    );
    let e = other
        .read_all("order", "o1", streamfold_store::ReadOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_invalid_input(), "reads are refused too: {e}");
    assert_eq!(
        env.store.revision("order", "o1").await.unwrap(),
        2,
        "nothing was written"
    );
    // Other types keep their own count, and the same count is fine.
    other
        .append(
            "user",
            "u1",
            counted_events(2, 1),
            ExpectedRevision::Exact(1),
        )
        .await
        .unwrap();
    let same = env
        .store_with(
            streamfold_store::StoreConfig::default()
                .prefix("shop")
                .partitions_for("order", 4),
        )
        .await;
    same.append(
        "order",
        "o1",
        counted_events(3, 1),
        ExpectedRevision::Exact(2),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_partitioned_category_reads_as_one_feed_merged_by_stream_id() {
    let env = twenty_orders_in_four_partitions().await;
    let s = &env.store;
    let mut after: Option<String> = None;
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut positions: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let (events, next) = s
            .read_category_merged("order", after.as_deref(), 7)
            .await
            .unwrap();
        if events.is_empty() {
            break;
        }
        assert!(events.len() <= 7);
        assert_eq!(
            next.split(',').count(),
            4,
            "one position per partition: {next}"
        );
        for e in &events {
            seen.push((e.aggregate_id.clone(), e.revision));
            positions.push(e.position.clone());
        }
        after = Some(next);
        pages += 1;
        assert!(pages < 20, "the feed never ends");
    }
    assert_eq!(pages, 6, "40 events in pages of 7");
    let mut want: Vec<(String, u64)> = (0..20)
        .flat_map(|i| [(format!("o{i}"), 1), (format!("o{i}"), 2)])
        .collect();
    let mut got = seen.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every order event exactly once");
    // Each aggregate's events in revision order, and the feed in stream-id order.
    for i in 0..20 {
        let id = format!("o{i}");
        let revs: Vec<u64> = seen
            .iter()
            .filter(|(a, _)| *a == id)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(revs, [1, 2], "{id}");
    }
    let ids: Vec<(u64, u64)> = positions
        .iter()
        .map(|p| {
            let (ms, seq) = p.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "merged by stream id");
    // Nothing after the end; a new append shows up from the last position.
    s.append(
        "order",
        "o3",
        counted_events(3, 1),
        ExpectedRevision::Exact(2),
    )
    .await
    .unwrap();
    let (events, _) = s
        .read_category_merged("order", after.as_deref(), 7)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].aggregate_id.as_str(), events[0].revision),
        ("o3", 3)
    );
    // A position of another shape is refused.
    for bad in ["1-0", "1-0,2-0,3-0,4-0,5-0", "x,,,"] {
        let e = s
            .read_category_merged("order", Some(bad), 7)
            .await
            .unwrap_err();
        assert!(e.is_invalid_input(), "{bad}: {e}");
    }
    // A type with one partition: the position is the stream's.
    let (events, next) = s.read_category_merged("user", None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(next, events[0].position);
}
