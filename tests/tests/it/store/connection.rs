//! The connection to Redis: a server that goes away and comes back, one that is not
//! there, scripts flushed from under the store, and the store's own lean read
//! connections, which must log in, select the database the URL names, give up after
//! the response timeout, and say so when a login stops working.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use streamfold_store::{ErrorKind, EventStore, ExpectedRevision, ReadOptions, StoreConfig};
use streamfold_test_support::{Env, counted_events, revisions, wait_until};

/// How long a call that should fail may take before it counts as hanging: generous,
/// a failing call takes a few seconds at most.
const HANG: Duration = Duration::from_secs(30);

/// Runs `call`, panicking if it has not finished after [`HANG`].
async fn without_hanging<T>(what: &str, call: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, call).await {
        Ok(v) => v,
        Err(_) => panic!("{what} had not finished after {HANG:?}"),
    }
}

/// A store with a 2 s response timeout, and `user/1` with two events.
async fn two_events_with_a_short_timeout() -> Env {
    let env = Env::start_with(|c| c.response_timeout(Duration::from_secs(2))).await;
    env.store
        .append(
            "user",
            "1",
            counted_events(1, 2),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    env
}

#[tokio::test]
async fn while_redis_is_down_calls_fail_in_bounded_time_naming_the_server() {
    let mut env = two_events_with_a_short_timeout().await;
    let store = env.store.clone();
    env.redis_mut().stop();
    let err = without_hanging(
        "an append while Redis is down",
        store.append(
            "user",
            "1",
            counted_events(3, 1),
            ExpectedRevision::Exact(2),
        ),
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Redis),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("127.0.0.1"),
        "names the server: {err}"
    );
    let err = without_hanging(
        "a read while Redis is down",
        store.read_all("user", "1", ReadOptions::default()),
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

/// No persistence: the restarted server is empty; the same store (and its clones)
/// reconnect by themselves, after calls failed while it was down, and the append
/// script is loaded again.
#[tokio::test]
async fn after_a_redis_restart_the_same_store_and_its_clones_work_again() {
    let mut env = two_events_with_a_short_timeout().await;
    let store = env.store.clone();
    env.redis_mut().stop();
    let failed = store
        .append(
            "user",
            "1",
            counted_events(3, 1),
            ExpectedRevision::Exact(2),
        )
        .await;
    assert!(failed.is_err(), "an append while Redis is down");
    let failed = store.read_all("user", "1", ReadOptions::default()).await;
    assert!(failed.is_err(), "a read while Redis is down");

    env.redis_mut().start_again().unwrap();
    let r = store
        .append(
            "user",
            "1",
            counted_events(1, 1),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    assert_eq!(r.first_revision, 1);
    assert_eq!(
        env.store
            .read_all("user", "1", ReadOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Fails fast: after one connection attempt, not after the reconnect back-off (which,
/// with a thousand retries up to a second apart, would take many minutes).
#[tokio::test]
async fn connecting_to_a_missing_redis_fails_fast_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = without_hanging(
        "connecting to a missing Redis",
        EventStore::connect(
            &format!("redis://:hunter2@127.0.0.1:{port}/0"),
            StoreConfig::default().reconnect_retries(1000),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.is_unavailable());
    let text = err.to_string();
    assert!(
        !text.contains("hunter2") && text.contains(&port.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn appends_still_work_after_script_flush() {
    let env = Env::start().await;
    let s = &env.store;
    s.append(
        "user",
        "1",
        counted_events(1, 1),
        ExpectedRevision::NoStream,
    )
    .await
    .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let r = s
        .append(
            "user",
            "1",
            counted_events(2, 1),
            ExpectedRevision::Exact(1),
        )
        .await
        .unwrap();
    assert_eq!(r.first_revision, 2);
}

/// Adds the Redis user `app` (password `s3cret`) and connects a store as that user to
/// database 3, with the given response timeout; `user/1` gets three events there.
async fn app_store_in_database_3(env: &Env, timeout: Duration) -> EventStore {
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all"])
        .exec_async(&mut env.raw().await)
        .await
        .unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}/3", env.redis().port());
    let store = EventStore::connect(&url, StoreConfig::default().response_timeout(timeout))
        .await
        .unwrap();
    store
        .append(
            "user",
            "1",
            counted_events(1, 3),
            ExpectedRevision::NoStream,
        )
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn reads_log_in_and_select_the_database_the_url_names() {
    let env = Env::start().await;
    let store = app_store_in_database_3(&env, Duration::from_millis(300)).await;
    let got = store
        .read_all("user", "1", ReadOptions::new().page_size(2))
        .await
        .unwrap();
    assert_eq!(revisions(&got), [1, 2, 3]);
    let keys = store.keys("user", "1").unwrap();
    let in_db0: bool = env.raw().await.exists(&keys.stream).await.unwrap();
    assert!(!in_db0, "the events went to database 3, not 0");
}

/// Redis stops answering (every client paused): the read gives up after the response
/// timeout, well before the pause ends, and a read after the pause works on a new
/// connection.
#[tokio::test]
async fn a_read_gives_up_after_the_response_timeout_and_a_later_one_works() {
    const PAUSE: Duration = Duration::from_secs(5);
    let env = Env::start().await;
    let timeout = Duration::from_millis(300);
    let store = app_store_in_database_3(&env, timeout).await;
    // A read first, so that the pool holds a logged-in connection: a read on it is
    // bounded by the response timeout (logging in on a new one, by the connect
    // timeout).
    store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis().to_string())
        .arg("ALL")
        .exec_async(&mut env.raw().await)
        .await
        .unwrap();
    let started = Instant::now();
    let err = store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("did not answer within {timeout:?}")),
        "a timeout after the configured {timeout:?}: {err}"
    );
    assert!(
        waited < PAUSE,
        "gave up while Redis was still paused, not after: {waited:?}"
    );
    let got = wait_until(
        "a read to work again after the pause",
        Duration::from_secs(30),
        || async { store.read_all("user", "1", ReadOptions::new()).await.ok() },
    )
    .await;
    assert_eq!(revisions(&got), [1, 2, 3]);
}

/// The password changes and the connections are dropped: reads say why they fail.
#[tokio::test]
async fn reads_say_why_when_their_login_stops_working() {
    let env = Env::start().await;
    let store = app_store_in_database_3(&env, Duration::from_millis(300)).await;
    // A read first, so that the pool holds a logged-in connection.
    store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap();
    let mut raw = env.raw().await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "resetpass", ">other"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "app"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    let err = store
        .read_all("user", "1", ReadOptions::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGPASS"), "{err}");
}
