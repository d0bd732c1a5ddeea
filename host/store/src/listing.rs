//! Listing what the store holds: the aggregate types with events, and a type's
//! aggregate ids a page at a time (for browsing, never for request paths that must be
//! fast: ids are found by walking the keyspace with `SCAN`).

use crate::error::{Error, Result};
use crate::keys;
use crate::model::digits;
use crate::{EventStore, Layout, ScanAt};

/// The largest page of ids one call gathers.
pub const MAX_IDS_PAGE: usize = 1000;

/// `SCAN` steps one page may take before it answers with what it has (and a cursor):
/// a sparse match over a large keyspace never makes one call slow.
const SCAN_STEPS: usize = 16;

/// A cursor a client gives back: `PARTITION-SCANCURSOR`, as a regular expression.
pub const IDS_CURSOR_PATTERN: &str = "^[0-9]{1,10}-[0-9]{1,19}$";

/// Which ids a page of [`EventStore::aggregate_ids_page`] holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdsPageOptions {
    /// Only ids that start with this (default: all).
    pub prefix: String,
    /// Where to go on: the `next_cursor` of the previous page (default: the start).
    pub cursor: Option<String>,
    /// About how many ids (default 100, at most [`MAX_IDS_PAGE`]): `SCAN` counts are
    /// hints, so a page may hold a few more, or fewer with a cursor to go on from.
    pub count: usize,
}

impl Default for IdsPageOptions {
    fn default() -> Self {
        IdsPageOptions::new()
    }
}

impl IdsPageOptions {
    /// All ids, from the start, about 100 a page.
    pub fn new() -> Self {
        IdsPageOptions {
            prefix: String::new(),
            cursor: None,
            count: 100,
        }
    }
    /// Only ids that start with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Goes on from a previous page's `next_cursor`.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
    /// About this many ids (1 to [`MAX_IDS_PAGE`]).
    pub fn count(mut self, n: usize) -> Self {
        self.count = n.clamp(1, MAX_IDS_PAGE);
        self
    }
}

/// One page of a type's aggregate ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdsPage {
    /// The ids, in no particular order, each once across all pages.
    pub ids: Vec<String>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<String>,
}

impl EventStore {
    /// The aggregate types with events, and their partition counts, sorted by type:
    /// every type whose count its first append recorded. The seed layout records no
    /// counts: it lists none.
    pub async fn aggregate_types(&self) -> Result<Vec<(String, u32)>> {
        if self.config().layout != Layout::Default {
            return Ok(Vec::new());
        }
        let key = format!("{}:partitions", self.config().prefix);
        let key = key.as_str();
        let recorded: Vec<(String, String)> = self
            .with_reconnect(key, move |mut con| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut con).await
            })
            .await?;
        let mut types = recorded
            .into_iter()
            .map(|(t, n)| {
                n.parse::<u32>().map(|n| (t.clone(), n)).map_err(|_| {
                    Error::corrupt(key, format!("the partition count of {t:?} is {n:?}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        types.sort();
        Ok(types)
    }

    /// One page of the ids of a type's aggregates (those with events), optionally
    /// only those starting with a prefix, walking the keyspace with `SCAN` one
    /// partition after another. Pages go on from `next_cursor`; an id is listed once
    /// across the pages of one walk (`SCAN`'s guarantee), if it existed for the whole
    /// walk. A cursor past the type's partitions is the end of the listing.
    pub async fn aggregate_ids_page(
        &self,
        aggregate_type: &str,
        options: IdsPageOptions,
    ) -> Result<IdsPage> {
        let prefixes = keys::aggregate_stream_prefixes(self.config(), aggregate_type)?;
        let n = options.prefix.chars().count();
        if n > keys::MAX_ID_CHARS {
            return Err(Error::invalid(format!(
                "the id prefix is {n} characters long; ids have at most {}",
                keys::MAX_ID_CHARS
            )));
        }
        let (mut partition, mut cursor) = match &options.cursor {
            None => (0usize, 0u64),
            Some(c) => parse_cursor(c)?,
        };
        let count = options.count.clamp(1, MAX_IDS_PAGE);
        let mut ids = Vec::new();
        let mut steps = 0;
        while partition < prefixes.len() {
            let key_prefix = &prefixes[partition];
            let pattern = format!(
                "{}{}*",
                keys::glob_escape(key_prefix),
                keys::glob_escape(&options.prefix)
            );
            let (next, found): (u64, Vec<Vec<u8>>) = self
                .scan_step(
                    ScanAt::SlotOf(key_prefix),
                    cursor,
                    &pattern,
                    Some("stream"),
                    count,
                )
                .await?;
            ids.extend(found.into_iter().filter_map(|key| {
                let id = key.strip_prefix(key_prefix.as_bytes())?;
                String::from_utf8(id.to_vec())
                    .ok()
                    .filter(|id| !id.is_empty())
            }));
            steps += 1;
            if next == 0 {
                partition += 1;
                cursor = 0;
            } else {
                cursor = next;
            }
            if ids.len() >= count || steps >= SCAN_STEPS {
                break;
            }
        }
        let next_cursor = (partition < prefixes.len()).then(|| format!("{partition}-{cursor}"));
        Ok(IdsPage { ids, next_cursor })
    }
}

fn parse_cursor(c: &str) -> Result<(usize, u64)> {
    let bad = || {
        Error::invalid(format!(
            "{c:?} is not a cursor of an id listing (expected PARTITION-CURSOR, as a page gave it)"
        ))
    };
    let (p, s) = c.split_once('-').ok_or_else(bad)?;
    if !digits(p, 10) || !digits(s, 19) {
        return Err(bad());
    }
    Ok((p.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_exactly_as_the_pattern_says() {
        let re = regex::Regex::new(IDS_CURSOR_PATTERN).unwrap();
        for c in [
            "0-0",
            "3-1234",
            "9999999999-9999999999999999999",
            "",
            "-",
            "0-",
            "-0",
            "a-1",
            "1-2-3",
            "0-12345678901234567890",
            "12345678901-0",
            " 0-0",
        ] {
            assert_eq!(re.is_match(c), parse_cursor(c).is_ok(), "{c:?}");
        }
    }
}
