//! The node: the one narrow facade the public services use ([`Node`]), the peer protocol's
//! server side, and the start-up / disk-loss rejoin flow. `crate::serve` wires it all up.
//!
//! Layers: `service` → `node` → {`raft`, `sessions`, `storage`, `state_machine`}. Services never
//! reach into Raft, the router or the state-machine lock themselves: they propose a command, read
//! at a consistency level, ask for session liveness, or subscribe to applied revisions here.

pub mod backup;
pub mod membership;
pub mod peer_service;
pub mod peer_wire;
pub mod rejoin;

use std::sync::Arc;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::log_entry::Proposal;
use crate::raft::leader_presence::{self, LeaderContact};
use crate::raft::network::Call;
use crate::raft::router::Router;
pub use crate::sessions::SessionTime;
use crate::sessions::SessionTracker;
use crate::state_machine::response::Outcome;
use crate::state_machine::StateMachine;
use crate::storage::sm_store::Applied;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (ReadIndex through the
    /// leader, then this node waits for its own apply).
    Linearizable,
    /// This node's applied state, once it has applied `min_revision` (0: at once). May be stale,
    /// never older than `min_revision`.
    Serializable {
        /// The oldest revision the reader accepts.
        min_revision: u64,
    },
}

/// This node's Raft position, for response headers and status.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    /// This node.
    pub node_id: u64,
    /// The leader it knows (None: none).
    pub leader_id: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last applied log index.
    pub applied_index: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: &'static str,
    /// The cluster id, once known (see `raft::cluster_id`).
    pub cluster_id: Option<u64>,
}

/// One member of the cluster.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    /// Node id.
    pub id: u64,
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// Client address it registered ("" until it has).
    pub client_addr: String,
    /// Voter (false: learner).
    pub voter: bool,
}

/// Session keep-alives or a liveness query forwarded to the leader (peer protocol).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionTimesRequest {
    /// Sessions (empty and not renewing: all).
    pub ids: Vec<u64>,
    /// Renew their deadlines (a keep-alive) or only report them.
    pub renew: bool,
}

/// The facade over one running node.
pub struct Node {
    router: Arc<Router>,
    sessions: Arc<SessionTracker>,
}

impl Node {
    /// The facade over a node's router and session tracker.
    pub fn new(router: Arc<Router>, sessions: Arc<SessionTracker>) -> Arc<Self> {
        Arc::new(Self { router, sessions })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.router.node_id()
    }

    /// This node's Raft position.
    pub fn status(&self) -> NodeStatus {
        let metrics = self.router.raft().metrics();
        let m = metrics.borrow();
        NodeStatus {
            node_id: self.router.node_id(),
            leader_id: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            cluster_id: self.router.peers().cluster_id(),
        }
    }

    /// Every member, voters and learners, with the client address each registered.
    pub fn members(&self) -> Vec<MemberInfo> {
        let addrs = self.view(|sm| sm.client_addrs().clone()).unwrap_or_default();
        let metrics = self.router.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberInfo {
                id: *id,
                peer_addr: node.peer_addr.clone(),
                client_addr: addrs.get(id).cloned().unwrap_or_default(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// The log format level member `id` last told this member (`raft::peer_levels`; for this
    /// member itself, the level it tells; 0 when not heard from).
    pub fn log_format_of(&self, id: u64) -> u32 {
        if id == self.node_id() {
            return crate::raft::peer_levels::own();
        }
        self.router.peers().levels().of(id)
    }

    /// The lowest log format level among the members as far as this member has heard (the
    /// level it proposes writes at when it leads; see `log_entry::format`). Not part of
    /// [`Node::status`], which every response header reads.
    pub fn cluster_log_format(&self) -> u32 {
        self.router.cluster_log_format()
    }

    /// The log index of the membership in effect (changes whenever the membership does).
    pub fn membership_index(&self) -> u64 {
        self.router.raft().metrics().borrow().membership_config.log_id().map_or(0, |l| l.index)
    }

    /// The client address member `id` registered, if any.
    pub fn client_addr_of(&self, id: u64) -> Option<String> {
        self.router.client_addr_of(id)
    }

    /// Proposes a write through the leader; returns its result once applied there.
    ///
    /// # Errors
    /// The state machine's deterministic failure (`Command`), or a transient error whose
    /// outcome ([`Error::outcome`]) says whether the write may have been applied.
    pub async fn propose(&self, proposal: Proposal, size: usize) -> Result<Outcome> {
        crate::ops::metrics::track_proposal(async { Ok(self.router.propose(proposal, size).await??) }).await
    }

    /// Runs `f` on the state machine at consistency `c`.
    ///
    /// # Errors
    /// Retriable errors when the leader cannot confirm its leadership, or this node is behind
    /// `min_revision`; whatever `f` returns.
    pub async fn read<T>(&self, c: Consistency, f: impl FnOnce(&StateMachine) -> Result<T>) -> Result<T> {
        match c {
            Consistency::Serializable { min_revision } => self.router.wait_applied_revision(min_revision).await?,
            Consistency::Linearizable => self.router.linearizable_barrier().await?,
        }
        self.view(f)?
    }

    /// Runs `f` on this node's applied state now (no barrier, no wait): for headers, watch
    /// delivery and other local views.
    ///
    /// # Errors
    /// `Internal` when the state lock is poisoned (a panic during apply).
    pub fn view<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> Result<T> {
        let sm = self.router.shared().sm.read().map_err(|e| Error::Internal(format!("state lock: {e}")))?;
        Ok(f(&sm))
    }

    /// Renews (`renew`) or reports sessions on the leader, after it confirmed its leadership
    /// with a quorum (so a deposed leader cannot keep sessions alive).
    ///
    /// # Errors
    /// Retriable errors when no leader can confirm its leadership.
    pub async fn session_times(&self, ids: &[u64], renew: bool) -> Result<Vec<SessionTime>> {
        let leader = self.router.leader().await?;
        if leader == self.router.node_id() {
            return self.session_times_local(ids, renew).await;
        }
        let req = SessionTimesRequest { ids: ids.to_vec(), renew };
        let result: Result<Vec<SessionTime>> = self.router.link().forward(leader, Call::Sessions, &req).await?;
        result.map_err(|e| self.router.with_leader_hint(e))
    }

    /// [`Node::session_times`] on this node only (for requests forwarded by followers).
    ///
    /// # Errors
    /// `NotLeader` when this node is not the leader.
    pub async fn session_times_local(&self, ids: &[u64], renew: bool) -> Result<Vec<SessionTime>> {
        self.router.read_index_local().await.map_err(|e| self.router.with_leader_hint(e))?;
        Ok(self.sessions.touch(ids, renew))
    }

    /// The applied position, updated after every apply.
    pub fn subscribe_applied(&self) -> watch::Receiver<Applied> {
        self.router.shared().subscribe_applied()
    }

    /// Whether this node has lost its leader for a while (watch streams end then).
    pub fn leader_lost(&self) -> watch::Receiver<bool> {
        self.router.leader_lost()
    }

    pub(crate) fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Who this node believes leads and when it last heard from it (the readiness rule's and
    /// the metrics' view; see `raft/leader_presence.rs` for the same "heard from" test).
    pub async fn leader_contact(&self) -> LeaderContact {
        leader_presence::contact(self.router.raft()).await
    }

    /// The leader's commit index, confirmed with a quorum (a read index through the leader;
    /// no wait for this node's own apply).
    ///
    /// # Errors
    /// Retriable errors when no leader is known or it cannot confirm its leadership.
    pub async fn leader_commit_index(&self) -> Result<u64> {
        let leader = self.router.leader().await?;
        self.router.read_index_of(leader).await
    }

    /// On the leader: how many entries each follower's matched index trails the leader's last
    /// log index (empty on other members).
    pub fn follower_lag(&self) -> Vec<(u64, u64)> {
        let metrics = self.router.raft().metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let Some(replication) = &m.replication else { return Vec::new() };
        replication
            .iter()
            .filter(|(id, _)| **id != self.router.node_id())
            .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
            .collect()
    }

    /// Waits until the leader this node knows differs from `known`; returns it (`None` inside:
    /// no leader now), or `None` once Raft has shut down.
    pub async fn wait_leader_change(&self, known: Option<u64>) -> Option<Option<u64>> {
        let mut metrics = self.router.raft().metrics();
        let m = metrics.wait_for(|m| m.current_leader != known || m.state == ServerState::Shutdown).await.ok()?;
        (m.state != ServerState::Shutdown).then_some(m.current_leader)
    }
}

impl Node {
    /// Hands leadership to `target` (a voter), or to the most up-to-date voter when `None`;
    /// returns the new leader. New writes wait meanwhile and are then served by the new leader.
    /// See `raft::transfer`.
    ///
    /// # Errors
    /// `NotLeader` on a follower; `InvalidArgument` for a target that is not a voter;
    /// `Unavailable` (`TRANSFER_FAILED`) when it did not complete in time.
    pub async fn move_leader(&self, target: Option<u64>) -> Result<u64> {
        self.require_leader()?;
        let deadline = self.router().leader_wait() * 3;
        self.router().transfer_leadership(target, deadline).await
    }

    /// The key-space digest at `revision` (0: current) on this member (see
    /// [`StateMachine::hash_kv`]).
    ///
    /// # Errors
    /// `Read` (OUT_OF_RANGE) when the revision is compacted or in the future here.
    pub fn hash_kv(&self, revision: u64) -> Result<crate::state_machine::hash::KvHash> {
        Ok(self.view(|sm| sm.hash_kv(revision))??)
    }
}
