//! Leadership transfer (`conclavectl move-leader`, and a leader's SIGTERM): the leader hands
//! leadership to a caught-up voter in about one vote round trip, without losing or failing a
//! write.
//!
//! openraft 0.9.25 has no `transfer_leader`; this builds it from what 0.9 does (see
//! docs/design.md, "Leader transfer"):
//! 1. The leader pauses its write batcher ([`Proposer::pause`](super::proposer::Proposer::pause)):
//!    new writes wait, every write already proposed is answered. Its log stops growing.
//! 2. It waits until the target's match index reaches its last log index, and until its own
//!    leader lease (openraft's: the maximum election timeout since it was elected) has run out.
//! 3. It sends the target `TimeoutNow`. The target, still following this leader and holding its
//!    whole log, campaigns at once (`trigger().elect()`).
//! 4. A follower grants no vote while it has heard from its leader within the lease, but the
//!    old leader does: openraft 0.9 refreshes a leader's vote time only when it is elected, so
//!    once its own lease has run out it grants a candidate with a higher term and a log at
//!    least as long as its own, and steps down. In a 3-voter cluster that vote and the target's
//!    own make a quorum: the transfer takes one vote round trip. With 5 or more voters the
//!    target also needs a follower whose lease has run out (up to one lease after the last
//!    heartbeat), or its prompt election (see `prompt_election`) retries.
//! 5. Once this node sees the target lead, the batcher resumes: the writes it held are refused
//!    with "not leader, not applied" and the router sends them to the new leader.
//!
//! Guarantees: votes, terms and log checks stay openraft's, so a transfer can never elect a
//! member without every committed entry. It can fail (the target is cut off, a write of another
//! kind lands meanwhile): then this node still leads, or an ordinary election follows, and the
//! caller gets an error after at most its deadline. Writes are held for at most that deadline.

use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::network::Call;
use super::router::Router;
use super::{NodeId, Raft};
use crate::error::{Error, UnavailableReason};

/// The target's own log must reach the leader's within this (it already did by the leader's
/// match index; this covers the follower's metrics lagging its storage).
const TARGET_LOG_WAIT: Duration = Duration::from_millis(500);
/// Added to openraft's lease before the old leader counts it as run out (timer granularity).
const LEASE_MARGIN: Duration = Duration::from_millis(5);

/// Payload of the peer call `TimeoutNow`: campaign at once, sent by the leader to the target.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeoutNow {
    /// The leader handing off.
    pub leader: NodeId,
    /// Its last log index: the target campaigns only once it holds that much.
    pub last_log_index: u64,
}

impl Router {
    /// Hands leadership to `target` (a voter), or, when `None`, to the voter with the highest
    /// match index (lowest id on a tie). Returns the new leader.
    ///
    /// The caller checks that this node leads (`Node::move_leader`).
    ///
    /// # Errors
    /// `LeaderChanged` when this node stops leading meanwhile; `InvalidArgument` for a target
    /// that is not a voter (or is this node); `Unavailable` with reason `TRANSFER_FAILED` when the transfer
    /// did not complete within `deadline` (this node may still lead), or when a named target
    /// lost the election to another member (who then leads).
    pub async fn transfer_leadership(&self, target: Option<NodeId>, deadline: Duration) -> Result<NodeId, Error> {
        let started = tokio::time::Instant::now();
        let raft = self.raft();
        let named = target.is_some();
        let target = self.pick_target(target)?;
        // Within the deadline: a write this leader cannot commit (no quorum) never drains.
        let paused = match tokio::time::timeout_at(started + deadline, self.proposer().pause()).await {
            Ok(paused) => paused?,
            Err(_) => {
                let e = pause_timeout(deadline);
                tracing::warn!(to = target, "leadership transfer failed: {e}");
                return Err(e);
            }
        };
        tracing::info!(to = target, elapsed = ?started.elapsed(), "transfer: writes paused");
        let outcome = tokio::time::timeout_at(started + deadline, self.hand_off(target)).await;
        let new_leader = match outcome {
            // A named target is the request: another member winning the election is a failure
            // to report (leadership moved, but not where the operator asked).
            Ok(Ok(())) => wait_for_leader(raft, target, started + deadline).await.and_then(|l| {
                if named && l != target {
                    Err(Error::unavailable(
                        UnavailableReason::TransferFailed,
                        format!(
                            "node {target} was told to campaign, but node {l} won the election (it raced the \
                             transfer); node {l} leads now: retry to move leadership to node {target}"
                        ),
                    ))
                } else {
                    Ok(l)
                }
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(transfer_timeout(target, deadline)),
        };
        // Held writes go on: here if this node still leads, else refused and retried elsewhere.
        drop(paused);
        let elapsed = started.elapsed();
        match &new_leader {
            Ok(l) => tracing::info!(to = l, ?elapsed, "leadership transferred"),
            Err(e) => tracing::warn!(to = target, ?elapsed, "leadership transfer failed: {e}"),
        }
        new_leader
    }

    /// Chooses the target (the caller checked that this node leads; `hand_off` checks again).
    fn pick_target(&self, target: Option<NodeId>) -> Result<NodeId, Error> {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        let voters: Vec<NodeId> =
            m.membership_config.membership().voter_ids().filter(|id| *id != self.node_id()).collect();
        let matched = |id: &NodeId| super::match_index(&m, *id).unwrap_or(0);
        match target {
            Some(t) if t == self.node_id() => {
                Err(Error::InvalidArgument(format!("node {t} already leads; name another voter to move leadership to")))
            }
            Some(t) if !voters.contains(&t) => Err(Error::InvalidArgument(format!(
                "node {t} is not a voter (voters other than the leader: {voters:?}); promote it first"
            ))),
            Some(t) => Ok(t),
            None => voters.iter().copied().max_by_key(|id| (matched(id), std::cmp::Reverse(*id))).ok_or_else(|| {
                Error::InvalidArgument("this node is the only voter: there is no one to hand leadership to".into())
            }),
        }
    }

    /// Steps 2 and 3: the target holds the whole log and this node's lease has run out, then
    /// `TimeoutNow`.
    async fn hand_off(&self, target: NodeId) -> Result<(), Error> {
        let raft = self.raft();
        let last = {
            let mut metrics = raft.metrics();
            let caught_up = metrics.wait_for(|m| {
                m.state != ServerState::Leader
                    || super::match_index(m, target).is_some_and(|i| i >= m.last_log_index.unwrap_or(0))
            });
            let (leads, last) = caught_up
                .await
                .map(|m| (m.state == ServerState::Leader, m.last_log_index.unwrap_or(0)))
                .map_err(|_| shutting_down())?;
            if !leads {
                return Err(Error::LeaderChanged(self.node_id()));
            }
            last
        };
        tracing::info!(to = target, last, "transfer: target holds the whole log");
        let lease = Duration::from_millis(raft.config().election_timeout_max) + LEASE_MARGIN;
        let elected_at = raft.with_raft_state(|s| s.vote_last_modified()).await.map_err(|_| shutting_down())?;
        if let Some(at) = elected_at {
            tokio::time::sleep_until(at + lease).await;
        }
        tracing::info!(to = target, "transfer: lease expired, sending TimeoutNow");
        let addr = self.peer_addr_of(target)?;
        let req = TimeoutNow { leader: self.node_id(), last_log_index: last };
        let reply: Result<(), Error> = self.peers().call(&addr, Call::TimeoutNow, &req).await.map_err(|e| {
            Error::unavailable(UnavailableReason::Unreachable, format!("TimeoutNow to node {target}: {e}"))
        })?;
        reply
    }
}

/// Waits until this node follows a new leader (the target, normally); returns it.
async fn wait_for_leader(raft: &Raft, target: NodeId, deadline: tokio::time::Instant) -> Result<NodeId, Error> {
    let mut metrics = raft.metrics();
    let me = metrics.borrow().id;
    let wait = async move {
        metrics
            .wait_for(|m| m.state != ServerState::Leader && m.current_leader.is_some_and(|l| l != me))
            .await
            .map(|m| m.current_leader)
    };
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(Ok(Some(leader))) => Ok(leader),
        Ok(_) => Err(shutting_down()),
        Err(_) => Err(Error::unavailable(
            UnavailableReason::TransferFailed,
            format!("node {target} was told to campaign but no new leader was seen in time"),
        )),
    }
}

fn pause_timeout(deadline: Duration) -> Error {
    Error::unavailable(
        UnavailableReason::TransferFailed,
        format!(
            "the leader's writes in flight were not committed within {deadline:?} (is a quorum of voters \
             reachable?); leadership stays here: check the members' health, then retry"
        ),
    )
}

fn transfer_timeout(target: NodeId, deadline: Duration) -> Error {
    Error::unavailable(
        UnavailableReason::TransferFailed,
        format!(
            "the leadership transfer to node {target} did not complete within {deadline:?} (it did not \
             catch up with the leader's log, or could not be reached); leadership stays here: retry, or \
             pick another voter"
        ),
    )
}

fn shutting_down() -> Error {
    Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down")
}

/// The target's side of `TimeoutNow`: campaigns at once if `req.leader` is still its leader,
/// it is a voter and it holds the leader's whole log.
///
/// # Errors
/// `Unavailable` (`TRANSFER_FAILED`) saying which condition does not hold.
pub async fn on_timeout_now(raft: &Raft, req: TimeoutNow) -> Result<(), Error> {
    let mut metrics = raft.metrics();
    let me = metrics.borrow().id;
    {
        let m = metrics.borrow();
        if m.current_leader != Some(req.leader) {
            return Err(Error::unavailable(
                UnavailableReason::TransferFailed,
                format!(
                    "node {me} follows {:?}, not node {}: leadership transfer refused",
                    m.current_leader, req.leader
                ),
            ));
        }
        if !m.membership_config.membership().voter_ids().any(|id| id == me) {
            return Err(Error::unavailable(
                UnavailableReason::TransferFailed,
                format!("node {me} is not a voter: leadership transfer refused"),
            ));
        }
    }
    let holds_log =
        async move { metrics.wait_for(|m| m.last_log_index.unwrap_or(0) >= req.last_log_index).await.is_ok() };
    if !matches!(tokio::time::timeout(TARGET_LOG_WAIT, holds_log).await, Ok(true)) {
        return Err(Error::unavailable(
            UnavailableReason::TransferFailed,
            format!("node {me} does not hold the leader's log up to index {} yet", req.last_log_index),
        ));
    }
    raft.trigger().elect().await.map_err(|_| shutting_down())?;
    // With 5 or more voters the first campaign gets only the old leader's vote: the others grant
    // once their lease has run out. Campaign again until this node leads, someone else does, or
    // the bound passes (each campaign is openraft's: terms and log checks decide).
    let raft = raft.clone();
    tokio::spawn(async move {
        let lease = Duration::from_millis(raft.config().election_timeout_max);
        let give_up = tokio::time::Instant::now() + 3 * lease;
        while tokio::time::Instant::now() < give_up {
            tokio::time::sleep(lease / 3).await;
            let campaigning = {
                let m = raft.metrics();
                let m = m.borrow();
                m.state == ServerState::Candidate && m.current_leader.is_none()
            };
            if !campaigning || raft.trigger().elect().await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
