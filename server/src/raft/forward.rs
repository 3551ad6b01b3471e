//! Calls a follower makes to its leader over the peer protocol ([`Link::forward`]), and the
//! coalescing of forwarded writes ([`Forwarder`]) and read indexes ([`ReadIndexes`]).
//!
//! Fail fast: a forwarded call races the follower's view of the leader. If the leader it was
//! sent to is replaced (or lost) while the call is in flight, the call ends at once with a
//! retriable `LeaderChanged` error (after a short grace for a leader that handed off) instead of
//! hanging until the client's deadline. Writes carry request ids, so the client's retry is safe.
//!
//! Coalescing: a forwarded write used to be one HTTP/2 request of its own, which cost a
//! follower about as much CPU as the whole rest of a write (README "Where a write through a
//! follower costs"). Now a request goes alone, from its caller's task, while fewer than
//! [`BATCHES_IN_FLIGHT`] calls of its kind are out (a lone write or read costs what it did);
//! past that it queues, and everything queued for the same leader goes in the next call
//! (`ProposeBatch` for writes; one `ReadIndex` answers every read queued before it was sent).
//! Each write of a batch gets its own result, exactly as if sent alone (the leader proposes
//! each on its own, so they usually share one log entry there); a failure of the call itself
//! is every write's failure, with the same outcome rules as a single call.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::network::{Call, CallError, PeerNetwork};
use super::proposer::{Failed, MAX_BATCH_BYTES, MAX_BATCH_PROPOSALS};
use super::{NodeId, Raft};
use crate::error::{Error, UnavailableReason};
use crate::log_entry::Proposal;
use crate::state_machine::response::CommandResult;

/// Forwarded calls of each kind out at once per member; what comes meanwhile queues and goes
/// together. 16: a member's share of a few dozen closed-loop writers goes at once, each in its
/// call. With 4, the fifth write waited for a call to end, about a Raft round on a fast disk, and
/// missed the leader's next entry: generic client, 16 writers on one counter, alternated twice,
/// 6,511 / 6,442 -> 8,638 / 8,361 increments/s (p50 2.26 -> 1.65 ms); put 1, put 64 and
/// linearizable gets unchanged (docs/design.md).
pub const BATCHES_IN_FLIGHT: usize = 16;

/// How long queued requests wait for one of those calls to end before they go in an extra one
/// (at most [`EXTRA_BATCHES`] more). While calls end within it (a fast disk) nothing changes; on
/// a slow disk a call lasts a whole Raft round (a follower's fsync and more), and writes queued
/// behind it used to miss the next round and wait two.
pub const QUEUE_WAIT: Duration = Duration::from_millis(1);

/// Extra calls of each kind a member may have out beyond [`BATCHES_IN_FLIGHT`] (see
/// [`QUEUE_WAIT`]).
pub const EXTRA_BATCHES: usize = 12;

/// How long a forwarded call may still answer after this node saw its leader change: a leader
/// that handed off answers what it held back at once; a dead one never does.
const FORWARD_GRACE: Duration = Duration::from_millis(300);

/// One write of a `ProposeBatch` call, with the size its sender counted for it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedWrite {
    /// The size the proposer counts for this write (bytes).
    pub size: u64,
    /// The write.
    pub proposal: Proposal,
}

/// The reply of a `ProposeBatch` call: one result per write, in order.
pub type BatchReply = Vec<Result<CommandResult, Error>>;

/// What a follower needs to call its leader.
#[derive(Clone)]
pub struct Link {
    pub(super) raft: Raft,
    pub(super) peers: PeerNetwork,
}

impl Link {
    /// The peer address of member `id`.
    ///
    /// # Errors
    /// `Unavailable` when `id` is not in the membership.
    pub fn peer_addr_of(&self, id: NodeId) -> Result<String, Error> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&id).map(|n| n.peer_addr.clone()).ok_or_else(|| {
            Error::unavailable(UnavailableReason::Unreachable, format!("node {id} is not in the membership"))
        })
    }

    /// Sends `req` to `leader` over the peer protocol and decodes its reply.
    ///
    /// # Errors
    /// `LeaderChanged` when this node sees another leader (or none) while the call is in
    /// flight; for a write a transport failure is `OutcomeUnknown` unless the connection was
    /// refused (nothing was sent), which is `Unavailable`.
    pub async fn forward<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        leader: NodeId,
        call: Call,
        req: &Req,
    ) -> Result<Resp, Error> {
        self.forward_raw(leader, call, req).await.map_err(|e| call_failure(leader, call, e))
    }

    /// [`Link::forward`] with the transport's own error (a caller may act on its status code).
    async fn forward_raw<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        leader: NodeId,
        call: Call,
        req: &Req,
    ) -> Result<Resp, ForwardError> {
        let addr = self.peer_addr_of(leader).map_err(ForwardError::Local)?;
        let send = self.peers.call::<Req, Resp>(&addr, call, req);
        tokio::pin!(send);
        let mut metrics = self.raft.metrics();
        let leader_changed = async move {
            let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
        };
        let reply = tokio::select! {
            reply = &mut send => reply,
            _ = leader_changed => match tokio::time::timeout(FORWARD_GRACE, &mut send).await {
                Ok(reply) => reply,
                Err(_) => return Err(ForwardError::Local(Error::LeaderChanged(leader))),
            },
        };
        reply.map_err(ForwardError::Call)
    }
}

/// Why a forwarded call got no reply.
enum ForwardError {
    /// Decided here (no route, the leader changed).
    Local(Error),
    /// The call failed.
    Call(CallError),
}

fn call_failure(leader: NodeId, call: Call, e: ForwardError) -> Error {
    match e {
        ForwardError::Local(e) => e,
        ForwardError::Call(CallError::Transport(s)) => transport_failure(leader, call, &s),
        ForwardError::Call(CallError::Unreachable(m)) => Error::unavailable(UnavailableReason::Unreachable, m),
        ForwardError::Call(CallError::Codec(m)) => Error::Internal(format!("forwarding to leader {leader}: {m}")),
    }
}

/// The error for a forwarded call whose transport failed. A write is "not applied" only when
/// the status says so (typed, never the message text): the channel could not connect or the
/// stream was refused, so the request never reached the leader. Otherwise the leader may have
/// received and committed it.
fn transport_failure(leader: NodeId, call: Call, s: &tonic::Status) -> Error {
    let message = format!("forwarding to leader {leader} failed: {}", s.message());
    let write = matches!(call, Call::Propose | Call::ProposeBatch);
    if write && conclave_proto::errors::outcome_of(s) != conclave_proto::errors::Outcome::NotApplied {
        Error::OutcomeUnknown(message)
    } else {
        Error::unavailable(UnavailableReason::Unreachable, message)
    }
}

/// One request waiting for a call to `leader`; `size` counts against the batch bounds.
struct Queued<T> {
    leader: NodeId,
    size: usize,
    item: T,
}

/// Requests to the leader of one kind, sent alone while fewer than [`BATCHES_IN_FLIGHT`] calls
/// are out, else queued and handed to `send` together when a call ends, or after
/// [`QUEUE_WAIT`] in one of [`EXTRA_BATCHES`] extra calls.
struct Coalescer<T> {
    tx: mpsc::UnboundedSender<Queued<T>>,
    in_flight: Arc<Semaphore>,
}

impl<T> Clone for Coalescer<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), in_flight: self.in_flight.clone() }
    }
}

impl<T: Send + 'static> Coalescer<T> {
    /// Starts the task that takes what queued for the same leader (up to the proposer's batch
    /// bounds) and hands it to `send` as one batch once a call may go out.
    fn spawn<L, F, Fut>(link: L, send: F) -> Self
    where
        L: Clone + Send + 'static,
        F: Fn(L, NodeId, Vec<T>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued<T>>();
        let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
        let permits = in_flight.clone();
        let extra = Arc::new(Semaphore::new(EXTRA_BATCHES));
        tokio::spawn(async move {
            let mut carry: Option<Queued<T>> = None;
            loop {
                let first = match carry.take() {
                    Some(q) => q,
                    None => match rx.recv().await {
                        Some(q) => q,
                        None => return,
                    },
                };
                let permit = tokio::select! {
                    biased;
                    p = permits.clone().acquire_owned() => p,
                    () = tokio::time::sleep(QUEUE_WAIT) => match extra.clone().try_acquire_owned() {
                        Ok(p) => Ok(p),
                        Err(_) => permits.clone().acquire_owned().await,
                    },
                };
                let Ok(permit) = permit else { return };
                let leader = first.leader;
                let mut bytes = first.size;
                let mut batch = vec![first.item];
                while batch.len() < MAX_BATCH_PROPOSALS && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(q) if q.leader == leader => {
                            bytes += q.size;
                            batch.push(q.item);
                        }
                        Ok(q) => {
                            carry = Some(q);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                tokio::spawn(with_permit(send(link.clone(), leader, batch), permit));
            }
        });
        Self { tx, in_flight }
    }

    /// A permit to send one request alone, now, from the caller's task (no hand-over to the
    /// coalescing task: a lone request costs what it did before coalescing), if a call may go.
    fn alone(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Queues `item` for the next batch to `leader`; gives it back when the task has ended.
    fn queue(&self, leader: NodeId, size: usize, item: T) -> Result<(), T> {
        self.tx.send(Queued { leader, size, item }).map_err(|e| e.0.item)
    }
}

async fn with_permit(sent: impl std::future::Future<Output = ()>, _permit: OwnedSemaphorePermit) {
    sent.await;
}

fn shutting_down() -> Error {
    Error::unavailable(UnavailableReason::ShuttingDown, "node is shutting down")
}

type WriteReply = oneshot::Sender<Result<CommandResult, Failed>>;

/// Handle to the task that coalesces this member's forwarded writes.
#[derive(Clone)]
pub struct Forwarder {
    writes: Coalescer<(ForwardedWrite, WriteReply)>,
}

impl Forwarder {
    /// Starts the coalescing task (it ends when every handle is dropped).
    pub fn spawn(link: Link) -> Self {
        Self { writes: Coalescer::spawn(link, send_writes) }
    }

    /// Forwards `proposal` to `leader`; its result once applied there. A refusal by the leader
    /// gives the write back (see [`Failed`]).
    ///
    /// # Errors
    /// As [`Link::forward`], or the leader's own error for this write.
    pub async fn propose(
        &self,
        link: &Link,
        leader: NodeId,
        proposal: Proposal,
        size: usize,
    ) -> Result<CommandResult, Failed> {
        let (reply, rx) = oneshot::channel();
        let write = ForwardedWrite { size: size as u64, proposal };
        if let Some(_permit) = self.writes.alone() {
            crate::ops::metrics::forwarded(1, 1);
            send_one(link, leader, write, reply).await;
        } else if let Err((write, _)) = self.writes.queue(leader, size, (write, reply)) {
            return Err(Failed { error: shutting_down(), proposal: Some(write.proposal) });
        }
        rx.await.unwrap_or_else(|_| Err(shutting_down().into()))
    }
}

/// Handle to the task that coalesces the read indexes this member asks of the leader.
///
/// Linearizable: a read joins only a call sent after it queued, so the leader confirms its
/// leadership and takes its commit index after every read of the batch arrived here.
#[derive(Clone)]
pub struct ReadIndexes {
    reads: Coalescer<oneshot::Sender<Result<u64, Error>>>,
}

impl ReadIndexes {
    /// Starts the coalescing task (it ends when every handle is dropped).
    pub fn spawn(link: Link) -> Self {
        Self { reads: Coalescer::spawn(link, send_read_indexes) }
    }

    /// The leader's read index (its commit index once it confirmed its leadership with a
    /// quorum), asked after this call began.
    ///
    /// # Errors
    /// As [`Link::forward`], or the leader's own error (`NotLeader`, no quorum).
    pub async fn read_index(&self, link: &Link, leader: NodeId) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        if let Some(_permit) = self.reads.alone() {
            send_read_indexes(link.clone(), leader, vec![reply]).await;
        } else {
            self.reads.queue(leader, 0, reply).map_err(|_| shutting_down())?;
        }
        rx.await.unwrap_or_else(|_| Err(shutting_down()))
    }
}

async fn send_read_indexes(link: Link, leader: NodeId, waiters: Vec<oneshot::Sender<Result<u64, Error>>>) {
    crate::ops::metrics::forwarded_read_indexes(waiters.len());
    let result = link.forward::<_, Result<u64, Error>>(leader, Call::ReadIndex, &()).await.and_then(|r| r);
    for w in waiters {
        let _ = w.send(result.clone());
    }
}

/// One call for `batch`: `Propose` for a lone write, `ProposeBatch` otherwise (each write
/// alone when the leader predates `ProposeBatch`, as in a rolling upgrade).
async fn send_writes(link: Link, leader: NodeId, batch: Vec<(ForwardedWrite, WriteReply)>) {
    crate::ops::metrics::forwarded(batch.len(), 1);
    if batch.len() == 1 {
        let (write, reply) = batch.into_iter().next().expect("one write");
        return send_one(&link, leader, write, reply).await;
    }
    let (writes, replies): (Vec<ForwardedWrite>, Vec<WriteReply>) = batch.into_iter().unzip();
    match link.forward_raw::<_, BatchReply>(leader, Call::ProposeBatch, &writes).await {
        Ok(results) if results.len() == writes.len() => {
            for ((result, write), reply) in results.into_iter().zip(writes).zip(replies) {
                let _ = reply.send(result.map_err(|error| Failed { error, proposal: Some(write.proposal) }));
            }
        }
        Ok(results) => {
            let message = format!("leader {leader} answered {} results for {} writes", results.len(), writes.len());
            for reply in replies {
                let _ = reply.send(Err(Error::OutcomeUnknown(message.clone()).into()));
            }
        }
        Err(ForwardError::Call(CallError::Transport(s))) if s.code() == tonic::Code::Unimplemented => {
            crate::ops::metrics::forwarded(0, writes.len());
            let singles = writes.into_iter().zip(replies).map(|(write, reply)| send_one(&link, leader, write, reply));
            futures::future::join_all(singles).await;
        }
        Err(e) => {
            let error = call_failure(leader, Call::ProposeBatch, e);
            for reply in replies {
                let _ = reply.send(Err(error.clone().into()));
            }
        }
    }
}

async fn send_one(link: &Link, leader: NodeId, write: ForwardedWrite, reply: WriteReply) {
    let result = match link.forward::<_, Result<CommandResult, Error>>(leader, Call::Propose, &write.proposal).await {
        Ok(Ok(result)) => Ok(result),
        // The leader's own refusal gives the write back: it never reached Raft there.
        Ok(Err(error)) => Err(Failed { error, proposal: Some(write.proposal) }),
        Err(error) => Err(error.into()),
    };
    let _ = reply.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls that never end (a slow disk: each lasts a whole Raft round): what queues behind
    /// them still goes, in an extra call, once it has waited [`QUEUE_WAIT`].
    #[tokio::test(start_paused = true)]
    async fn queued_requests_do_not_wait_for_slow_calls_to_end() {
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<Vec<u32>>();
        let coalescer = Coalescer::spawn((), move |(), _leader, batch: Vec<u32>| {
            let _ = sent_tx.send(batch);
            std::future::pending::<()>()
        });
        let held: Vec<_> = (0..BATCHES_IN_FLIGHT).map(|_| coalescer.alone().expect("a permit")).collect();
        assert!(coalescer.alone().is_none(), "every regular call is out");
        for item in [1, 2] {
            assert!(coalescer.queue(7, 0, item).is_ok());
        }
        let waited = tokio::time::Instant::now();
        let batch = tokio::time::timeout(Duration::from_secs(1), sent.recv()).await;
        assert_eq!(batch.ok().flatten(), Some(vec![1, 2]), "the queued requests went together in an extra call");
        assert!(waited.elapsed() >= QUEUE_WAIT);
        drop(held);
    }
}
