//! The component ABI: wit-bindgen's bindings of `wit/reducer.wit` and
//! `wit/projection/projection.wit`, and the glue from them to [`Reducer`] and
//! [`Projection`](crate::Projection). Used by [`export!`](crate::export) and
//! [`export_projection!`](crate::export_projection) only; not a stable API.

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
    crate::log::set_sink(reducer_log);
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
        crate::log::set_sink(reducer_log);
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
            // Reducers have no read model: the closest kind.
            ErrorKind::InvalidDocument => WitErrorKind::InvalidData,
        },
        event_index: err.event_index,
        message: err.message,
    }
}

/// The reducer's `host.log`. Referenced only from the reducer glue, so only a
/// reducer component imports it.
fn reducer_log(level: crate::log::Level, message: &str) {
    use crate::log::Level;
    use host::Level as L;
    let level = match level {
        Level::Trace => L::Trace,
        Level::Debug => L::Debug,
        Level::Info => L::Info,
        Level::Warn => L::Warn,
        Level::Error => L::Error,
    };
    host::log(level, message);
}

/// The projection world's bindings and glue.
pub mod projection {
    wit_bindgen::generate!({
        path: "../wit/projection",
        world: "projection-plugin",
        pub_export_macro: true,
        export_macro_name: "export_projection_plugin",
        default_bindings_module: "::streamfold_guest::__rt::projection",
        runtime_path: "::streamfold_guest::__rt::wit_bindgen::rt",
    });

    use self::streamfold::projection::types::{
        ErrorKind as WitErrorKind, Event as WitEventRecord, Info,
        ProjectionError as WitProjectionError,
    };
    pub use self::streamfold::projection::{host, read_model};
    pub use exports::streamfold::projection::projection::Guest;

    use crate::{ErrorKind, Projection, ProjectionError};

    pub type WitEvent = WitEventRecord;
    pub type WitInfo = Info;

    /// What `info` returns for the projection `P`.
    pub fn info<P: Projection>(name: &str, version: &str) -> Info {
        crate::log::set_sink(projection_log);
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            sources: P::SOURCES.iter().map(|&ty| ty.to_owned()).collect(),
            handles: P::HANDLES.iter().map(|&ty| ty.to_owned()).collect(),
        }
    }

    /// `apply` for the projection `P`: one batch, into the host's read model.
    pub fn apply<P: Projection>(events: Vec<WitEvent>) -> Result<(), WitProjectionError> {
        crate::log::set_sink(projection_log);
        #[cfg(target_arch = "wasm32")]
        {
            crate::projection::fold::<P, _>(
                events.into_iter().map(crate::ProjectionEvent::from_wit),
                crate::ReadModel::host(),
            )
            .map_err(to_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (events, to_wit as fn(ProjectionError) -> WitProjectionError);
            unreachable!("the host calls `apply` only in a component")
        }
    }

    fn to_wit(err: ProjectionError) -> WitProjectionError {
        WitProjectionError {
            kind: match err.kind {
                ErrorKind::InvalidData => WitErrorKind::InvalidData,
                ErrorKind::InvalidDocument => WitErrorKind::InvalidDocument,
                ErrorKind::RuleViolation => WitErrorKind::RuleViolation,
                // Projections restore no snapshots: the closest kind.
                ErrorKind::InvalidSnapshot => WitErrorKind::InvalidData,
            },
            event_index: err.event_index,
            message: err.message,
        }
    }

    /// The projection's `host.log`. Referenced only from the projection glue, so
    /// only a projection component imports it.
    fn projection_log(level: crate::log::Level, message: &str) {
        use crate::log::Level;
        use host::Level as L;
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        host::log(level, message);
    }
}
