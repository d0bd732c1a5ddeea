//! All integration tests, in one binary (one link, one place to look).
//! Each module starts its own `redis-server` on a free loopback port.

mod cluster;
mod conformance;
mod instances;
mod live;
mod logs;
mod projection_langs;
mod projection_sandbox;
mod projections;
mod runtime;
mod server;
mod state_cache;
mod store;
mod subscribe;
mod untrusted;
