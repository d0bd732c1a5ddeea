//! TLS (`rediss://`) and ACL users, against a real `redis-server` that speaks only TLS
//! on its port, with a CA and certificates made by `openssl` for the test
//! ([`LocalRedis::start_tls`]): through the `redis` crate (appends, pub/sub) and the
//! store's lean reader (histories, live subscriptions) alike.

use std::time::Duration;

use futures::StreamExt;
use streamfold_store::{
    ErrorKind, EventStore, ExpectedRevision, Live, ReadOptions, StoreConfig, SubscribeOptions,
    TlsConfig,
};
use streamfold_test_support::{
    ClientCerts, Env, LocalRedis, counted_events, numbered_event, revisions,
};

const DEADLINE: Duration = Duration::from_secs(10);

fn tls_server(clients: ClientCerts) -> LocalRedis {
    LocalRedis::start_tls(clients)
        .unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"))
}

/// The server's CA, from its file.
fn with_ca(server: &LocalRedis) -> TlsConfig {
    TlsConfig::default()
        .ca_file(&server.tls_files().unwrap().ca)
        .unwrap()
}

async fn connect(url: &str, tls: TlsConfig) -> streamfold_store::Result<EventStore> {
    EventStore::connect(
        url,
        StoreConfig::default()
            .tls(tls)
            .connect_timeout(Duration::from_secs(3))
            .reconnect_retries(1),
    )
    .await
}

/// Appends (the redis crate), reads back (the lean reader's pool), and follows live
/// (a dedicated lean connection's `XREAD BLOCK`): every kind of connection.
async fn appends_reads_and_follows(store: &EventStore, id: &str) {
    store
        .append("user", id, counted_events(1, 2), ExpectedRevision::NoStream)
        .await
        .unwrap();
    let read = store
        .read_all("user", id, ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(revisions(&read), [1, 2]);

    let mut sub = store
        .subscribe("user", id, SubscribeOptions::new())
        .await
        .unwrap();
    let mut caught_up = Vec::new();
    loop {
        match sub.next().await.unwrap().unwrap() {
            Live::Event(e) => caught_up.push(e.revision),
            Live::CaughtUp { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(caught_up, [1, 2]);
    store
        .append(
            "user",
            id,
            vec![numbered_event("Counted", 3)],
            ExpectedRevision::Exact(2),
        )
        .await
        .unwrap();
    let live = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("the live event within the deadline")
        .unwrap()
        .unwrap();
    match live {
        Live::Event(e) => assert_eq!(e.revision, 3),
        other => panic!("expected the live event, got {other:?}"),
    }
}

/// Pub/sub (plugin activation notices) on a connection of its own.
async fn pubsub_delivers(store: &EventStore) {
    let mut pubsub = store.pubsub().await.unwrap();
    pubsub.subscribe("sf:test-notices").await.unwrap();
    let mut messages = pubsub.on_message();
    // SUBSCRIBE has been confirmed: one PUBLISH reaches it.
    let mut con = store.connection();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("sf:test-notices")
        .arg("hello")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let msg = tokio::time::timeout(DEADLINE, messages.next())
        .await
        .expect("a message within the deadline")
        .unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
}

#[tokio::test]
async fn a_plain_url_to_the_tls_port_fails_with_a_hint() {
    let server = tls_server(ClientCerts::Optional);
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let err = connect(&plain, TlsConfig::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&plain) && text.contains("rediss://"),
        "{text}"
    );
}

#[tokio::test]
async fn rediss_with_the_ca_appends_reads_follows_and_publishes() {
    let server = tls_server(ClientCerts::Optional);
    assert!(server.url().starts_with("rediss://"));
    let store = connect(&server.url(), with_ca(&server)).await.unwrap();
    appends_reads_and_follows(&store, "1").await;
    pubsub_delivers(&store).await;
    store.ping().await.unwrap();
}

#[tokio::test]
async fn a_wrong_ca_fails_with_a_tls_certificate_error() {
    let server = tls_server(ClientCerts::Optional);
    let wrong = TlsConfig::default()
        .ca_file(&server.tls_files().unwrap().other_ca)
        .unwrap();
    let err = connect(&server.url(), wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("TLS "), "{text}");
    assert!(
        text.contains("certificate") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(text.contains(&server.url()), "names the server: {text}");

    // Without a CA the system's store is used, which does not know the test's CA.
    let err = connect(&server.url(), TlsConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_without() {
    let server = tls_server(ClientCerts::Required);
    let files = server.tls_files().unwrap().clone();
    let err = connect(&server.url(), with_ca(&server)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().starts_with("TLS "), "{err}");

    let identity = with_ca(&server)
        .client_identity_files(&files.client_cert, &files.client_key)
        .unwrap();
    let store = connect(&server.url(), identity).await.unwrap();
    appends_reads_and_follows(&store, "1").await;
    pubsub_delivers(&store).await;
}

#[tokio::test]
async fn insecure_connects_without_a_ca() {
    let server = tls_server(ClientCerts::Optional);
    let store = connect(&server.url(), TlsConfig::default().insecure(true))
        .await
        .unwrap();
    appends_reads_and_follows(&store, "1").await;
    // The URL's own `#insecure` does the same.
    let store = connect(&format!("{}#insecure", server.url()), TlsConfig::default())
        .await
        .unwrap();
    assert_eq!(store.revision("user", "1").await.unwrap(), 3);
}

#[tokio::test]
async fn unusable_tls_settings_are_invalid_input_naming_the_file() {
    let server = tls_server(ClientCerts::Optional);
    let files = server.tls_files().unwrap();
    let missing = server.dir().join("missing.pem");
    let err = TlsConfig::default().ca_file(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("missing.pem"), "{err}");

    // A key is not a certificate, a certificate not a key.
    let err = TlsConfig::default().ca_file(&files.client_key).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    let err = TlsConfig::default()
        .client_identity_files(&files.client_cert, &files.client_cert)
        .unwrap_err();
    assert!(err.to_string().contains("not a PEM private key"), "{err}");
    let key = std::fs::read(&files.client_key).unwrap();
    let key_text = String::from_utf8(key.clone()).unwrap();
    assert!(
        !format!(
            "{:?}",
            TlsConfig::default().client_identity_pem(key.clone(), key.clone())
        )
        .contains(&key_text[30..60]),
        "Debug never prints the key"
    );

    // A certificate without its key.
    let mut half = TlsConfig::default();
    half.client_cert_pem = Some(std::fs::read(&files.client_cert).unwrap());
    let err = connect(&server.url(), half).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("needs its key"), "{err}");

    // TLS settings with a plain URL are refused, not ignored.
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let err = connect(&plain, with_ca(&server)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("rediss://"), "{err}");
}

#[tokio::test]
async fn an_acl_user_appends_reads_follows_and_publishes() {
    let env = Env::start().await;
    env.redis().add_user("alice", "s3cret-pw").unwrap();
    let url = format!("redis://alice:s3cret-pw@127.0.0.1:{}/", env.redis().port());
    let store = connect(&url, TlsConfig::default()).await.unwrap();
    assert!(!store.url().contains("s3cret-pw"), "{}", store.url());
    appends_reads_and_follows(&store, "1").await;
    pubsub_delivers(&store).await;
    let mut pubsub = store.pubsub().await.unwrap();
    pubsub.subscribe("sf:test-notices").await.unwrap();
    let mut raw = env.raw().await;
    let who: Vec<String> = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async::<String>(&mut raw)
        .await
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .find(|f| f.starts_with("user="))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        who.iter().filter(|u| *u == "user=alice").count() >= 3,
        "writes, reads and pub/sub log in as alice: {who:?}"
    );
    drop(pubsub);
}

#[tokio::test]
async fn an_acl_user_over_tls_and_a_wrong_password_never_shown() {
    let server = tls_server(ClientCerts::Optional);
    server.add_user("alice", "s3cret-pw").unwrap();
    let url = server
        .url()
        .replace("rediss://", "rediss://alice:s3cret-pw@");
    let store = connect(&url, with_ca(&server)).await.unwrap();
    appends_reads_and_follows(&store, "1").await;
    pubsub_delivers(&store).await;

    let wrong = server
        .url()
        .replace("rediss://", "rediss://alice:Wr0ng-pw-7731@");
    let err = connect(&wrong, with_ca(&server)).await.unwrap_err();
    let text = format!("{err} / {err:?}");
    assert!(text.contains("WRONGPASS"), "{text}");
    assert!(
        !text.contains("Wr0ng-pw-7731"),
        "the password leaked: {text}"
    );
}

#[tokio::test]
async fn tls_connections_come_back_after_a_restart() {
    let mut server = tls_server(ClientCerts::Optional);
    let store = connect(&server.url(), with_ca(&server)).await.unwrap();
    appends_reads_and_follows(&store, "1").await;
    server.start_again().unwrap(); // no persistence: the data is gone
    // The manager reconnects over TLS, and the reader's pooled connection (now dead)
    // is replaced by a new TLS one.
    appends_reads_and_follows(&store, "1").await;
}
