//! Integration tests: real `conclave` processes on loopback, real gRPC, real kills and restarts.
//! One binary, a module per feature, over the shared `conclave-testkit` cluster helper.

mod counter_failover;
mod durability;
mod fail_fast;
mod kv;
mod leases;
mod limits;
mod prompt_election;
mod serializable_reads;
mod sessions;
mod snapshot_catchup;
mod stall;
mod watches;

use std::path::PathBuf;

use conclave_testkit::{Cluster, ClusterOptions};

/// The binary cargo built for this package.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_conclave"))
}

/// Starts `n` nodes with extra flags.
pub async fn cluster(n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
    Cluster::start_with(ClusterOptions {
        nodes: n,
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        binary: Some(binary()),
        ..ClusterOptions::default()
    })
    .await
}

/// Fails the test if any node logged a panic.
pub fn assert_no_panics(c: &Cluster) {
    let panics = c.panics();
    assert!(panics.is_empty(), "server panicked: {panics:?}");
}
