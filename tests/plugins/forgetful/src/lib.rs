//! A reducer that cannot read its own states back: `restore` refuses every
//! snapshot, so a host that restores one (a snapshot, or the state it holds in its
//! cache) must fall back to replaying the history. Its state counts the events.

use serde::de::{Deserializer, Error as _};
use streamfold_guest::{Event, Reducer, Rejection};

/// How many events were folded.
#[derive(Debug, Default, serde::Serialize)]
pub struct State {
    events: u64,
}

impl<'de> serde::Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("this reducer never reads a state back"))
    }
}

struct Forgetful;

impl Reducer for Forgetful {
    const AGGREGATE_TYPE: &'static str = "forgetful";
    const HANDLES: &'static [&'static str] = &[];
    type State = State;

    fn apply(state: &mut State, _event: &Event) -> Result<(), Rejection> {
        state.events += 1;
        Ok(())
    }
}

streamfold_guest::export!(Forgetful);
