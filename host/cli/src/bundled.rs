//! The demo's reducer, built from `plugins/user` by `build.rs` and compiled into the
//! binary, so `streamfold demo` works from any folder once installed.

/// The `user` reducer component (`plugins/user`).
pub(crate) const USER_REDUCER: &[u8] = include_bytes!(env!("STREAMFOLD_BUNDLED_USER_WASM"));
