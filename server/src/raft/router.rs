//! Routing of writes and linearizable reads: handled locally on the leader, forwarded over the
//! peer protocol from a follower ("handle locally" vs "forward to leader"; how a forwarded call
//! fails fast and how forwarded writes share calls: `forward`).

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use super::forward::{Forwarder, Link, ReadIndexes};
use super::network::PeerNetwork;
use super::proposer::{Failed, Proposer};
use super::read_index::ReadIndex;
use super::read_lease::ReadLease;
use super::{NodeId, Raft};
use crate::error::{Error, UnavailableReason};
use crate::log_entry::{format, Proposal};
use crate::state_machine::response::CommandResult;
use crate::storage::sm_store::{Applied, SharedState};

/// Where requests go.
pub struct Router {
    node_id: NodeId,
    raft: Raft,
    proposer: Proposer,
    read_index: ReadIndex,
    link: Link,
    forwarder: Forwarder,
    read_indexes: ReadIndexes,
    shared: Arc<SharedState>,
    leader_wait: Duration,
    leader_lost: tokio::sync::watch::Receiver<bool>,
    lease: Arc<ReadLease>,
}

impl Router {
    /// A router for this node; `batches_in_flight` bounds the write pipeline (see `proposer`).
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        peers: PeerNetwork,
        shared: Arc<SharedState>,
        leader_wait: Duration,
        batches_in_flight: usize,
        lease: Arc<ReadLease>,
    ) -> Self {
        let proposer = Proposer::spawn(raft.clone(), node_id, batches_in_flight);
        let read_index = ReadIndex::spawn(raft.clone(), node_id, lease.clone(), shared.subscribe_applied());
        // Checked once per election timeout (a quarter of the leader wait).
        let leader_lost = super::leader_presence::spawn(raft.clone(), leader_wait / 4);
        let link = Link { raft: raft.clone(), peers };
        let forwarder = Forwarder::spawn(link.clone());
        let read_indexes = ReadIndexes::spawn(link.clone());
        Self {
            node_id,
            raft,
            proposer,
            read_index,
            link,
            forwarder,
            read_indexes,
            shared,
            leader_wait,
            leader_lost,
            lease,
        }
    }

    /// This node's read lease (a vote request revokes it, a membership change suspends it).
    pub fn read_lease(&self) -> &ReadLease {
        &self.lease
    }

    /// Whether this node has lost its leader (see `leader_presence`).
    pub fn leader_lost(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader_lost.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// How long a request waits for a leader to be known.
    pub fn leader_wait(&self) -> Duration {
        self.leader_wait
    }

    /// The peer address of member `id`.
    ///
    /// # Errors
    /// `Unavailable` when `id` is not in the membership.
    pub fn peer_addr_of(&self, id: NodeId) -> Result<String, Error> {
        self.link.peer_addr_of(id)
    }

    /// The write batcher (a leadership transfer pauses it).
    pub(super) fn proposer(&self) -> &Proposer {
        &self.proposer
    }

    /// The peer network (cached channels to the other members).
    pub fn peers(&self) -> &PeerNetwork {
        &self.link.peers
    }

    /// The lowest log format level among the members, as far as this member has heard
    /// (`peer_levels`; what this member proposes at when it leads, see `log_entry::format`).
    pub fn cluster_log_format(&self) -> u32 {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        self.link.peers.levels().lowest(self.node_id, m.membership_config.membership().nodes().map(|(id, _)| *id))
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The shared state machine.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// Client address a node registered, if any.
    pub fn client_addr_of(&self, node: NodeId) -> Option<String> {
        self.shared.sm.read().ok().and_then(|sm| sm.client_addrs().get(&node).cloned())
    }

    /// Waits (bounded) for a known leader; returns it.
    ///
    /// # Errors
    /// `NoLeader` when none is known within the leader wait; `Unavailable` when shutting down.
    pub async fn leader(&self) -> Result<NodeId, Error> {
        let mut metrics = self.raft.metrics();
        let wait = async move {
            metrics
                .wait_for(|m| m.current_leader.is_some() || m.state == ServerState::Shutdown)
                .await
                .ok()
                .and_then(|m| m.current_leader)
        };
        match tokio::time::timeout(self.leader_wait, wait).await {
            Ok(Some(leader)) => Ok(leader),
            Ok(None) => Err(Error::unavailable(UnavailableReason::ShuttingDown, "node is shutting down")),
            Err(_) => Err(Error::NoLeader(self.node_id)),
        }
    }

    /// Fills in the leader's client address of a `NotLeader` error (the client's hint).
    pub fn with_leader_hint(&self, e: Error) -> Error {
        match e {
            Error::NotLeader { node_id, leader_id, reached_raft, .. } => Error::NotLeader {
                node_id,
                leader_id,
                leader_addr: leader_id.and_then(|l| self.client_addr_of(l)),
                reached_raft,
            },
            other => other,
        }
    }

    /// Proposes a write through the leader and returns its result once applied there.
    ///
    /// # Errors
    /// Retriable `Unavailable`-class errors when no leader can be reached or the outcome is unknown.
    ///
    /// A write the leader refused before it reached Raft (it handed leadership off while the
    /// write waited, see `transfer`) is sent once more to the leader it named: it cannot have
    /// applied, so the retry is safe even without a request id.
    pub async fn propose(&self, proposal: Proposal, size: usize) -> Result<CommandResult, Error> {
        let mut tried = self.leader().await?;
        let mut proposal = proposal;
        for attempt in 0..=REFUSED_RETRIES {
            let failed = match self.propose_at(tried, proposal, size).await {
                Ok(result) => return Ok(result),
                Err(failed) => failed,
            };
            match (refused_by(&failed.error, tried), failed.proposal) {
                (Some(next), Some(given_back)) if attempt < REFUSED_RETRIES => {
                    proposal = given_back;
                    tried = self.next_leader(next).await?;
                }
                _ => return Err(failed.error),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One attempt at `leader`; a refusal gives the write back (no copy on the way).
    async fn propose_at(&self, leader: NodeId, proposal: Proposal, size: usize) -> Result<CommandResult, Failed> {
        if leader == self.node_id {
            return self
                .proposer
                .propose(format::lower(proposal, || self.cluster_log_format()), size)
                .await
                .map_err(|f| Failed { error: self.with_leader_hint(f.error), proposal: f.proposal });
        }
        // The leader's own NotLeader (it lost leadership meanwhile) is answered as it said.
        let proposal = format::lower(proposal, || self.link.peers.levels().of(leader));
        self.forwarder
            .propose(&self.link, leader, proposal, size)
            .await
            .map_err(|f| Failed { error: self.with_leader_hint(f.error), proposal: f.proposal })
    }

    /// The leader to try after `refused`'s refusal: the one it named, or whoever this node
    /// learns of next (bounded by the leader wait).
    async fn next_leader(&self, named: Option<NodeId>) -> Result<NodeId, Error> {
        if let Some(l) = named {
            return Ok(l);
        }
        self.leader().await
    }

    /// Proposes on this node only (used for requests forwarded by followers), lowered to what
    /// every member decodes (`log_entry::format`).
    ///
    /// # Errors
    /// `NotLeader` when this node is not the leader.
    pub async fn propose_local(&self, proposal: Proposal, size: usize) -> Result<CommandResult, Error> {
        self.proposer.propose(self.lowered(proposal), size).await.map_err(|f| self.with_leader_hint(f.error))
    }

    /// Proposes the writes of one forwarded call on this node only, together (see
    /// [`Proposer::propose_all`]), each lowered as by [`Self::propose_local`].
    pub async fn propose_all_local(&self, writes: Vec<(Proposal, usize)>) -> Vec<Result<CommandResult, Error>> {
        let writes = writes.into_iter().map(|(p, size)| (self.lowered(p), size)).collect();
        let results = self.proposer.propose_all(writes).await;
        results.into_iter().map(|r| r.map_err(|f| self.with_leader_hint(f.error))).collect()
    }

    /// `proposal` lowered to what every member decodes (`log_entry::format`).
    fn lowered(&self, proposal: Proposal) -> Proposal {
        format::lower(proposal, || self.cluster_log_format())
    }

    /// Read index on this node only (used for requests from followers).
    ///
    /// # Errors
    /// `NotLeader` when this node is not the leader.
    pub async fn read_index_local(&self) -> Result<u64, Error> {
        self.read_index.read_index().await
    }

    /// Returns once this node's state machine reflects every write acknowledged before the call
    /// (ReadIndex through the leader, then wait for the local apply).
    ///
    /// # Errors
    /// Retriable errors when the leader cannot confirm its leadership.
    pub async fn linearizable_barrier(&self) -> Result<(), Error> {
        let mut tried = self.leader().await?;
        let mut result = self.read_index_at(tried).await;
        for _ in 0..REFUSED_RETRIES {
            match result.as_ref().err().and_then(|e| refused_by(e, tried)) {
                Some(next) => tried = self.next_leader(next).await?,
                None => break,
            }
            result = self.read_index_at(tried).await;
        }
        let Some(index) = result? else {
            // ensure_linearizable already waited for the leader's own apply.
            return Ok(());
        };
        if self.wait_applied(|a| a.index >= index).await {
            Ok(())
        } else {
            Err(Error::unavailable(
                UnavailableReason::Behind,
                format!("node {} did not catch up to read index {index} in time", self.node_id),
            ))
        }
    }

    /// The read index at `leader`: `None` when this node is the leader (already applied).
    async fn read_index_at(&self, leader: NodeId) -> Result<Option<u64>, Error> {
        let index = self.read_index_of(leader).await.map_err(|e| self.with_leader_hint(e))?;
        Ok((leader != self.node_id).then_some(index))
    }

    /// `leader`'s read index: this node's own when it leads, else asked of `leader` in a call
    /// shared with the reads waiting beside it (`forward::ReadIndexes`).
    ///
    /// # Errors
    /// `NotLeader` when `leader` no longer leads; retriable errors when it cannot confirm its
    /// leadership or cannot be reached.
    pub async fn read_index_of(&self, leader: NodeId) -> Result<u64, Error> {
        if leader == self.node_id {
            return self.read_index_local().await;
        }
        self.read_indexes.read_index(&self.link, leader).await
    }

    /// Waits (at most the leader wait) until this node's applied position satisfies `reached`;
    /// returns whether it did. No timer when it already does.
    async fn wait_applied(&self, mut reached: impl FnMut(&Applied) -> bool) -> bool {
        let mut applied = self.shared.subscribe_applied();
        if reached(&applied.borrow()) {
            return true;
        }
        let wait = async move { applied.wait_for(|a| reached(a)).await.is_ok() };
        tokio::time::timeout(self.leader_wait, wait).await.unwrap_or(false)
    }

    /// Returns once this node's state machine has applied `min_revision` (at once when it has),
    /// so that a client's serializable read here sees what that client has seen elsewhere.
    ///
    /// # Errors
    /// `Unavailable` when this node has not caught up within the leader wait (it is cut off or
    /// lagging; the client should ask another member).
    pub async fn wait_applied_revision(&self, min_revision: u64) -> Result<(), Error> {
        if self.wait_applied(|a| a.revision >= min_revision).await {
            return Ok(());
        }
        Err(Error::unavailable(
            UnavailableReason::Behind,
            format!(
                "node {} is behind: it has applied revision {}, not yet the requested min_revision {min_revision}; \
             ask another member or read linearizably",
                self.node_id,
                self.shared.subscribe_applied().borrow().revision
            ),
        ))
    }

    /// Calls to the leader over the peer protocol (see [`Link::forward`]).
    pub fn link(&self) -> &Link {
        &self.link
    }
}

/// How many times a write or read refused by a former leader (before it reached Raft) is sent
/// on to the next one.
const REFUSED_RETRIES: usize = 2;

/// `Some(named next leader)` when `error` is a refusal by `tried` that never reached Raft
/// (so trying elsewhere is safe).
fn refused_by(error: &Error, tried: NodeId) -> Option<Option<NodeId>> {
    match error {
        Error::NotLeader { reached_raft: false, leader_id, .. } if *leader_id != Some(tried) => Some(*leader_id),
        _ => None,
    }
}
