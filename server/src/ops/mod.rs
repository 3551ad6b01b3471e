//! Operations: the readiness rule and its probes (`grpc.health.v1` on the client port, `/livez`,
//! `/readyz` and `/metrics` on `--metrics-addr`), and the Prometheus metrics.
//!
//! Layer: beside `service`, above `node`. Everything here reads the node through the [`Node`]
//! facade; other layers only call the one-line hooks of [`metrics`] (timers and counters on
//! atomics), never the other way round.
//!
//! [`Node`]: crate::node::Node

pub mod health;
pub mod http;
pub mod metrics;
pub mod rpc_layer;
mod scrape;

pub use scrape::spawn_leader_changes;
