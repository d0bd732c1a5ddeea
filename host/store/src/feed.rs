//! Following a whole category, every partition at once: one [`Subscription`] per
//! partition, their events handed out as they arrive.

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};

use crate::EventStore;
use crate::error::Result;
use crate::live::{Live, SubscribeFrom, SubscribeOptions, Subscription};
use crate::read::{category_position, category_positions};

/// A live feed of every partition of a type's category, from
/// [`EventStore::subscribe_category_merged`].
///
/// It runs one [`Subscription`] per partition and hands out their events as they
/// arrive: each partition's events (so each aggregate's) in their order, the
/// partitions interleaved. [`Live::CaughtUp`] comes once, when every partition has
/// caught up. Its [`position`](Self::position) lists one stream position per
/// partition, comma-separated, the form [`EventStore::read_category_merged`] uses: a
/// new feed started after it resumes exactly, without gap or duplicate (for one
/// partition it is just that stream's position). Failures are the partitions'
/// subscriptions' (see [`Subscription`]): the first error ends the feed.
pub struct CategoryFeed {
    partitions: SelectAll<BoxStream<'static, (usize, Result<Live>)>>,
    positions: Vec<Option<String>>,
    caught_up: Vec<bool>,
    done: bool,
}

impl std::fmt::Debug for CategoryFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CategoryFeed")
            .field("positions", &self.positions)
            .field("caught_up", &self.caught_up)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl CategoryFeed {
    /// The next event or signal; `None` once the feed has ended (after an error).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Live>> {
        while !self.done {
            let Some((p, item)) = self.partitions.next().await else {
                self.done = true;
                break;
            };
            match item {
                Ok(Live::Event(e)) => {
                    self.positions[p] = Some(e.position.clone());
                    return Some(Ok(Live::Event(e)));
                }
                Ok(Live::CaughtUp { .. }) => {
                    self.caught_up[p] = true;
                    if self.caught_up.iter().all(|c| *c) {
                        return Some(Ok(Live::CaughtUp {
                            position: self.position(),
                        }));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Where a new feed would resume: one position per partition, comma-separated
    /// (empty for a partition with nothing delivered yet); `None` before any event
    /// from the beginning.
    pub fn position(&self) -> Option<String> {
        category_position(&self.positions)
    }
}

impl EventStore {
    /// Follows every partition of a type's category at once (see [`CategoryFeed`]),
    /// starting as `opts` says: from the beginning, from the end, or after a position a
    /// feed gave ([`CategoryFeed::position`], or [`read_category_merged`]'s), which
    /// has one stream position per partition. Fails at once for a position made for
    /// another partition count and whatever [`subscribe_category`] fails for.
    ///
    /// [`read_category_merged`]: Self::read_category_merged
    /// [`subscribe_category`]: Self::subscribe_category
    pub async fn subscribe_category_merged(
        &self,
        aggregate_type: &str,
        opts: SubscribeOptions,
    ) -> Result<CategoryFeed> {
        let starts: Vec<SubscribeFrom> = match opts.start() {
            SubscribeFrom::After { position, .. } => {
                category_positions(self.config(), aggregate_type, Some(position))?
                    .into_iter()
                    .map(|p| match p {
                        Some(position) => SubscribeFrom::After {
                            position,
                            revision: None,
                        },
                        None => SubscribeFrom::Beginning,
                    })
                    .collect()
            }
            other => vec![other.clone(); self.config().partitions_of(aggregate_type) as usize],
        };
        let mut positions = Vec::with_capacity(starts.len());
        let mut partitions = SelectAll::new();
        for (p, start) in starts.into_iter().enumerate() {
            positions.push(match &start {
                SubscribeFrom::After { position, .. } => Some(position.clone()),
                _ => None,
            });
            let sub: Subscription = self
                .subscribe_category(aggregate_type, p as u32, opts.clone().with_start(start))
                .await?;
            partitions.push(sub.map(move |item| (p, item)).boxed());
        }
        Ok(CategoryFeed {
            caught_up: vec![false; positions.len()],
            positions,
            partitions,
            done: false,
        })
    }
}
