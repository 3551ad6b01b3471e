//! Membership faults: a node replaced by one with the same id and a fresh (empty) data dir,
//! as a StatefulSet pod whose volume was replaced. It is killed (`kill -9`), its data dir emptied,
//! and restarted on heal with its usual flags: the server must recognize it, keep it out of
//! elections, re-add it as a learner and promote it back, losing no acknowledged write.
//!
//! Only when every member is a running voter with a registered client address (the previous
//! replacement has finished rejoining and nobody else is down), so the nemesis never takes away
//! more copies of the data than Raft tolerates; otherwise the fault is skipped and says so.
//! Adding and removing extra members (`member add|promote|remove`) is not in this nemesis yet.

use std::path::Path;

use conclave_testkit::Cluster;

/// Whether a replacement may run now: all members voters with registered addresses, all running.
pub async fn safe_to_replace(cluster: &mut Cluster) -> bool {
    let ids: Vec<u64> = cluster.nodes().iter().map(|n| n.id).collect();
    if !ids.iter().all(|id| cluster.node_is_running(*id)) {
        return false;
    }
    let Some(leader) = super::executor::leader_of(cluster).await else { return false };
    let Ok(Ok(st)) = tokio::time::timeout(std::time::Duration::from_millis(700), cluster.status(leader)).await else {
        return false;
    };
    st.members.len() == ids.len() && st.members.iter().all(|m| m.voter && !m.client_addr.is_empty())
}

/// Kills the node and empties its data dir (the dir itself stays: it may be a mount point).
///
/// # Errors
/// When the node does not exist or its data dir cannot be emptied.
pub fn replace(cluster: &mut Cluster, id: u64) -> anyhow::Result<()> {
    cluster.kill(id)?;
    empty_dir(&cluster.node(id).data_dir)
}

fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
