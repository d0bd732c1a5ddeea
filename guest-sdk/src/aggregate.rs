//! One aggregate being replayed: what the WIT `aggregate` resource wraps, and what
//! native tests drive directly.

use std::borrow::Borrow;
use std::fmt;

use crate::{ErrorKind, Event, Reducer, ReducerError};

/// The state of one aggregate while a [`Reducer`] folds its events, driven exactly as
/// the host drives the component: restore a snapshot, apply batches, ask for the state.
///
/// The SDK wraps it in the WIT resource; use it directly to test a reducer natively:
///
/// ```
/// # use streamfold_guest::{Aggregate, Event, Reducer, Rejection};
/// # struct Counter;
/// # impl Reducer for Counter {
/// #     const AGGREGATE_TYPE: &'static str = "counter";
/// #     const HANDLES: &'static [&'static str] = &["Added"];
/// #     type State = u64;
/// #     fn apply(state: &mut u64, event: &Event) -> Result<(), Rejection> {
/// #         *state += event.data::<u64>()?;
/// #         Ok(())
/// #     }
/// # }
/// let mut counter = Aggregate::<Counter>::new("c-1");
/// counter.apply([Event::new(1, "Added", "2"), Event::new(2, "Reset", "{}"), Event::new(3, "Added", "3")])?;
/// assert_eq!(*counter.state(), 5);
/// assert_eq!(counter.state_json()?, "5");
///
/// let err = counter.apply([Event::new(4, "Added", "1"), Event::new(5, "Added", "\"x\"")]).unwrap_err();
/// assert_eq!(err.event_index, Some(1));
/// assert_eq!(*counter.state(), 6); // as the last good event left it
/// # Ok::<(), streamfold_guest::ReducerError>(())
/// ```
pub struct Aggregate<R: Reducer> {
    state: R::State,
}

impl<R: Reducer> Aggregate<R> {
    /// The empty state of the aggregate `id`: [`Reducer::init`].
    pub fn new(id: &str) -> Self {
        Aggregate { state: R::init(id) }
    }

    /// Replaces the state with a snapshot, JSON text that [`Aggregate::state_json`]
    /// returned. On error ([`ErrorKind::InvalidSnapshot`]) the state is unchanged.
    pub fn restore(&mut self, snapshot: &str) -> Result<(), ReducerError> {
        self.state = serde_json::from_str(snapshot).map_err(|err| {
            ReducerError::new(
                ErrorKind::InvalidSnapshot,
                format!("cannot read the snapshot: {err}"),
            )
        })?;
        Ok(())
    }

    /// Folds a batch of events, in order, into the state, skipping the event types
    /// the reducer does not handle. Stops at the first rejection and names that
    /// event's index in the batch.
    pub fn apply<E: Borrow<Event>>(
        &mut self,
        events: impl IntoIterator<Item = E>,
    ) -> Result<(), ReducerError> {
        for (index, event) in events.into_iter().enumerate() {
            let event = event.borrow();
            if handles::<R>(event.event_type()) {
                R::apply(&mut self.state, event)
                    .map_err(|rejection| rejection.at(u32::try_from(index).unwrap_or(u32::MAX)))?;
            }
        }
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// The current state as one JSON document, as the host receives it.
    pub fn state_json(&self) -> Result<String, ReducerError> {
        serde_json::to_string(&self.state).map_err(|err| {
            // No WIT error kind fits a state that cannot be serialized (a bug in the
            // reducer's State type); invalid-data without an event is the closest.
            ReducerError::new(
                ErrorKind::InvalidData,
                format!("cannot serialize the state: {err}"),
            )
        })
    }
}

/// Whether the reducer `R` wants events of type `event_type`.
fn handles<R: Reducer>(event_type: &str) -> bool {
    R::HANDLES.is_empty() || R::HANDLES.contains(&event_type)
}

impl<R: Reducer> fmt::Debug for Aggregate<R>
where
    R::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregate")
            .field("state", &self.state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Rejection;

    /// Counts events per type, refuses `Bad`.
    struct Tally;

    impl Reducer for Tally {
        const AGGREGATE_TYPE: &'static str = "tally";
        const HANDLES: &'static [&'static str] = &["A", "B", "Bad"];
        type State = BTreeMap<String, u32>;

        fn init(aggregate_id: &str) -> Self::State {
            BTreeMap::from([(format!("id:{aggregate_id}"), 0)])
        }

        fn apply(state: &mut Self::State, event: &Event) -> Result<(), Rejection> {
            if event.event_type() == "Bad" {
                return Err(Rejection::rule(format!(
                    "revision {} is bad",
                    event.revision()
                )));
            }
            *state.entry(event.event_type().to_owned()).or_default() += 1;
            Ok(())
        }
    }

    /// Wants every event.
    struct Everything;

    impl Reducer for Everything {
        const AGGREGATE_TYPE: &'static str = "any";
        const HANDLES: &'static [&'static str] = &[];
        type State = Vec<String>;

        fn apply(state: &mut Self::State, event: &Event) -> Result<(), Rejection> {
            state.push(event.event_type().to_owned());
            Ok(())
        }
    }

    fn events(types: &[&str]) -> Vec<Event> {
        (1..)
            .zip(types)
            .map(|(revision, ty)| Event::new(revision, *ty, "{}"))
            .collect()
    }

    #[test]
    fn folds_batches_and_skips_unhandled_types() {
        let mut tally = Aggregate::<Tally>::new("7");
        tally.apply(events(&["A", "C", "B"])).unwrap();
        tally.apply(events(&["A"]).iter()).unwrap(); // borrowed events too
        tally.apply(Vec::<Event>::new()).unwrap();
        assert_eq!(tally.state_json().unwrap(), r#"{"A":2,"B":1,"id:7":0}"#);
    }

    #[test]
    fn empty_handles_means_every_type() {
        let mut all = Aggregate::<Everything>::new("x");
        all.apply(events(&["A", "Z"])).unwrap();
        assert_eq!(all.state(), &["A", "Z"]);
    }

    #[test]
    fn a_rejection_names_its_index_in_the_batch() {
        let mut tally = Aggregate::<Tally>::new("7");
        let err = tally.apply(events(&["A", "C", "Bad", "B"])).unwrap_err();
        assert_eq!(
            err,
            ReducerError {
                kind: ErrorKind::RuleViolation,
                event_index: Some(2),
                message: "revision 3 is bad".into(),
            }
        );
        // The state is as the last good event left it.
        assert_eq!(tally.state_json().unwrap(), r#"{"A":1,"id:7":0}"#);
    }

    #[test]
    fn restore_replaces_the_state() {
        let mut tally = Aggregate::<Tally>::new("7");
        tally.restore(r#"{"B":5}"#).unwrap();
        tally.apply(events(&["B"])).unwrap();
        assert_eq!(tally.state_json().unwrap(), r#"{"B":6}"#);

        let err = tally.restore(r#"{"B":"many"}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidSnapshot);
        assert_eq!(err.event_index, None);
        assert!(
            err.message
                .starts_with("cannot read the snapshot: invalid type"),
            "{err}"
        );
        assert_eq!(tally.state_json().unwrap(), r#"{"B":6}"#);
    }
}
