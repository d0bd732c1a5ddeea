//! The component ABI: wit-bindgen's bindings of `wit/reducer.wit` and the glue from
//! them to [`Reducer`]. Used by [`export!`](crate::export) only; not a stable API.

#![allow(
    unsafe_code,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms
)]

use std::cell::RefCell;

use crate::{Aggregate, ErrorKind, Event, Reducer, ReducerError};

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export_plugin",
    default_bindings_module: "::streamfold_guest::__rt",
    runtime_path: "::streamfold_guest::__rt::wit_bindgen::rt",
});

pub use wit_bindgen;

pub use self::streamfold::reducer::host;
use self::streamfold::reducer::types::{
    ErrorKind as WitErrorKind, Event as WitEventRecord, Info, ReducerError as WitReducerError,
};
pub use exports::streamfold::reducer::reducer::{Guest, GuestAggregate};

pub type WitEvent = WitEventRecord;
pub type WitInfo = Info;

/// What `info` returns for the reducer `R`.
pub fn info<R: Reducer>(name: &str, version: &str) -> Info {
    Info {
        name: name.to_owned(),
        version: version.to_owned(),
        aggregate_type: R::AGGREGATE_TYPE.to_owned(),
        handles: R::HANDLES.iter().map(|&ty| ty.to_owned()).collect(),
    }
}

/// The WIT `aggregate` resource for the reducer `R`.
pub struct AggregateResource<R: Reducer>(RefCell<Aggregate<R>>);

impl<R: Reducer> GuestAggregate for AggregateResource<R> {
    fn new(id: String) -> Self {
        AggregateResource(RefCell::new(Aggregate::new(&id)))
    }

    fn restore(&self, snapshot: String) -> Result<(), WitReducerError> {
        self.0.borrow_mut().restore(&snapshot).map_err(to_wit)
    }

    fn apply(&self, events: Vec<WitEvent>) -> Result<(), WitReducerError> {
        self.0
            .borrow_mut()
            .apply(events.into_iter().map(Event::from_wit))
            .map_err(to_wit)
    }

    fn state(&self) -> Result<String, WitReducerError> {
        self.0.borrow().state_json().map_err(to_wit)
    }
}

fn to_wit(err: ReducerError) -> WitReducerError {
    WitReducerError {
        kind: match err.kind {
            ErrorKind::InvalidData => WitErrorKind::InvalidData,
            ErrorKind::InvalidSnapshot => WitErrorKind::InvalidSnapshot,
            ErrorKind::RuleViolation => WitErrorKind::RuleViolation,
        },
        event_index: err.event_index,
        message: err.message,
    }
}
