//! A reducer whose `info.name` would clear the screen and forge a line if a host
//! showed it as it is. The host must refuse it at registration and quote the name
//! escaped.

use streamfold_guest::{Event, Reducer, Rejection};

/// The reducer (it would count events, if it were ever registered).
#[derive(Debug)]
pub struct BadInfo;

impl Reducer for BadInfo {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &[];
    type State = u64;

    fn apply(count: &mut u64, _event: &Event) -> Result<(), Rejection> {
        *count += 1;
        Ok(())
    }
}

streamfold_guest::export!(BadInfo, name = "bad\u{1b}[2J\u{1b}[H\nerror: forged");
