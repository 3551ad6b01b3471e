//! Process pauses: SIGSTOP, then SIGCONT on heal (a GC pause or a frozen VM, as seen by peers).

use conclave_testkit::Cluster;

/// Pauses the nodes.
///
/// # Errors
/// When a node is not running.
pub fn pause(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for &id in nodes {
        cluster.pause(id)?;
    }
    Ok(())
}

/// Resumes the nodes (a node that died meanwhile is left for the kill nemesis to restart).
///
/// # Errors
/// Never for now; kept fallible like the other fault actions.
pub fn resume(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for &id in nodes {
        let _ = cluster.resume(id);
    }
    Ok(())
}
