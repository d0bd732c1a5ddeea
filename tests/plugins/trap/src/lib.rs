//! A misbehaving reducer for the host's sandbox tests: `apply` logs one line at
//! `error` level, then panics, which traps. (The only fixture that imports the host's
//! `log`.)

use streamfold_guest::{Event, Reducer, Rejection, log};

struct Trap;

impl Reducer for Trap {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &["UserCreated"];
    type State = u64;

    fn apply(_state: &mut u64, event: &Event) -> Result<(), Rejection> {
        log::error(&format!(
            "fixture-trap: about to panic on revision {}",
            event.revision()
        ));
        panic!("fixture-trap panics on revision {}", event.revision());
    }
}

streamfold_guest::export!(Trap);
