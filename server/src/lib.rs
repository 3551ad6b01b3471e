//! Conclave server: a Raft-replicated coordination service.
//!
//! Layers, by module:
//! - [`config`]: flags and environment → validated [`config::Config`].
//! - [`serve`]: wiring; [`serve::run`] runs a node (used by the binary and tests).
//! - [`node`]: the narrow facade services use, the peer service, start-up and rejoin.
//! - [`types`]: openraft's type configuration (a leaf).
//! - [`ops`]: readiness (gRPC health, `/readyz`), liveness and Prometheus metrics.
//! - [`service`]: the public gRPC services, one per file, thin handlers.
//! - [`auth`]: `--auth`: tokens, password hashing, the permission checks of the services.
//! - [`sessions`]: the leader's in-memory session deadlines and expiry loop.
//! - [`raft`]: openraft glue: type config, peer network, write batching, read index, routing.
//! - [`storage`]: the Raft log (sled, behind a narrow trait) and snapshot files.
//! - [`state_machine`]: the deterministic state machine (revisioned KV, txns, counters, dedup).
//! - [`log_entry`]: the versioned Raft log entry format (separate from the public API).
//! - [`error`]: the error enum and its single conversion to `tonic::Status`.
//! - [`limits`]: request limits.
//! - [`zk`]: the ZooKeeper wire protocol front end (`--zk-addr`).
//! - [`robustness`]: the properties the fuzz targets check (and `cargo test` on their corpora).
//! - [`listener`]: the client and peer ports' listeners, plain or TLS.

pub mod auth;
pub mod config;
pub mod error;
pub mod limits;
pub mod listener;
pub mod log_entry;
pub mod node;
pub mod ops;
pub mod raft;
pub mod restore;
pub mod robustness;
pub mod serve;
pub mod service;
pub mod sessions;
pub mod state_machine;
pub mod storage;
pub mod types;
pub mod zk;
