//! Membership faults: a node replaced by one with the same id and a fresh (empty) data dir,
//! as a StatefulSet pod whose volume was replaced. It is killed (`kill -9`), its data dir emptied,
//! and restarted on heal with its usual flags: the server must recognize it, keep it out of
//! elections, re-add it as a learner and promote it back, losing no acknowledged write.
//!
//! A removal: a voter (one node or the leader) is removed with `member remove` (refused, and the
//! fault skipped, when the rest lack a live quorum), killed and its data dir emptied; on heal it
//! is added back with `member add` (a learner), restarted with its usual flags on the empty dir,
//! and the server's own flow catches it up and promotes it (`member promote`'s 90% rule).
//!
//! Only when every member is a running voter with a registered client address (the previous
//! replacement has finished rejoining and nobody else is down), so the nemesis never takes away
//! more copies of the data than Raft tolerates; otherwise the fault is skipped and says so.

use std::path::Path;

use conclave_testkit::Cluster;

/// Whether a replacement may run now: all members voters with registered addresses, all running.
pub async fn safe_to_replace(cluster: &mut Cluster) -> bool {
    let ids: Vec<u64> = cluster.nodes().iter().map(|n| n.id).collect();
    if !ids.iter().all(|id| cluster.node_is_running(*id)) {
        return false;
    }
    let Some(leader) = super::leader_of(cluster).await else { return false };
    let Ok(Ok(st)) = tokio::time::timeout(std::time::Duration::from_millis(700), cluster.status(leader)).await else {
        return false;
    };
    st.members.len() == ids.len() && st.members.iter().all(|m| m.voter && !m.client_addr.is_empty())
}

/// How long a membership call of the nemesis may take (the cluster may be electing).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes voter `id` from the cluster (not forced), then kills it and empties its data dir.
/// `Ok(false)`: the cluster refused (the message says why) and nothing was done.
///
/// # Errors
/// When the refusal is not the server's (no answer), or the data dir cannot be emptied.
pub async fn remove(cluster: &mut Cluster, id: u64) -> anyhow::Result<Result<(), String>> {
    let client = cluster.client().await?;
    match tokio::time::timeout(CALL_TIMEOUT, client.member_remove(id, false)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Ok(Err(e.to_string())),
        Err(_) => return Ok(Err(format!("member remove {id} did not answer within {CALL_TIMEOUT:?}"))),
    }
    replace(cluster, id)?;
    Ok(Ok(()))
}

/// Adds removed node `id` back as a learner with its old addresses (retried while the cluster
/// elects, bounded) and restarts it on its emptied data dir; the server promotes it once caught
/// up. Returns what happened, for the history.
///
/// # Errors
/// When the node cannot be restarted.
pub async fn add_back(cluster: &mut Cluster, id: u64) -> anyhow::Result<String> {
    let (peer, client_addr) = (cluster.node(id).peer_addr.clone(), cluster.node(id).client_addr.clone());
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let outcome = loop {
        let attempt =
            async { cluster.client().await?.member_add(id, &peer, &client_addr).await.map_err(anyhow::Error::from) };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(_)) => break format!("n{id} added back as a learner"),
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => break format!("member add {id} failed: {e}"),
            Err(_) => break format!("member add {id} did not answer within {CALL_TIMEOUT:?}"),
            Ok(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    cluster.restart(id)?;
    Ok(outcome)
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
