//! Hot reload: a running host follows activations made by any client.
//!
//! Without a follower, every replay asks Redis for the type's active digest (one
//! round trip, always fresh). With one, the host keeps the active digests in
//! memory, updated the moment an activation is published, and re-reads them all
//! periodically so a missed message (a dropped pub/sub connection) cannot leave it
//! stale for long. It also compiles newly registered and activated reducers in the
//! background, so the first replay that uses one does not wait for the compiler.
//!
//! Replays already running keep the `Arc<Plugin>` they started with: a swap never
//! fails a replay, and each replay's result comes entirely from one version.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;

use crate::error::Result;
use crate::{Inner, Runtime};

impl Runtime {
    /// Starts following activations made by any client: activation notices over
    /// Redis pub/sub, a periodic re-read of every active digest (in case a notice is
    /// missed), and ahead-of-time compilation of newly registered plugins. Returns
    /// once the subscription is in place and the active digests are loaded; the
    /// follower then runs until the runtime is dropped. Calling it again is a no-op.
    pub async fn follow_activations(&self) -> Result<()> {
        if self.inner.active.read().expect("active map").is_some() {
            return Ok(());
        }
        let mut pubsub = self.inner.store.pubsub().await?;
        pubsub.subscribe(self.inner.registry.channel()).await?;
        let digests = self.inner.registry.active_digests().await?;
        *self.inner.active.write().expect("active map") = Some(digests);
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.config.activation_check_every;
        tokio::spawn(follow(weak, pubsub, every));
        Ok(())
    }

    /// The active digest of a type: from memory when following, else from Redis.
    pub(crate) async fn active_digest(&self, aggregate_type: &str) -> Result<Option<String>> {
        if let Some(map) = self.inner.active.read().expect("active map").as_ref() {
            return Ok(map.get(aggregate_type).cloned());
        }
        self.inner.registry.active_digest(aggregate_type).await
    }

    /// Records an activation this runtime made itself, so it takes effect here
    /// at once even before the notice comes back.
    pub(crate) fn note_activation(&self, aggregate_type: &str, digest: &str) {
        if let Some(map) = self.inner.active.write().expect("active map").as_mut() {
            map.insert(aggregate_type.to_string(), digest.to_string());
        }
    }
}

async fn follow(weak: Weak<Inner>, mut pubsub: redis::aio::PubSub, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let message = {
            let mut messages = pubsub.on_message();
            tokio::select! {
                m = messages.next() => Some(m),
                _ = tick.tick() => None,
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        let rt = Runtime { inner };
        match message {
            Some(Some(msg)) => {
                let payload: String = msg.get_payload().unwrap_or_default();
                let mut words = payload.split(' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("activated"), Some(t), Some(digest)) => {
                        tracing::info!(aggregate_type = t, digest, "activation followed");
                        rt.note_activation(t, digest);
                        prewarm(&rt, digest);
                    }
                    // Compile ahead: a registered plugin is likely to be activated next.
                    (Some("registered"), Some(_), Some(digest)) => prewarm(&rt, digest),
                    _ => {}
                }
            }
            Some(None) => {
                // The subscription broke (Redis restarted): resubscribe, then re-read
                // everything, since messages may have been missed meanwhile.
                tracing::warn!("the activation subscription broke; resubscribing");
                pubsub = loop {
                    match resubscribe(&rt).await {
                        Ok(p) => break p,
                        Err(e) => {
                            tracing::debug!("resubscribing to activations: {e}");
                            tokio::time::sleep(Duration::from_millis(500)).await
                        }
                    }
                };
                refresh(&rt).await;
            }
            None => refresh(&rt).await,
        }
    }
}

async fn resubscribe(rt: &Runtime) -> Result<redis::aio::PubSub> {
    let mut pubsub = rt.inner.store.pubsub().await?;
    pubsub.subscribe(rt.inner.registry.channel()).await?;
    Ok(pubsub)
}

/// The periodic check: re-read every type's active digest.
async fn refresh(rt: &Runtime) {
    let fresh = match rt.inner.registry.active_digests().await {
        Ok(fresh) => fresh,
        Err(e) => {
            // Redis is away; try again at the next tick.
            tracing::debug!("re-reading the active reducers: {e}");
            return;
        }
    };
    let changed: Vec<String> = {
        let mut guard = rt.inner.active.write().expect("active map");
        let map = guard.get_or_insert_with(HashMap::new);
        let changed = fresh
            .iter()
            .filter(|(t, d)| map.get(*t) != Some(*d))
            .map(|(_, d)| d.clone())
            .collect();
        *map = fresh;
        changed
    };
    for digest in changed {
        prewarm(rt, &digest);
    }
}

/// Loads (and compiles, if need be) a plugin in the background.
fn prewarm(rt: &Runtime, digest: &str) {
    let rt = rt.clone();
    let digest = digest.to_string();
    tokio::spawn(async move {
        if let Err(e) = rt.plugin(&digest).await {
            tracing::warn!(digest = %digest, "cannot load a newly announced reducer ahead of time: {e}");
        }
    });
}
