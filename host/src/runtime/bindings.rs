//! The generated host side of `wit/reducer.wit`. Private: the rest of the crate
//! speaks in its own types (`PluginInfo`, `ReducerFailure`), never in these.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});

pub(crate) use self::streamfold::reducer::host::{Host, Level};
pub(crate) use self::streamfold::reducer::types::{
    ErrorKind, Event, Host as TypesHost, Info, ReducerError,
};
