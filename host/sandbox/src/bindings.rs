//! The generated host side of `wit/reducer.wit`. Private: the crate speaks in its
//! own types (`PluginInfo`, `ReducerFailure`, `SessionEvent`), never in these.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
});

pub(crate) use self::streamfold::reducer::host::{Host, Level};
pub(crate) use self::streamfold::reducer::types::{
    ErrorKind, Host as TypesHost, Info, ReducerError,
};

use wasmtime::component::{ComponentType, Lower};

/// `types.event` lowered straight from borrowed text (a [`SessionEvent`]'s), for
/// `aggregate.apply`. The generated `Event` owns its strings: three allocations per
/// event on the way in, which malloc made the largest single cost of a replay. Same
/// record, same fields in the same order, so it type-checks against the component's
/// `apply` exactly like the generated type.
///
/// [`SessionEvent`]: crate::SessionEvent
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct EventArg<'a> {
    pub revision: u64,
    #[component(name = "event-type")]
    pub event_type: &'a str,
    pub data: &'a str,
    pub timestamp: &'a str,
    #[component(name = "schema-version")]
    pub schema_version: u32,
}
