//! Time travel: reading a history as it was at a revision or at an instant.

use chrono::Utc;
use streamfold_store::{ExpectedRevision, ReadOptions};
use streamfold_test_support::{Env, a_millisecond_after, counted_events, revisions};

#[tokio::test]
async fn as_of_reads_what_was_stored_by_that_instant() {
    let env = Env::start().await;
    let s = &env.store;
    s.append(
        "user",
        "1",
        counted_events(1, 3),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    // An instant strictly between the two appends' milliseconds, waited for.
    let between = a_millisecond_after(Utc::now()).await;
    a_millisecond_after(between).await;
    s.append(
        "user",
        "1",
        counted_events(4, 2),
        ExpectedRevision::Exact(3),
    )
    .await
    .unwrap();

    let as_of = s
        .read_all("user", "1", ReadOptions::default().as_of(between))
        .await
        .unwrap();
    assert_eq!(revisions(&as_of), [1, 2, 3]);
    let before_all = between - chrono::Duration::hours(1);
    assert!(
        s.read_all("user", "1", ReadOptions::default().as_of(before_all))
            .await
            .unwrap()
            .is_empty()
    );
    let now = s
        .read_all("user", "1", ReadOptions::default().as_of(Utc::now()))
        .await
        .unwrap();
    assert_eq!(now.len(), 5);
}

#[tokio::test]
async fn to_revision_reads_up_to_and_including_that_revision() {
    let env = Env::start().await;
    let s = &env.store;
    s.append(
        "user",
        "1",
        counted_events(1, 5),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    let to2 = s
        .read_all("user", "1", ReadOptions::default().to_revision(2))
        .await
        .unwrap();
    assert_eq!(revisions(&to2), [1, 2]);
    assert!(
        s.read_all("user", "1", ReadOptions::default().to_revision(0))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn to_revision_stops_across_pages() {
    let env = Env::start().await;
    let s = &env.store;
    s.append(
        "user",
        "1",
        counted_events(1, 5),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    let to4_paged = s
        .read_all(
            "user",
            "1",
            ReadOptions::default().to_revision(4).page_size(2),
        )
        .await
        .unwrap();
    assert_eq!(revisions(&to4_paged), [1, 2, 3, 4]);
}
