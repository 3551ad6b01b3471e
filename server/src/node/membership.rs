//! Membership changes an operator asks for: add a learner, promote it, remove a member. Leader
//! only; each change is one openraft membership change (joint consensus, then uniform), which
//! this waits for. Safety rules:
//! - Members join as learners (no vote) and become voters only by promotion, which is refused
//!   until the learner holds at least [`PROMOTE_MATCH_PERCENT`]% of the leader's log (etcd's
//!   `ErrLearnerNotReady` rule), so a new voter never slows commits while it catches up.
//! - Removing a voter is refused when the remaining voters would not have a quorum of members
//!   answering right now (unless forced), and the last voter is never removed.
//! - Ids are never reused while a member holds them.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{ChangeMembers, ServerState};

use super::rejoin::RejoinReply;
use super::Node;
use crate::error::{Error, MembershipRefusal, Result};
use crate::log_entry::{Command, Proposal};
use crate::raft::{NodeId, PeerNode};

/// A learner is promoted only when its match index is at least this share of the leader's last
/// log index.
pub const PROMOTE_MATCH_PERCENT: u64 = 90;
/// How long a remaining voter may take to answer the liveness probe before a removal.
const LIVENESS_PROBE: Duration = Duration::from_millis(300);

/// Whether a learner at `matched` may be promoted when the leader's last log index is `last`.
pub fn promotable(matched: u64, last: u64) -> bool {
    matched.saturating_mul(100) >= last.saturating_mul(PROMOTE_MATCH_PERCENT)
}

/// Whether `live` answering voters out of `remaining` keep a quorum.
pub fn keeps_quorum(remaining: usize, live: usize) -> bool {
    remaining > 0 && live > remaining / 2
}

fn refused(reason: MembershipRefusal, message: String) -> Error {
    Error::Membership { reason, message }
}

impl Node {
    pub(super) fn require_leader(&self) -> Result<()> {
        let metrics = self.router().raft().metrics();
        let m = metrics.borrow();
        if m.state == ServerState::Leader {
            return Ok(());
        }
        let leader_id = m.current_leader;
        drop(m);
        Err(self.router().with_leader_hint(Error::NotLeader {
            node_id: self.node_id(),
            leader_id,
            leader_addr: None,
            reached_raft: false,
        }))
    }

    /// Per member: (match index, lag) as the leader sees it; empty on a follower.
    pub fn replication_progress(&self) -> std::collections::BTreeMap<NodeId, (u64, u64)> {
        let metrics = self.router().raft().metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let mut out = std::collections::BTreeMap::new();
        if let Some(r) = m.replication.as_ref() {
            for (id, matched) in r.iter() {
                let matched = matched.map_or(0, |l| l.index);
                out.insert(*id, (matched, last.saturating_sub(matched)));
            }
        }
        out
    }

    /// One membership change; `retain`: voters it removes stay learners.
    async fn change(&self, change: ChangeMembers<NodeId, PeerNode>, retain: bool) -> Result<()> {
        // The quorum the read lease counts in is moving: no lease until the change ends.
        let _no_lease = self.router().read_lease().suspend();
        self.router()
            .raft()
            .change_membership(change, retain)
            .await
            .map(|_| ())
            .map_err(|e| Error::OutcomeUnknown(format!("membership change did not complete: {e}")))
    }

    /// Adds `id` as a learner at `peer_addr` (and records its client address, if given).
    ///
    /// # Errors
    /// `NotLeader` on a follower; `Membership(Exists)` when the id is a member.
    pub async fn member_add(&self, id: NodeId, peer_addr: String, client_addr: String) -> Result<()> {
        self.require_leader()?;
        if self.members().iter().any(|m| m.id == id) {
            return Err(refused(
                MembershipRefusal::Exists,
                format!("node {id} is already a member; remove it first or pick another id"),
            ));
        }
        self.router()
            .raft()
            .add_learner(id, PeerNode { peer_addr }, false)
            .await
            .map_err(|e| Error::OutcomeUnknown(format!("adding learner {id} did not complete: {e}")))?;
        if !client_addr.is_empty() {
            let size = client_addr.len() + 16;
            let proposal = Proposal { request_id: None, command: Command::RegisterNode { node_id: id, client_addr } };
            self.propose(proposal, size).await?;
        }
        Ok(())
    }

    /// Promotes learner `id` to a voter.
    ///
    /// # Errors
    /// `NotLeader`; `Membership(NotFound)` when it is not a learner; `Membership(LearnerNotReady)`
    /// until it has caught up.
    pub async fn member_promote(&self, id: NodeId) -> Result<()> {
        self.require_leader()?;
        let member = self.members().into_iter().find(|m| m.id == id);
        match member {
            None => return Err(refused(MembershipRefusal::NotFound, format!("node {id} is not a member"))),
            Some(m) if m.voter => {
                return Err(refused(
                    MembershipRefusal::NotFound,
                    format!("node {id} is already a voter, not a learner"),
                ))
            }
            Some(_) => {}
        }
        let last = self.status().last_log_index;
        let matched = self.replication_progress().get(&id).map_or(0, |(m, _)| *m);
        if !promotable(matched, last) {
            return Err(refused(
                MembershipRefusal::LearnerNotReady,
                format!(
                    "learner {id} holds the log up to index {matched} of {last}; it is promoted from \
                     {PROMOTE_MATCH_PERCENT}%: wait for it to catch up (is it running with --join?) and retry"
                ),
            ));
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await
    }

    /// Removes member `id` (voter or learner).
    ///
    /// # Errors
    /// `NotLeader`; `Membership(NotFound)`; `Membership(QuorumAtRisk)` when the remaining voters
    /// would lack a quorum of live members (unless `force`) or it is the last voter.
    pub async fn member_remove(&self, id: NodeId, force: bool) -> Result<()> {
        self.require_leader()?;
        let members = self.members();
        let Some(member) = members.iter().find(|m| m.id == id) else {
            return Err(refused(MembershipRefusal::NotFound, format!("node {id} is not a member")));
        };
        if !member.voter {
            return self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await;
        }
        let remaining: Vec<_> = members.iter().filter(|m| m.voter && m.id != id).collect();
        if remaining.is_empty() {
            return Err(refused(MembershipRefusal::QuorumAtRisk, format!("node {id} is the last voter")));
        }
        let mut live = 0;
        for m in &remaining {
            if m.id == self.node_id() || self.answers(&m.peer_addr).await {
                live += 1;
            }
        }
        if !keeps_quorum(remaining.len(), live) && !force {
            return Err(refused(
                MembershipRefusal::QuorumAtRisk,
                format!(
                    "removing voter {id} leaves {} voters of which only {live} answer now: no quorum; \
                     bring members back first, or force it",
                    remaining.len()
                ),
            ));
        }
        self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await
    }

    /// The leader's side of a rejoin (`node::rejoin`): a voter that lost its data is demoted to
    /// a learner; a learner is promoted once it holds [`PROMOTE_MATCH_PERCENT`]% of the log (the
    /// same rule as [`Node::member_promote`]).
    ///
    /// # Errors
    /// `NotLeader` on a follower; a membership change that did not complete.
    pub async fn readmit(&self, id: NodeId) -> Result<RejoinReply> {
        self.require_leader()?;
        let Some(member) = self.members().into_iter().find(|m| m.id == id) else {
            return Ok(RejoinReply::NotAMember);
        };
        let last = self.status().last_log_index;
        let matched = self.replication_progress().get(&id).map_or(0, |(m, _)| *m);
        if member.voter {
            // Kept as a learner. The leader's replication progress for it still says it holds
            // the log it lost; openraft's `loosen-follower-log-revert` feature (enabled in the
            // workspace) lets the leader restart its search instead of asserting that a
            // follower never loses entries.
            tracing::warn!(id, "member lost its data: demoting it to a learner until it has caught up");
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true).await?;
            return Ok(RejoinReply::Learner { matched, target: last });
        }
        if !promotable(matched, last) {
            return Ok(RejoinReply::Learner { matched, target: last });
        }
        tracing::info!(id, matched, "rejoining learner caught up: promoting it to a voter");
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await?;
        Ok(RejoinReply::Voter)
    }

    /// Whether the member at `peer_addr` answers a peer call now.
    async fn answers(&self, peer_addr: &str) -> bool {
        let probe = super::rejoin::ask_member_state(self.router().peers(), peer_addr, self.node_id());
        matches!(tokio::time::timeout(LIVENESS_PROBE, probe).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_needs_ninety_percent_of_the_log() {
        assert!(promotable(90, 100));
        assert!(!promotable(89, 100));
        assert!(promotable(0, 0));
        assert!(promotable(10, 10));
    }

    #[test]
    fn a_removal_keeps_a_quorum_of_live_voters() {
        assert!(keeps_quorum(2, 2));
        assert!(!keeps_quorum(2, 1));
        assert!(keeps_quorum(4, 3));
        assert!(!keeps_quorum(4, 2));
        assert!(!keeps_quorum(0, 0));
    }
}
