//! Replacing an etcd member that lost its data dir: the membership calls (the `Cluster` service,
//! what `etcdctl member remove` and `member add` send; etcd refuses a member back on an empty
//! data dir under its old id), and how the rebuilt member caught up.

use std::path::Path;
use std::time::{Duration, Instant};

use super::channel;
use crate::etcdpb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;

/// Bound on the whole replacement.
const BUDGET: Duration = Duration::from_secs(60);
/// Bound on one call.
const CALL: Duration = Duration::from_secs(5);

/// Removes the member listed with `peer_url`, then adds a new one (new id, empty name until it
/// starts) with the same peer URL, through the members at `others` (client `host:port`). Driven
/// by the member list, one call at a time, so a call retried after a lost answer is never done
/// twice. Returns the old and the new member id.
///
/// # Errors
/// When it is not done within 60 s (the last refusal or failure is in the message).
pub async fn replace_member(others: &[String], peer_url: &str) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(!others.is_empty(), "etcd: no other member to ask");
    let deadline = Instant::now() + BUDGET;
    let (mut old, mut last) = (0, String::from("no member answered"));
    for attempt in 0usize.. {
        anyhow::ensure!(
            Instant::now() < deadline,
            "etcd: member remove / add of {peer_url} not done within {BUDGET:?} (last: {last})"
        );
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut cluster = ClusterClient::new(channel(&others[attempt % others.len()])?);
        let listed = match tokio::time::timeout(CALL, cluster.member_list(pb::MemberListRequest {})).await {
            Ok(Ok(r)) => r.into_inner().members,
            Ok(Err(e)) => {
                last = format!("member list: {e}");
                continue;
            }
            Err(_) => {
                last = "member list timed out".into();
                continue;
            }
        };
        let step = match listed.iter().find(|m| m.peer_ur_ls.iter().any(|u| u == peer_url)) {
            // Added and not started yet: done.
            Some(m) if m.name.is_empty() && m.id != old => return Ok((old, m.id)),
            Some(m) => {
                old = m.id;
                let req = pb::MemberRemoveRequest { id: m.id };
                tokio::time::timeout(CALL, cluster.member_remove(req)).await.map(|r| r.map(|_| ()))
            }
            None => {
                let req = pb::MemberAddRequest { peer_ur_ls: vec![peer_url.to_owned()], is_learner: false };
                tokio::time::timeout(CALL, cluster.member_add(req)).await.map(|r| r.map(|_| ()))
            }
        };
        last = match step {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "call timed out".into(),
        };
    }
    unreachable!("the loop above only ends by returning")
}

/// Whether the rebuilt member at `data_dir` holds a Raft snapshot file (it received the
/// leader's snapshot) or caught up from the log alone, as a note for the report.
pub fn snapshot_note(data_dir: &Path) -> String {
    let snaps = std::fs::read_dir(data_dir.join("member/snap"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".snap")).count())
        .unwrap_or(0);
    if snaps > 0 {
        "etcd: the member holds a Raft snapshot file (member/snap/*.snap): it received the leader's snapshot".to_owned()
    } else {
        "etcd: no Raft snapshot file in member/snap: the member caught up from the leader's log (etcd snapshots \
         every --snapshot-count 100,000 entries)"
            .to_owned()
    }
}
