//! Snapshots: an aggregate's state as one reducer left it, so a replay can start after
//! the revision it covers instead of at the beginning.
//!
//! One hash per aggregate, one field per reducer digest, the [`Snapshot`] as JSON: a
//! new reducer (another digest) never sees an old reducer's state.

use crate::error::{Error, Result};

use super::EventStore;
use super::keys::{aggregate_keys, snapshot_field};
use super::model::{Snapshot, check_json, validate_position};

impl EventStore {
    /// Saves (replaces) the snapshot made by `snapshot.reducer_digest`.
    ///
    /// The state must be JSON and the position a stream id; snapshots of other
    /// reducers are left alone.
    pub async fn save_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        snapshot: &Snapshot,
    ) -> Result<()> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        if snapshot.reducer_digest.is_empty() {
            return Err(Error::invalid(
                "a snapshot needs the digest of the reducer that made it",
            ));
        }
        check_json(&snapshot.state)
            .map_err(|e| Error::invalid(format!("snapshot state is not valid JSON: {e}")))?;
        validate_position(&snapshot.position)?;
        let json = serde_json::to_string(snapshot)
            .map_err(|e| Error::invalid(format!("cannot serialize the snapshot: {e}")))?;
        let field = snapshot_field(self.config().layout, &snapshot.reducer_digest);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&keys.snapshot).arg(&field).arg(&json);
        let cmd = &cmd;
        let _: i64 = self
            .with_reconnect(&keys.snapshot, move |mut con| async move {
                cmd.query_async(&mut con).await
            })
            .await?;
        Ok(())
    }

    /// Loads the snapshot made by the reducer with this digest, if there is one.
    ///
    /// Snapshots of other reducers are ignored. A snapshot that cannot be read back
    /// (hand-edited) is [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt).
    pub async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        reducer_digest: &str,
    ) -> Result<Option<Snapshot>> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        if reducer_digest.is_empty() {
            return Err(Error::invalid("the reducer digest is empty"));
        }
        let field = snapshot_field(self.config().layout, reducer_digest);
        let corrupt =
            |reason: String| Error::corrupt(format!("{} field {field}", keys.snapshot), reason);
        // On the lean reader, as the history's pages: a replay asks for both at once,
        // from one task, with no hand-off to a connection's driver task.
        let args: [&[u8]; 3] = [b"HGET", keys.snapshot.as_bytes(), field.as_bytes()];
        let json = self
            .inner
            .reader
            .request(&keys.snapshot, &args, |mut frame| {
                frame
                    .bulk()
                    .map_err(|e| corrupt(format!("not a bulk string reply: {e}")))?
                    .map(|b| {
                        String::from_utf8(b.to_vec()).map_err(|_| corrupt("not UTF-8".to_owned()))
                    })
                    .transpose()
            })
            .await
            .map_err(|e| match e.into_redis() {
                Ok(e) => self.map_err(e, &keys.snapshot),
                Err(e) => e,
            })?;
        let Some(json) = json else {
            return Ok(None);
        };
        let snapshot: Snapshot =
            serde_json::from_str(&json).map_err(|e| corrupt(format!("not a snapshot: {e}")))?;
        if snapshot.reducer_digest != reducer_digest {
            return Err(corrupt(format!(
                "holds a snapshot of reducer {}",
                snapshot.reducer_digest
            )));
        }
        Ok(Some(snapshot))
    }

    /// Deletes the snapshot made by the reducer with this digest (true if there was one).
    pub async fn delete_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        reducer_digest: &str,
    ) -> Result<bool> {
        let keys = aggregate_keys(self.config(), aggregate_type, aggregate_id)?;
        let field = snapshot_field(self.config().layout, reducer_digest);
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(&keys.snapshot).arg(&field);
        let cmd = &cmd;
        let n: i64 = self
            .with_reconnect(&keys.snapshot, move |mut con| async move {
                cmd.query_async(&mut con).await
            })
            .await?;
        Ok(n > 0)
    }
}
