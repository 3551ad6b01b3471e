//! Crashes: `kill -9` of chosen nodes, restarted from their data directories on heal.

use conclave_testkit::Cluster;

/// Kills the nodes (SIGKILL).
///
/// # Errors
/// When a node does not exist.
pub fn kill(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for &id in nodes {
        cluster.kill(id)?;
    }
    Ok(())
}

/// Restarts the nodes that are not running.
///
/// # Errors
/// When a node cannot be spawned.
pub fn restart(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for &id in nodes {
        if !cluster.node_is_running(id) {
            cluster.restart(id)?;
        }
    }
    Ok(())
}
