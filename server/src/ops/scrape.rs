//! Gauges filled at scrape time from the node facade, and the task counting leader changes.

use std::sync::Arc;
use std::time::Duration;

use super::health::precheck;
use super::metrics::{global, PeerLabels};
use crate::node::Node;

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sets every scrape-time gauge from `node`; `lease` as in the readiness rule.
pub async fn refresh(node: &Node, lease: Duration, ready: bool) {
    let m = global();
    let contact = node.leader_contact().await;
    let status = node.status();
    m.has_leader.set(i64::from(precheck(&contact, lease).is_none()));
    m.is_leader.set(i64::from(contact.is_leader()));
    m.ready.set(i64::from(ready));
    m.term.set(gauge(status.term));
    m.committed_index.set(gauge(contact.committed_index));
    m.applied_index.set(gauge(status.applied_index));
    m.last_log_index.set(gauge(status.last_log_index));
    m.snapshot_index.set(gauge(status.snapshot_index));
    // Followers that left the membership (or a leader that stepped down) drop their series.
    m.follower_lag.clear();
    for (peer, lag) in node.follower_lag() {
        m.follower_lag.get_or_create(&PeerLabels { peer }).set(gauge(lag));
    }
    if let Ok(s) = node.view(|sm| {
        let sessions = sm.sessions();
        let (keys, leases) = sessions.iter().fold((0, 0), |(k, l), (_, s)| (k + s.keys.len(), l + s.leases.len()));
        (sessions.len(), keys, leases, sm.kv().live_keys(), sm.counters().len(), sm.revision(), sm.compact_revision())
    }) {
        let (sessions, ephemeral, leases, keys, counters, revision, compact) = s;
        m.sessions.set(gauge(sessions as u64));
        m.ephemeral_keys.set(gauge(ephemeral as u64));
        m.leases.set(gauge(leases as u64));
        m.state_keys.set(gauge(keys));
        m.state_counters.set(gauge(counters as u64));
        m.state_revision.set(gauge(revision));
        m.compact_revision.set(gauge(compact));
    }
}

/// Counts every change of the leader this member sees (a known leader replacing none or
/// another); ends when Raft shuts down.
pub fn spawn_leader_changes(node: Arc<Node>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut known = None;
        while let Some(leader) = node.wait_leader_change(known).await {
            if leader.is_some() {
                global().leader_changes.inc();
            }
            known = leader;
        }
    })
}
