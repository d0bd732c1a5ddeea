//! A reducer that keeps state across aggregates, for the determinism guard: every
//! state says how many aggregates its instance had started before this one (a
//! global counter), so the same history replays differently on a warm instance
//! than on a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};

use streamfold_guest::{Event, Reducer, Rejection};

static AGGREGATES_BEFORE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    events: u64,
    aggregates_before: u64,
}

struct Leaky;

impl Reducer for Leaky {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &[];
    type State = State;

    fn init(_aggregate_id: &str) -> State {
        State {
            events: 0,
            aggregates_before: AGGREGATES_BEFORE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn apply(state: &mut State, _event: &Event) -> Result<(), Rejection> {
        state.events += 1;
        Ok(())
    }
}

streamfold_guest::export!(Leaky);
