//! Streamfold: event sourcing on Redis Streams, with state replayed through
//! sandboxed WebAssembly reducers.
//!
//! # A tour
//! - [`store`]: the event store. Appends are atomic and optimistic (one Lua
//!   script checks the expected revision and writes the aggregate's stream and its
//!   type's category stream); reads come in pages; snapshots are keyed by the
//!   reducer that made them.
//! - [`runtime`]: the reducer host. Loads components that implement
//!   `wit/reducer.wit`, validates them, caches their compiled code, keeps the
//!   plugin registry in Redis, and replays aggregates through a fresh sandboxed
//!   instance each time (snapshot + tail, time travel by revision or instant).
//! - [`local_redis`]: a private `redis-server` on a free port, for the demo and tests.
//! - [`Error`]: one error type with `is_*` checks for what a caller can act on.
//!
//! The `streamfold` binary is a thin command line over these.
#![warn(missing_docs)]

pub mod error;
pub mod local_redis;
pub mod runtime;
pub mod store;

pub use error::{Error, Result};
pub use runtime::{ReplayOptions, Replayed, Runtime, RuntimeConfig};
pub use store::EventStore;
pub use store::{
    AppendResult, CategoryReadOptions, ExpectedRevision, History, Layout, NewEvent, ReadOptions,
    RecordedEvent, Snapshot, StoreConfig,
};

/// Reducers built from `plugins/` and shipped inside the library, so the demo
/// works from any folder once the binary is installed.
pub mod bundled {
    /// The seed document's `user` reducer (`plugins/user`), as a component.
    pub const USER_REDUCER: &[u8] = include_bytes!(env!("STREAMFOLD_BUNDLED_USER_WASM"));
    /// The shopping-cart reducer (`plugins/cart`), as a component.
    pub const CART_REDUCER: &[u8] = include_bytes!(env!("STREAMFOLD_BUNDLED_CART_WASM"));
}
