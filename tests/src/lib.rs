//! The reducer components the integration tests and the benchmarks load, built from
//! source by `build.rs` (never committed): see [`plugins`]. The private
//! `redis-server` and the store connected to it are in `streamfold-test-support`.

pub mod plugins;
