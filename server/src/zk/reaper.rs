//! The leader's deleter of expired TTL nodes and empty containers (ZooKeeper's
//! `ContainerManager`): every check interval, the member that is leader reads the candidates
//! from its applied state with its own clock (`StateMachine::zk_reap_candidates`) and proposes
//! them as `Command::ZkReap`, which deletes each only if it is still as seen (no clock in
//! apply). On other members it only waits. A failed proposal (leadership lost, no quorum) is
//! logged and retried at the next interval.

use std::sync::Arc;
use std::time::Duration;

use crate::log_entry::{Command, Proposal};
use crate::node::Node;
use crate::state_machine::ReapRules;

/// Most nodes deleted by one proposal (a huge backlog is spread over several entries).
const MAX_PER_PROPOSAL: usize = 256;

/// Runs until aborted: every `every`, reaps on the leader.
pub async fn run(node: Arc<Node>, every: Duration, rules: ReapRules) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if node.status().role != "leader" {
            continue;
        }
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let Ok(targets) = node.view(|sm| sm.zk_reap_candidates(now_ms, rules)) else { continue };
        for chunk in targets.chunks(MAX_PER_PROPOSAL) {
            let size = 32 + chunk.iter().map(|t| t.path.len() + 16).sum::<usize>();
            let proposal = Proposal { request_id: None, command: Command::ZkReap { targets: chunk.to_vec() } };
            if let Err(e) = node.propose(proposal, size).await {
                tracing::info!("ZooKeeper TTL/container deletion deferred to the next check: {e}");
                break;
            }
        }
    }
}
