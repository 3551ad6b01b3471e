//! Prompt elections after a pre-vote: a follower that has not heard from a leader for a whole
//! leader lease campaigns at once, but only when the other voters confirm it can win.
//!
//! Why: openraft 0.9 lets a voter grant a vote only after its leader lease (the maximum
//! election timeout since it last heard from the leader) has expired, and only to a candidate
//! whose log is at least as up to date. Its own timer campaigns at lease + a random election
//! timeout, and when the first candidate has the shorter log (likely under write load) the
//! rejected attempt is followed by a longer wait: a leader's death cost 0.6 to 1.5 s.
//!
//! What: every [`TICK`], a follower whose lease has expired asks the other voters
//! (`ElectionProbe`, read-only) how long ago they heard from a leader and what their last log
//! id is, and calls `trigger().elect()` only if
//! - no voter that answered is the leader (it is alive: only its heartbeats are not reaching
//!   us, and openraft's own timer decides),
//! - a quorum, itself included, is past its lease (so the votes can be granted now; a node cut
//!   off from the others never starts a campaign it cannot win from here),
//! - no voter past its lease has a greater last log id, or an equal one and a lower node id
//!   (that voter would win, or would split the vote: it campaigns instead).
//!
//! Guarantees: this only chooses *when* to start an election; votes, terms and log checks are
//! openraft's, so safety does not depend on it. openraft's timer stays on as the fallback.
//! Failures (a peer that does not answer within [`PROBE_TIMEOUT`]) count as "no vote".

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::network::{Call, PeerNetwork};
use super::voting_gate::VotingGate;
use super::{LogId, NodeId, Raft};
use crate::storage::log_store::LogStore;

/// How often a follower checks its lease.
pub const TICK: Duration = Duration::from_millis(20);
/// How long a probe may take before the peer counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// A voter's lease must have expired by at least this much for its vote to count: the vote
/// request reaches it a little later than the probe, but clocks and scheduling differ.
const LEASE_MARGIN: Duration = Duration::from_millis(5);

/// A voter's answer to a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Milliseconds since it last heard from a leader or granted a vote (`u64::MAX`: never).
    pub silent_ms: u64,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
    /// Whether it is the leader.
    pub leader: bool,
}

/// The prompt-election driver of one node.
pub struct PromptElection {
    node_id: NodeId,
    raft: Raft,
    log: LogStore,
    peers: PeerNetwork,
    lease: Duration,
    gate: Arc<VotingGate>,
}

/// The voters other than this node (id, peer address), and the quorum size; `None` when this
/// node is not a voter or the membership is in a joint (changing) configuration.
type Voters = (Vec<(NodeId, String)>, usize);

impl PromptElection {
    /// A driver for `node_id`; `lease` is openraft's leader lease (the maximum election timeout).
    /// It never starts an election while `gate` is closed.
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        log: LogStore,
        peers: PeerNetwork,
        lease: Duration,
        gate: Arc<VotingGate>,
    ) -> Arc<Self> {
        Arc::new(Self { node_id, raft, log, peers, lease, gate })
    }

    /// Starts the periodic check; it ends when Raft shuts down.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if this.raft.metrics().borrow().state == ServerState::Shutdown {
                    return;
                }
                if let Err(e) = this.step().await {
                    tracing::debug!("prompt election check: {e}");
                }
            }
        })
    }

    /// This node's answer to a probe.
    ///
    /// # Errors
    /// When Raft has stopped or the log cannot be read.
    pub async fn probe_reply(&self) -> Result<ProbeReply, String> {
        let (state, silent) = self.local_state().await?;
        let last_log_id = self.log.last_log_id().await.map_err(|e| e.to_string())?;
        // A node that may not vote reports itself as hearing a leader: never count its vote.
        let silent = if self.gate.open() { silent } else { Some(Duration::ZERO) };
        Ok(ProbeReply {
            silent_ms: silent.map_or(u64::MAX, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_log_id,
            leader: state == ServerState::Leader,
        })
    }

    /// Server state and the time since the vote was last refreshed (a leader's heartbeat, a
    /// granted vote); `None` when it never was.
    async fn local_state(&self) -> Result<(ServerState, Option<Duration>), String> {
        let c = super::leader_presence::contact(&self.raft).await;
        if c.state == ServerState::Shutdown {
            return Err("raft has stopped".into());
        }
        Ok((c.state, c.silent_for))
    }

    fn voters(&self) -> Option<Voters> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Follower {
            return None;
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() != 1 || !membership.voter_ids().any(|id| id == self.node_id) {
            return None;
        }
        let others: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter(|id| *id != self.node_id)
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.peer_addr.clone())))
            .collect();
        let voters = others.len() + 1; // this node too
        let quorum = voters / 2 + 1;
        Some((others, quorum))
    }

    async fn step(&self) -> Result<(), String> {
        if !self.gate.open() {
            return Ok(());
        }
        let Some((others, quorum)) = self.voters() else { return Ok(()) };
        if others.is_empty() {
            return Ok(()); // a single voter elects itself at once
        }
        let (state, silent) = self.local_state().await?;
        if state != ServerState::Follower || silent.is_some_and(|s| s <= self.lease + LEASE_MARGIN) {
            return Ok(());
        }
        let mine = self.log.last_log_id().await.map_err(|e| e.to_string())?;
        let replies = futures::future::join_all(
            others
                .iter()
                .map(|(id, addr)| async move { (*id, tokio::time::timeout(PROBE_TIMEOUT, self.probe(addr)).await) }),
        )
        .await;
        let replies: Vec<(NodeId, Option<ProbeReply>)> =
            replies.into_iter().map(|(id, r)| (id, r.ok().and_then(Result::ok))).collect();
        let lease_ms = u64::try_from((self.lease + LEASE_MARGIN).as_millis()).unwrap_or(u64::MAX);
        if !should_campaign(self.node_id, mine, quorum, lease_ms, &replies) {
            return Ok(());
        }
        tracing::info!(
            node = self.node_id,
            silent_ms = silent.map(|d| d.as_millis()),
            "no leader heard for a lease and a quorum can vote for this node: campaigning now"
        );
        self.raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    async fn probe(&self, addr: &str) -> Result<ProbeReply, String> {
        self.peers.call(addr, Call::ElectionProbe, &self.node_id).await.map_err(|e| e.to_string())
    }
}

/// The pre-vote decision: whether node `me` (last log id `mine`, lease expired) should campaign
/// now, given the other voters' answers (`None`: no answer) and the quorum size.
pub fn should_campaign(
    me: NodeId,
    mine: Option<LogId>,
    quorum: usize,
    lease_ms: u64,
    replies: &[(NodeId, Option<ProbeReply>)],
) -> bool {
    let mut grantable = 1; // this node's own vote
    for (id, reply) in replies {
        let Some(r) = reply else { continue };
        if r.leader {
            return false;
        }
        if r.silent_ms <= lease_ms {
            continue; // still within its lease: it would reject the vote
        }
        if r.last_log_id > mine || (r.last_log_id == mine && *id < me) {
            return false; // it would win (or split the vote): it campaigns instead
        }
        grantable += 1;
    }
    grantable >= quorum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(openraft::CommittedLeaderId::new(term, 1), index))
    }

    fn silent(ms: u64, last: Option<LogId>) -> Option<ProbeReply> {
        Some(ProbeReply { silent_ms: ms, last_log_id: last, leader: false })
    }

    #[test]
    fn campaigns_when_a_quorum_is_past_its_lease_and_no_log_is_longer() {
        assert!(should_campaign(2, log(3, 10), 2, 300, &[(3, silent(400, log(3, 9)))]));
        // Equal logs: the lower id campaigns, the higher one waits for it.
        assert!(should_campaign(2, log(3, 10), 2, 300, &[(3, silent(400, log(3, 10)))]));
        assert!(!should_campaign(3, log(3, 10), 2, 300, &[(2, silent(400, log(3, 10)))]));
    }

    #[test]
    fn defers_to_a_voter_with_a_longer_log() {
        assert!(!should_campaign(2, log(3, 9), 2, 300, &[(3, silent(400, log(3, 10)))]));
        // A later term beats a longer log of an earlier term.
        assert!(!should_campaign(2, log(3, 50), 2, 300, &[(3, silent(400, log(4, 10)))]));
        assert!(should_campaign(3, log(4, 10), 2, 300, &[(2, silent(400, log(3, 50)))]));
    }

    #[test]
    fn never_campaigns_without_grantable_votes_or_while_a_leader_answers() {
        // The other voter still hears the leader (its lease holds): no quorum.
        assert!(!should_campaign(2, log(3, 10), 2, 300, &[(3, silent(100, log(3, 1)))]));
        // Cut off: nobody answers.
        assert!(!should_campaign(2, log(3, 10), 2, 300, &[(1, None), (3, None)]));
        // The leader itself answers: it is alive.
        let leader = Some(ProbeReply { silent_ms: 0, last_log_id: log(3, 10), leader: true });
        assert!(!should_campaign(2, log(3, 10), 2, 300, &[(1, leader), (3, silent(400, log(3, 1)))]));
        // Five voters: two silent peers plus itself make a quorum of three; one is not enough.
        let five = [(1, None), (3, silent(400, log(3, 1))), (4, silent(400, log(3, 1))), (5, None)];
        assert!(should_campaign(2, log(3, 10), 3, 300, &five));
        assert!(!should_campaign(2, log(3, 10), 3, 300, &five[..2]));
    }
}
