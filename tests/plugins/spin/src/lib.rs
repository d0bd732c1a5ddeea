//! A misbehaving reducer for the host's sandbox tests: `apply` never returns.

use streamfold_guest::{Event, Reducer, Rejection};

struct Spin;

impl Reducer for Spin {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &["UserCreated"];
    type State = u64;

    fn apply(state: &mut u64, _event: &Event) -> Result<(), Rejection> {
        // `black_box` keeps the optimizer from proving the loop useless.
        loop {
            *state = std::hint::black_box(state.wrapping_add(1));
        }
    }
}

streamfold_guest::export!(Spin);
