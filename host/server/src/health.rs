//! Whether Redis answers, kept current by a background check, so that `/readyz`
//! answers at once, up or down, and says since when.
//!
//! A ping that waits on reconnects can take seconds while Redis is away; a readiness
//! probe's timeout is often one second. So the server pings Redis every
//! [`INTERVAL`] (each ping bounded by [`PING_TIMEOUT`]) and `/readyz` reports the
//! latest result without waiting for anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use streamfold::Runtime;
use tokio::sync::watch;

/// How often Redis is pinged.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// How long a ping may take before Redis counts as away.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// What the last check found.
#[derive(Debug, Clone)]
pub(crate) struct RedisState {
    /// Whether Redis answered the last ping.
    pub(crate) up: bool,
    /// Since when it has been up (the first answer after being away) or away (when
    /// the first unanswered PING was sent).
    pub(crate) since: Instant,
    /// The same instant, as a time of day.
    pub(crate) since_utc: DateTime<Utc>,
    /// Why it is away (empty when up). Never holds credentials: the store's errors
    /// and URL are redacted.
    pub(crate) reason: String,
}

/// The latest state of Redis, kept current in the background.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    state: watch::Receiver<Arc<RedisState>>,
}

impl Health {
    /// Checks Redis once (at most [`PING_TIMEOUT`]), then keeps checking every
    /// [`INTERVAL`] until `stopping` turns true.
    pub(crate) async fn start(runtime: Runtime, mut stopping: watch::Receiver<bool>) -> Health {
        let first = check(&runtime, None).await;
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                let previous = tx.borrow().clone();
                let next = check(&runtime, Some(&previous)).await;
                if next.up != previous.up {
                    if next.up {
                        tracing::info!("Redis answers again");
                    } else {
                        tracing::warn!(reason = %next.reason, "Redis does not answer");
                    }
                }
                if tx.send(Arc::new(next)).is_err() {
                    return;
                }
            }
        });
        Health { state: rx }
    }

    /// The latest state, without waiting.
    pub(crate) fn now(&self) -> Arc<RedisState> {
        self.state.borrow().clone()
    }
}

async fn check(runtime: &Runtime, previous: Option<&RedisState>) -> RedisState {
    let store = runtime.store();
    // Redis has been away at least since this PING was sent; it is back once one is
    // answered.
    let (sent, sent_utc) = (Instant::now(), Utc::now());
    let (up, reason) = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!(
                "Redis at {} did not answer a PING within {PING_TIMEOUT:?}",
                store.url()
            ),
        ),
    };
    match previous {
        Some(p) if p.up == up => RedisState {
            up,
            since: p.since,
            since_utc: p.since_utc,
            reason,
        },
        _ if up => RedisState {
            up,
            since: Instant::now(),
            since_utc: Utc::now(),
            reason,
        },
        _ => RedisState {
            up,
            since: sent,
            since_utc: sent_utc,
            reason,
        },
    }
}
