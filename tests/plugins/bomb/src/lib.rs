//! A misbehaving reducer for the host's sandbox tests: `apply` allocates without bound.

use streamfold_guest::{Event, Reducer, Rejection};

struct Bomb;

impl Reducer for Bomb {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &["UserCreated"];
    type State = u64;

    fn apply(state: &mut u64, _event: &Event) -> Result<(), Rejection> {
        let mut hoard = Vec::new();
        loop {
            // 1 MiB at a time, every byte written, none ever freed.
            let chunk = vec![0xA5_u8; 1 << 20];
            hoard.push(std::hint::black_box(chunk));
            *state += 1;
        }
    }
}

streamfold_guest::export!(Bomb);
