//! Reading histories: in bounded pages, from a revision, after a position (where a
//! snapshot left off), and payloads larger than the read buffer.

use serde_json::json;
use streamfold_store::{ExpectedRevision, NewEvent, ReadOptions, RecordedEvent};
use streamfold_test_support::{Env, counted_events, revisions};

/// A store reading in pages of 7, and `user/1` with 50 events numbered 1..=50.
async fn fifty_events_in_pages_of_seven() -> Env {
    let env = Env::start_with(|c| c.page_size(7)).await;
    env.store
        .append(
            "user",
            "1",
            counted_events(1, 50),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    env
}

#[tokio::test]
async fn history_pages_over_a_stream_longer_than_one_page() {
    let env = fifty_events_in_pages_of_seven().await;
    let s = &env.store;
    let mut history = s.history("user", "1", ReadOptions::default());
    let mut pages = Vec::new();
    while let Some(page) = history.next_page().await.unwrap() {
        assert!(
            !page.is_empty() && page.len() <= 7,
            "page of {}",
            page.len()
        );
        pages.push(page);
    }
    assert_eq!(pages.len(), 8, "50 events in pages of 7");
    assert!(history.next_page().await.unwrap().is_none(), "stays done");
    let all: Vec<RecordedEvent> = pages.iter().flat_map(|p| p.to_events()).collect();
    assert_eq!(revisions(&all), (1..=50).collect::<Vec<_>>());
    for (e, n) in all.iter().zip(1u64..) {
        assert_eq!(e.data_value().unwrap()["n"], n, "in order");
    }
}

#[tokio::test]
async fn the_page_size_of_a_read_overrides_the_stores() {
    let env = fifty_events_in_pages_of_seven().await;
    let mut history = env
        .store
        .history("user", "1", ReadOptions::default().page_size(20));
    assert_eq!(history.next_page().await.unwrap().unwrap().len(), 20);
}

#[tokio::test]
async fn reading_from_a_revision_skips_the_earlier_ones() {
    let env = fifty_events_in_pages_of_seven().await;
    let s = &env.store;
    let from = s
        .read_all("user", "1", ReadOptions::default().from_revision(20))
        .await
        .unwrap();
    assert_eq!(revisions(&from), (20..=50).collect::<Vec<_>>());
    assert!(
        s.read_all("user", "1", ReadOptions::default().from_revision(51))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn reading_a_window_from_one_revision_to_another() {
    let env = fifty_events_in_pages_of_seven().await;
    let window = env
        .store
        .read_all(
            "user",
            "1",
            ReadOptions::default().from_revision(9).to_revision(23),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&window), (9..=23).collect::<Vec<_>>());
}

/// `after(position, revision)`: what a snapshot gives, without reading what it covers.
#[tokio::test]
async fn reading_after_a_position_continues_at_the_next_revision() {
    let env = fifty_events_in_pages_of_seven().await;
    let s = &env.store;
    let all = s
        .read_all("user", "1", ReadOptions::default())
        .await
        .unwrap();
    let at30 = &all[29];
    let tail = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().after(at30.position.clone(), 30),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&tail), (31..=50).collect::<Vec<_>>());
    assert_eq!(tail[0].position, all[30].position);
}

#[tokio::test]
async fn reading_after_something_that_is_not_a_position_is_invalid() {
    let env = fifty_events_in_pages_of_seven().await;
    let bad = env
        .store
        .read_all("user", "1", ReadOptions::default().after("+", 1))
        .await
        .unwrap_err();
    assert!(bad.is_invalid_input(), "{bad}");
}

/// Replies much larger than the read connection's buffer (a page of three 2 MB
/// payloads, then a small one on the same pooled connection) come back byte for byte.
#[tokio::test]
async fn large_payloads_read_back_exactly() {
    let env = Env::start().await;
    let s = &env.store;
    let big = |n: u64| {
        let text: String = (0..2 << 20)
            .map(|i| char::from(b'a' + ((i + n) % 26) as u8))
            .collect();
        NewEvent::new("Big", &json!({ "n": n, "text": text }))
    };
    let events: Vec<NewEvent> = (1..=3).map(big).collect();
    let sent: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    s.append("blob", "1", events, ExpectedRevision::NoStream)
        .await
        .unwrap();
    s.append(
        "blob",
        "2",
        counted_events(1, 2),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let got = s
            .read_all("blob", "1", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), sent);
        let small = s
            .read_all("blob", "2", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(revisions(&small), [1, 2]);
    }
}
