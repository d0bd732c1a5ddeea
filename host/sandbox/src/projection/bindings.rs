//! The generated host side of `wit/projection/projection.wit`. Private: the crate
//! speaks in its own types (`ProjectionInfo`, `ProjectionFailure`,
//! `ProjectionEvent`), never in these.

wasmtime::component::bindgen!({
    world: "projection-plugin",
    path: "../../wit/projection",
    // The read model's calls stop the batch (a trap) when they break a bound.
    imports: { default: trappable },
});

pub(crate) use self::streamfold::projection::host::{Host as LogHost, Level};
pub(crate) use self::streamfold::projection::read_model::Host as ReadModelHost;
pub(crate) use self::streamfold::projection::types::{
    ErrorKind, Host as TypesHost, Info, ProjectionError,
};

use wasmtime::component::{ComponentType, Lower};

/// `types.event` lowered straight from borrowed text (a [`ProjectionEvent`]'s), as
/// the reducer's `EventArg` is: same record, same fields in the same order.
///
/// [`ProjectionEvent`]: crate::ProjectionEvent
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct EventArg<'a> {
    #[component(name = "aggregate-type")]
    pub aggregate_type: &'a str,
    #[component(name = "aggregate-id")]
    pub aggregate_id: &'a str,
    pub revision: u64,
    pub position: &'a str,
    #[component(name = "event-type")]
    pub event_type: &'a str,
    pub data: &'a str,
    pub timestamp: &'a str,
    #[component(name = "schema-version")]
    pub schema_version: u32,
}
