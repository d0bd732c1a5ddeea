//! Write [Streamfold] reducers and projections in Rust.
//!
//! A reducer folds the events of one aggregate (say `user` 42) into its current
//! state. It runs inside the host as a sandboxed WebAssembly component implementing
//! the world `plugin` of `wit/reducer.wit`. This crate hides that ABI: implement
//! [`Reducer`] (a state type and one function that applies one event) and call
//! [`export!`] once. The SDK does the rest:
//!
//! - **batching**: the host sends a page of events per call; [`Reducer::apply`] sees
//!   them one at a time, and the state stays in the component's memory between calls;
//! - **skipping** event types not listed in [`Reducer::HANDLES`] (the host already
//!   leaves them out; an empty list means "every type");
//! - **snapshots**: the state is serialized with serde only when the host asks for it,
//!   and a snapshot is restored by deserializing it (an unreadable one is an
//!   `invalid-snapshot` error);
//! - **errors**: a [`Rejection`] from `apply` reaches the host as the WIT
//!   `reducer-error`, naming the failing event's index in its batch. Serde errors from
//!   [`Event::data`] are `invalid-data` rejections naming the field.
//!
//! A panic is not a rejection: it traps, and the host reports a crashed reducer.
//!
//! # Example: the `user` reducer
//!
//! This is `plugins/user/src/lib.rs`, compiled here as a doc-test:
//!
#![doc = concat!("```rust\n", include_str!("../../plugins/user/src/lib.rs"), "```")]
//!
//! `export!(User)` takes the reducer's name and version from the crate that calls it
//! (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`); override them with
//! `export!(User, name = "users", version = "2.0.0")`.
//!
//! # Building
//!
//! A reducer crate is a `cdylib`. One command makes it a component with no WASI
//! imports, using the linker that ships with the Rust toolchain:
//!
//! ```sh
//! cargo build --profile plugin --target wasm32-unknown-unknown -p user \
//!     --config 'target.wasm32-unknown-unknown.linker="wasm-component-ld"'
//! ```
//!
//! (`plugins/build-rust.sh user` in this repository.) The README, "Write a reducer
//! in Rust", walks through it all: copy, change, test, build, register.
//!
//! # Testing natively
//!
//! A reducer is plain Rust: [`Aggregate`] drives it the way the host drives the
//! component, so unit tests need no WebAssembly. [`log`] writes to stderr there.
//!
//! # Projections
//!
//! A projection folds whole categories (every aggregate of its source types) into
//! a read model of JSON documents: the world `projection-plugin` of
//! `wit/projection/projection.wit` (`streamfold:projection@0.1.0`). Implement
//! [`Projection`] (one function that applies one event to a [`ReadModel`]) and call
//! [`export_projection!`] once. A projection keeps no state between batches: all of
//! it is in the read model. [`MemoryReadModel`] drives one natively for tests.
//! The example, `plugins/email-domains/src/lib.rs`:
//!
#![doc = concat!("```rust\n", include_str!("../../plugins/email-domains/src/lib.rs"), "```")]
//!
//! It is built exactly like a reducer (`plugins/build-rust.sh email-domains`).
//!
//! [Streamfold]: https://example.invalid/streamfold

#![deny(missing_docs)]

extern crate self as streamfold_guest;

mod aggregate;
mod error;
mod event;
pub mod log;
mod projection;

#[doc(hidden)]
#[path = "rt.rs"]
pub mod __rt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use aggregate::Aggregate;
pub use error::{ErrorKind, ProjectionError, ReducerError, Rejection};
pub use event::Event;
pub use projection::{MemoryReadModel, Projection, ProjectionEvent, ReadModel};

/// A reducer: folds the events of one aggregate type into its state.
///
/// Implement it on a unit struct and export it with [`export!`]:
///
/// ```
/// use streamfold_guest::{Event, Reducer, Rejection};
///
/// struct Counter;
///
/// impl Reducer for Counter {
///     const AGGREGATE_TYPE: &'static str = "counter";
///     const HANDLES: &'static [&'static str] = &["Added"];
///     type State = i64;
///
///     fn apply(state: &mut i64, event: &Event) -> Result<(), Rejection> {
///         *state += event.data::<i64>()?;
///         Ok(())
///     }
/// }
///
/// streamfold_guest::export!(Counter);
/// ```
pub trait Reducer: 'static {
    /// The aggregate type this reducer folds, e.g. `user`.
    const AGGREGATE_TYPE: &'static str;

    /// The event types it handles, e.g. `&["UserCreated", "EmailChanged"]`. The host
    /// skips every other type. Empty means every type.
    const HANDLES: &'static [&'static str];

    /// The aggregate's state. Serialized as JSON when the host asks for it (to return
    /// it, or to snapshot it), deserialized from a snapshot. [`Default`] is the state
    /// before the first event.
    type State: Serialize + DeserializeOwned + Default + 'static;

    /// The state of the aggregate `aggregate_id` before its first event.
    /// `State::default()` unless overridden.
    fn init(aggregate_id: &str) -> Self::State {
        let _ = aggregate_id;
        Self::State::default()
    }

    /// Applies one event to the state.
    ///
    /// Called in order for every event whose type is in [`HANDLES`](Self::HANDLES).
    /// Return a [`Rejection`] to refuse the event; refuse it **before** changing the
    /// state: the host is promised that a refused event leaves the state as the last
    /// good event left it.
    fn apply(state: &mut Self::State, event: &Event) -> Result<(), Rejection>;
}

/// Exports a [`Reducer`] as the component's implementation of the `plugin` world.
///
/// Call it once per reducer crate, at the top level, with a type that implements
/// [`Reducer`]:
///
/// ```
/// # use streamfold_guest::{Event, Reducer, Rejection};
/// # struct User;
/// # impl Reducer for User {
/// #     const AGGREGATE_TYPE: &'static str = "user";
/// #     const HANDLES: &'static [&'static str] = &[];
/// #     type State = ();
/// #     fn apply(_: &mut (), _: &Event) -> Result<(), Rejection> { Ok(()) }
/// # }
/// streamfold_guest::export!(User);
/// ```
///
/// The reducer's name and version (what `info` reports) default to the calling
/// crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`; either can be given instead:
/// `export!(User, name = "users", version = "2.0.0")`.
///
/// Native builds (unit tests, docs) check the reducer but export nothing: only a
/// `wasm32` build is a component.
#[macro_export]
macro_rules! export {
    ($reducer:ty $(,)?) => {
        $crate::export!(
            $reducer,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($reducer:ty, name = $name:expr $(,)?) => {
        $crate::export!($reducer, name = $name, version = env!("CARGO_PKG_VERSION"));
    };
    ($reducer:ty, version = $version:expr $(,)?) => {
        $crate::export!($reducer, name = env!("CARGO_PKG_NAME"), version = $version);
    };
    ($reducer:ty, name = $name:expr, version = $version:expr $(,)?) => {
        const _: () = {
            struct __StreamfoldReducer;

            impl $crate::__rt::Guest for __StreamfoldReducer {
                type Aggregate = $crate::__rt::AggregateResource<$reducer>;

                fn info() -> $crate::__rt::WitInfo {
                    $crate::__rt::info::<$reducer>($name, $version)
                }
            }

            // Native builds (unit tests, docs) export nothing: the component ABI's
            // symbol names are not valid in a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::__rt::export_plugin! { __StreamfoldReducer with_types_in $crate::__rt }
            // Keeps the reducer alive for the dead-code lint in native builds.
            #[cfg(not(target_arch = "wasm32"))]
            #[used]
            static __STREAMFOLD_INFO: fn() -> $crate::__rt::WitInfo =
                <__StreamfoldReducer as $crate::__rt::Guest>::info;
        };
    };
}

/// Exports a [`Projection`] as the component's implementation of the
/// `projection-plugin` world.
///
/// Call it once per projection crate, at the top level, with a type that implements
/// [`Projection`]:
///
/// ```
/// # use streamfold_guest::{Projection, ProjectionEvent, ReadModel, Rejection};
/// # struct Names;
/// # impl Projection for Names {
/// #     const SOURCES: &'static [&'static str] = &["user"];
/// #     const HANDLES: &'static [&'static str] = &[];
/// #     fn apply(_: &ProjectionEvent, _: &mut ReadModel<'_>) -> Result<(), Rejection> { Ok(()) }
/// # }
/// streamfold_guest::export_projection!(Names);
/// ```
///
/// The projection's name and version (what `info` reports) default to the calling
/// crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`; either can be given instead:
/// `export_projection!(Names, name = "names", version = "2.0.0")`. A crate exports
/// one reducer or one projection, never both.
///
/// Native builds (unit tests, docs) check the projection but export nothing.
#[macro_export]
macro_rules! export_projection {
    ($projection:ty $(,)?) => {
        $crate::export_projection!(
            $projection,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($projection:ty, name = $name:expr $(,)?) => {
        $crate::export_projection!(
            $projection,
            name = $name,
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($projection:ty, version = $version:expr $(,)?) => {
        $crate::export_projection!(
            $projection,
            name = env!("CARGO_PKG_NAME"),
            version = $version
        );
    };
    ($projection:ty, name = $name:expr, version = $version:expr $(,)?) => {
        const _: () = {
            struct __StreamfoldProjection;

            impl $crate::__rt::projection::Guest for __StreamfoldProjection {
                fn info() -> $crate::__rt::projection::WitInfo {
                    $crate::__rt::projection::info::<$projection>($name, $version)
                }

                fn apply(
                    events: ::std::vec::Vec<$crate::__rt::projection::WitEvent>,
                ) -> ::std::result::Result<
                    (),
                    $crate::__rt::projection::streamfold::projection::types::ProjectionError,
                > {
                    $crate::__rt::projection::apply::<$projection>(events)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__rt::projection::export_projection_plugin! {
                __StreamfoldProjection with_types_in $crate::__rt::projection
            }
            #[cfg(not(target_arch = "wasm32"))]
            #[used]
            static __STREAMFOLD_INFO: fn() -> $crate::__rt::projection::WitInfo =
                <__StreamfoldProjection as $crate::__rt::projection::Guest>::info;
        };
    };
}

/// The README's examples, compiled as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Misuse is a compile error that names the problem.
///
/// Exporting a type that is not a reducer: "the trait bound `NotAReducer: Reducer`
/// is not satisfied", at the `export!` call.
///
/// ```compile_fail,E0277
/// struct NotAReducer;
/// streamfold_guest::export!(NotAReducer);
/// ```
///
/// A reducer without a state type: "not all trait items implemented, missing: `State`".
///
/// ```compile_fail,E0046
/// use streamfold_guest::{Event, Reducer, Rejection};
/// struct NoState;
/// impl Reducer for NoState {
///     const AGGREGATE_TYPE: &'static str = "x";
///     const HANDLES: &'static [&'static str] = &[];
///     fn apply(_: &mut u8, _: &Event) -> Result<(), Rejection> { Ok(()) }
/// }
/// ```
///
/// `apply` with the wrong signature: "method `apply` has an incompatible type for trait".
///
/// ```compile_fail,E0053
/// use streamfold_guest::{Event, Reducer, Rejection};
/// struct Wrong;
/// impl Reducer for Wrong {
///     const AGGREGATE_TYPE: &'static str = "x";
///     const HANDLES: &'static [&'static str] = &[];
///     type State = u8;
///     fn apply(_: &mut u8, _: Event) -> Result<(), Rejection> { Ok(()) }
/// }
/// streamfold_guest::export!(Wrong);
/// ```
///
/// A state type that serde cannot deserialize.
///
/// ```compile_fail,E0277
/// use streamfold_guest::{Event, Reducer, Rejection};
/// #[derive(Default, serde::Serialize)]
/// struct Opaque;
/// struct NoSerde;
/// impl Reducer for NoSerde {
///     const AGGREGATE_TYPE: &'static str = "x";
///     const HANDLES: &'static [&'static str] = &[];
///     type State = Opaque;
///     fn apply(_: &mut Opaque, _: &Event) -> Result<(), Rejection> { Ok(()) }
/// }
/// ```
#[cfg(doctest)]
pub struct MisuseDoctests;

#[cfg(test)]
mod tests {
    /// The README shows the `user` plugin as it is.
    #[test]
    fn the_readme_shows_the_real_user_plugin() {
        let readme = include_str!("../README.md");
        let user = include_str!("../../plugins/user/src/lib.rs");
        let code: Vec<&str> = user
            .lines()
            .filter(|line| !line.starts_with("//!"))
            .take_while(|line| *line != "#[cfg(test)]")
            .collect();
        let code = code.join("\n");
        assert!(
            readme.contains(code.trim()),
            "update the user example in guest-sdk/README.md"
        );
    }
}
