//! Whether this node has lost its leader: no known leader for a sustained period (etcd's
//! `monitorLeader` does the same for streams created with `WithRequireLeader`).
//!
//! A follower cut off from the leader keeps serving its applied state, which then stops
//! moving: a watch stream there would go silent rather than fail. Streams that promise live
//! changes end when this flips, so their clients reconnect to a member that has a leader. A
//! normal election (a few hundred milliseconds without a leader) does not flip it.
//!
//! Known gap: openraft 0.9 has no check-quorum, so an isolated *leader* still names itself
//! and is not detected here.

use std::time::Duration;

use tokio::sync::watch;

use openraft::ServerState;

use super::Raft;

/// Who this node believes leads, and when it last heard from it.
#[derive(Clone, Debug)]
pub struct LeaderContact {
    /// The leader it names (None: none).
    pub leader_id: Option<u64>,
    /// Its own role.
    pub state: ServerState,
    /// Time since it last heard from a leader (a heartbeat, a granted vote); None: never.
    pub silent_for: Option<Duration>,
    /// The commit index it knows (a follower learns the leader's with each AppendEntries, up
    /// to the end of its own log).
    pub committed_index: u64,
}

impl LeaderContact {
    /// Whether this node is the leader itself.
    pub fn is_leader(&self) -> bool {
        self.state == ServerState::Leader
    }

    /// Whether it leads, or names a leader it has heard from within `lease`. (A follower names
    /// its last leader until it votes or campaigns; one that may not campaign, starting up or
    /// rejoining, would name a dead leader forever.)
    pub fn has_live_leader(&self, lease: Duration) -> bool {
        self.is_leader() || (self.leader_id.is_some() && self.silent_for.is_some_and(|s| s <= lease))
    }
}

/// This node's [`LeaderContact`] now (one round trip to the Raft core; a stopped core reads as
/// "no leader, never heard from").
pub async fn contact(raft: &Raft) -> LeaderContact {
    let leader_id = raft.metrics().borrow().current_leader;
    let core = raft
        .with_raft_state(|s| {
            (s.server_state, s.vote_last_modified().map(|t| t.elapsed()), s.committed.map_or(0, |c| c.index))
        })
        .await;
    let (state, silent_for, committed_index) = core.unwrap_or((ServerState::Shutdown, None, 0));
    LeaderContact { leader_id, state, silent_for, committed_index }
}

/// Consecutive leaderless checks after which the leader counts as lost (checked once per
/// election timeout: 1.05-1.2 s by default, twice a slow election with a split vote).
pub const LOST_AFTER_CHECKS: u32 = 8;

/// One check: the new count of consecutive leaderless checks, and whether the leader is lost.
pub fn step(count: u32, has_leader: bool) -> (u32, bool) {
    let count = if has_leader { 0 } else { count.saturating_add(1) };
    (count, count >= LOST_AFTER_CHECKS)
}

/// Starts checking `raft` every `interval` (the election timeout; the leader lease is twice
/// that); the receiver says whether the leader is lost
/// (no leader for [`LOST_AFTER_CHECKS`] checks in a row). The task ends with the Raft node.
pub fn spawn(raft: Raft, interval: Duration) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let metrics = raft.metrics();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tx.closed() => return,
            }
            if metrics.has_changed().is_err() {
                return;
            }
            let has_leader = contact(&raft).await.has_live_leader(interval * 2);
            let (next, lost) = step(count, has_leader);
            count = next;
            tx.send_if_modified(|l| std::mem::replace(l, lost) != lost);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_only_after_enough_leaderless_checks_in_a_row() {
        let mut count = 0;
        let mut lost = false;
        for _ in 0..LOST_AFTER_CHECKS - 1 {
            (count, lost) = step(count, false);
        }
        assert!(!lost, "an election's worth of leaderless checks is not a loss");
        (count, lost) = step(count, false);
        assert!(lost);
        (count, lost) = step(count, true);
        assert!(!lost && count == 0, "a leader again clears it at once");
        (_, lost) = step(count, false);
        assert!(!lost, "the count starts over");
    }
}
