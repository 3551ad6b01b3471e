//! Integration tests: real `conclave` processes on loopback, real gRPC, real kills and restarts.
//! One binary, a module per feature, over the shared `conclave-testkit` cluster helper.

mod auth;
mod auth_freshness;
mod backup;
mod catch_up;
mod cluster_id;
mod counter_failover;
mod disk_loss;
mod durability;
mod fail_fast;
mod forwarding;
mod health;
mod hostile;
mod kv;
mod leases;
mod limits;
mod log_format;
mod membership;
mod peer_wire;
mod prompt_election;
mod read_lease;
mod serializable_reads;
mod session_owner;
mod sessions;
mod settings;
mod snapshot_catchup;
mod stall;
mod tls;
mod transfer;
mod watch_streams;
mod watches;
mod zk_config;
mod zk_gaps;
mod zk_tls;
mod zookeeper;

use std::path::PathBuf;

use conclave_testkit::{Cluster, ClusterOptions};

/// The binary cargo built for this package, or `$CONCLAVE_TEST_BINARY` (to run a new test
/// against an older build and see it fail there).
pub fn binary() -> PathBuf {
    std::env::var_os("CONCLAVE_TEST_BINARY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_conclave")), PathBuf::from)
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

/// Two distinct free addresses on `ip` (a peer and a client address for a member started by hand).
pub fn two_free_addrs(ip: std::net::Ipv4Addr) -> anyhow::Result<[String; 2]> {
    let v = conclave_testkit::free_addrs(ip, 2)?;
    Ok([v[0].clone(), v[1].clone()])
}

/// Fails the test if any node logged a panic.
pub fn assert_no_panics(c: &Cluster) {
    let panics = c.panics();
    assert!(panics.is_empty(), "server panicked: {panics:?}");
}

/// Waits until `n` members have registered their client addresses (each has taken part).
pub async fn wait_for_registrations(c: &Cluster, n: usize) -> anyhow::Result<()> {
    conclave_testkit::wait_for("every member to register", std::time::Duration::from_secs(30), || async {
        let leader = c.wait_for_leader(std::time::Duration::from_secs(30)).await.ok()?;
        let st = c.status(leader).await.ok()?;
        (st.members.iter().filter(|m| !m.client_addr.is_empty()).count() >= n).then_some(())
    })
    .await
}

/// A server process started by hand (restore, join); killed when dropped.
pub struct ServerProcess(pub std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
