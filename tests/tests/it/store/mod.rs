//! The event store (`streamfold-store`) against a real redis-server, one per test
//! (`streamfold_test_support::Env`), by feature. The fixtures they share (numbered
//! events, revisions and ids of what was read, raw `XLEN`/`XRANGE`) are in
//! `streamfold-test-support`.

mod append;
mod concurrency;
mod connection;
mod corrupt_data;
mod group_commit;
mod groups;
pub(crate) mod partitions;
mod projections;
mod read;
mod retry;
mod seed_layout;
mod snapshot;
mod time_travel;
mod tls;
mod validation;
