//! Trim holds: readers that need a category partition's entries until they have
//! handled them keep the trim from dropping them.
//!
//! Each category partition has a hash `{type:p}:holds`: reader -> the lowest entry id
//! it still needs. The append script trims the partition no further than the lowest
//! hold (and records how many entries that kept beyond the configured length). Durable
//! subscriptions keep their own hold (`g:<group>`) up to date inside the groups
//! script; other readers, such as projections, set theirs with
//! [`EventStore::hold_trim`] as their position moves, and drop it with
//! [`EventStore::release_trim`].

use crate::EventStore;
use crate::config::Layout;
use crate::error::{Error, Result};
use crate::keys::{holds_key, validate_type};

/// Most characters in a holder's name.
pub const MAX_TRIM_HOLDER_CHARS: usize = 256;

fn check_holder(holder: &str) -> Result<()> {
    if holder.is_empty()
        || holder.chars().count() > MAX_TRIM_HOLDER_CHARS
        || holder.starts_with("g:")
        || holder.starts_with('~')
        || holder.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(format!(
            "a trim holder is 1 to {MAX_TRIM_HOLDER_CHARS} characters, without whitespace, \
             control characters or a leading `g:` or `~` (those are the store's own): \
             {holder:?}"
        )));
    }
    Ok(())
}

/// The smallest stream id after `position` (`0-0` for none: everything is needed).
fn after(position: Option<&str>) -> Result<String> {
    let Some(p) = position else {
        return Ok("0-0".to_owned());
    };
    let (ms, seq) = p.split_once('-').unwrap_or((p, "0"));
    match (ms.parse::<u64>(), seq.parse::<u64>()) {
        (Ok(ms), Ok(seq)) => Ok(match seq.checked_add(1) {
            Some(seq) => format!("{ms}-{seq}"),
            None => format!("{}-0", ms.saturating_add(1)),
        }),
        _ => Err(Error::invalid(format!("not a stream position: {p:?}"))),
    }
}

impl EventStore {
    /// Holds the trim of partition `partition` of `aggregate_type` for `holder` (a
    /// name of the caller's, e.g. `p:email-domains:3f2a…`): entries after `handled`
    /// (a category position; `None`: every entry) stay until the hold moves past
    /// them or is released. Call it again as the reader moves on. The default layout
    /// only (the seed layout has no holds).
    pub async fn hold_trim(
        &self,
        aggregate_type: &str,
        partition: u32,
        holder: &str,
        handled: Option<&str>,
    ) -> Result<()> {
        check_holder(holder)?;
        let key = self.holds_key_checked(aggregate_type, partition)?;
        let value = after(handled)?;
        let cmd = redis::cmd("HSET").arg(&key).arg(holder).arg(&value).clone();
        let cmd = &cmd;
        self.with_reconnect(&key, move |mut con| async move {
            cmd.query_async::<()>(&mut con).await
        })
        .await
    }

    /// Drops `holder`'s trim hold on every partition of `aggregate_type`.
    pub async fn release_trim(&self, aggregate_type: &str, holder: &str) -> Result<()> {
        check_holder(holder)?;
        for p in 0..self.config().partitions_of(aggregate_type) {
            let key = self.holds_key_checked(aggregate_type, p)?;
            let cmd = redis::cmd("HDEL").arg(&key).arg(holder).clone();
            let cmd = &cmd;
            self.with_reconnect(&key, move |mut con| async move {
                cmd.query_async::<()>(&mut con).await
            })
            .await?;
        }
        Ok(())
    }

    fn holds_key_checked(&self, aggregate_type: &str, partition: u32) -> Result<String> {
        validate_type(self.config().layout, aggregate_type)?;
        if partition >= self.config().partitions_of(aggregate_type) {
            return Err(Error::invalid(format!(
                "type {aggregate_type:?} has no partition {partition}"
            )));
        }
        match (
            self.config().layout,
            holds_key(self.config(), aggregate_type, partition),
        ) {
            (Layout::Default, Some(key)) => Ok(key),
            _ => Err(Error::invalid(
                "trim holds need the default key layout (the seed layout has no hash tags)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_start_after_the_position() {
        assert_eq!(after(None).unwrap(), "0-0");
        assert_eq!(after(Some("5-1")).unwrap(), "5-2");
        assert_eq!(after(Some("7")).unwrap(), "7-1");
        assert!(after(Some("x-1")).is_err());
        assert!(check_holder("g:mine").is_err());
        assert!(check_holder("~held").is_err());
        assert!(check_holder("p:email-domains:abc").is_ok());
    }
}
