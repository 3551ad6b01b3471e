//! Write batching: many client proposals become one Raft log entry, so one fsync (on the leader
//! and on each follower) covers many writes.
//!
//! Proposals queue in a channel. A single task takes everything queued (up to
//! [`MAX_BATCH_PROPOSALS`] / [`MAX_BATCH_BYTES`]), lets the writers answered by the previous
//! batch join (at most [`LINGER`], longer while rounds are long: [`Linger`]; see `next_batch`)
//! and submits it as one entry; at most
//! `--batches-in-flight` entries (default 1) are in flight at once. openraft 0.9 appends and
//! replicates one entry after another, so a second entry in flight only splits the writers into
//! smaller batches: measured, 1 in flight with the linger gave 7,100 increments/s for 16 writers
//! on one counter, 2 in flight 4,800. Latency stays one Raft round at low load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::Raft;
use crate::error::{Error, UnavailableReason};
use crate::log_entry::{BatchV1, LogPayload, Proposal};
use crate::state_machine::response::CommandResult;

/// Most proposals in one log entry.
pub const MAX_BATCH_PROPOSALS: usize = 2048;
/// Most payload bytes in one log entry (a single larger proposal still goes alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Pending {
    proposal: Proposal,
    size: usize,
    reply: oneshot::Sender<Result<CommandResult, Failed>>,
    /// More writes of the same call were queued right behind this one ([`Proposer::propose_all`]).
    more: bool,
}

/// Why a proposed write got no result.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: Error,
    /// The write, given back when it never reached Raft (it can be sent elsewhere as it is).
    pub proposal: Option<Proposal>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self { error, proposal: None }
    }
}

/// Handle to the batching task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    /// While `true`, batches are held back (not proposed): a leadership transfer is under way.
    hold: Arc<watch::Sender<bool>>,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
}

/// Proposals are held back while this lives: nothing new reaches Raft on this node, and every
/// batch proposed before it was taken has been answered. Dropping it lets held batches go on
/// (to this node's Raft if it still leads, else answered `NotLeader` "not applied", which the
/// router retries at the new leader).
pub struct Paused {
    _hold: Hold,
    _permits: tokio::sync::OwnedSemaphorePermit,
}

/// New batches held back while this lives: also while [`Proposer::pause`] still waits, so a
/// pause given up (its caller's deadline passed) lets writes go on again.
struct Hold(Arc<watch::Sender<bool>>);

impl Hold {
    fn new(hold: &Arc<watch::Sender<bool>>) -> Self {
        hold.send_replace(true);
        Self(hold.clone())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

impl Proposer {
    /// Starts the batching task for `raft` on this node, with at most `in_flight` log entries
    /// proposed but not yet applied.
    pub fn spawn(raft: Raft, node_id: u64, in_flight: usize) -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let max_in_flight = in_flight.clamp(1, Semaphore::MAX_PERMITS) as u32;
        let in_flight = Arc::new(Semaphore::new(max_in_flight as usize));
        let hold = Arc::new(watch::channel(false).0);
        tokio::spawn(run(raft, node_id, rx, in_flight.clone(), hold.subscribe()));
        Self { tx, hold, in_flight, max_in_flight }
    }

    /// Holds back new batches and waits until every batch already handed to Raft has been
    /// answered (see [`Paused`]). Used by a leadership transfer, so the leader's log stops
    /// growing and the target can catch up with all of it.
    ///
    /// A batch that cannot commit (a leader without its quorum) keeps this waiting: callers
    /// bound it with their deadline; dropping the future lets writes go on again.
    ///
    /// # Errors
    /// When the batching task has stopped (the node is shutting down).
    pub async fn pause(&self) -> Result<Paused, Error> {
        let hold = Hold::new(&self.hold);
        match self.in_flight.clone().acquire_many_owned(self.max_in_flight).await {
            Ok(p) => Ok(Paused { _hold: hold, _permits: p }),
            Err(_) => Err(Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down")),
        }
    }

    /// Proposes one write and waits until it is applied on this node.
    ///
    /// # Errors
    /// `NotLeader` when this node is not the leader (the write given back: it never reached
    /// Raft); `Unavailable` when leadership was lost or Raft stopped before the outcome was known
    /// (the write may or may not have applied).
    pub async fn propose(&self, proposal: Proposal, size: usize) -> Result<CommandResult, Failed> {
        answer(self.queue(proposal, size, false).await).await
    }

    /// Proposes the writes of one call (a follower's forwarded batch) together: they are queued
    /// back to back and go in the same log entry (unless it is full), so the call, answered once
    /// its last write is, does not hold the writes of one round until the next. Each write gets
    /// its own result, as from [`Self::propose`].
    pub async fn propose_all(&self, writes: Vec<(Proposal, usize)>) -> Vec<Result<CommandResult, Failed>> {
        let mut queued = Vec::with_capacity(writes.len());
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            // No entry holds more than a full batch (nor does the queue hold more at once).
            let group: Vec<_> = writes.by_ref().take(MAX_BATCH_PROPOSALS).collect();
            queued.extend(queue_together(&self.tx, group).await);
        }
        futures::future::join_all(queued.into_iter().map(answer)).await
    }

    /// Queues one write; the write back if the batching task has stopped.
    async fn queue(
        &self,
        proposal: Proposal,
        size: usize,
        more: bool,
    ) -> Result<oneshot::Receiver<Result<CommandResult, Failed>>, Proposal> {
        let (reply, rx) = oneshot::channel();
        match self.tx.send(Pending { proposal, size, reply, more }).await {
            Ok(()) => Ok(rx),
            Err(refused) => Err(refused.0.proposal),
        }
    }
}

/// Queues `writes` contiguously: room for all of them is reserved first (the queue serves
/// reservations in order), so no other write can land between them, whichever runtime runs the
/// node. Each is marked as followed by more but the last. The writes back if the batching task
/// has stopped.
async fn queue_together(
    tx: &mpsc::Sender<Pending>,
    writes: Vec<(Proposal, usize)>,
) -> Vec<Result<oneshot::Receiver<Result<CommandResult, Failed>>, Proposal>> {
    let n = writes.len();
    match tx.reserve_many(n).await {
        Ok(permits) => writes
            .into_iter()
            .zip(permits)
            .enumerate()
            .map(|(i, ((proposal, size), permit))| {
                let (reply, rx) = oneshot::channel();
                permit.send(Pending { proposal, size, reply, more: i + 1 < n });
                Ok(rx)
            })
            .collect(),
        Err(_) => writes.into_iter().map(|(proposal, _)| Err(proposal)).collect(),
    }
}

/// The result of a write queued by [`Proposer::queue`] or [`queue_together`].
async fn answer(
    queued: Result<oneshot::Receiver<Result<CommandResult, Failed>>, Proposal>,
) -> Result<CommandResult, Failed> {
    match queued {
        Ok(rx) => rx.await.map_err(|_| {
            Failed::from(Error::OutcomeUnknown("leadership lost or node stopping before the write was answered".into()))
        })?,
        Err(proposal) => {
            let error = Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down");
            Err(Failed { error, proposal: Some(proposal) })
        }
    }
}

/// `Some(known leader)` when this node is not the leader now (as far as its metrics say).
fn not_leader(raft: &Raft) -> Option<Option<u64>> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    (m.state != openraft::ServerState::Leader).then_some(m.current_leader)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Longest a batch waits for the writers of the batch that just completed to send their next
/// write (see `next_batch`) while rounds are short. tokio's timer has millisecond resolution;
/// the wait normally ends much sooner, when the expected writes have arrived.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// The longest wait for returning writers when rounds are long (see [`Linger::after_round`]).
pub const LINGER_MAX: std::time::Duration = std::time::Duration::from_millis(5);

/// How long the next batch waits for returning writers, and for how many of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linger {
    /// The longest wait.
    pub wait: std::time::Duration,
    /// The share of the writers just answered that is waited for, in eighths.
    pub eighths: usize,
}

impl Linger {
    /// ¾ of the returning writers, at most [`LINGER`]: a round of a millisecond or so (a fast
    /// disk), where waiting longer delays everyone more than it batches.
    pub const SHORT: Self = Self { wait: LINGER, eighths: 6 };

    /// The linger after a round (proposal to answer) of `round`. While a round lasts over twice
    /// [`LINGER`] (a slow disk: every round waits for a follower's fsync), a writer that misses
    /// a batch waits a whole round more, so the batch waits longer, up to half a round (at most
    /// [`LINGER_MAX`]), for ⅞ of them. Measured on the bench's FUSE disk with fsync +5 ms, 64
    /// writers, 1 batch in flight: rounds of ~8 ms carried ~40 writes each with the short
    /// linger; this gave 4,340 -> 5,079-5,429 puts/s, p50 16.0 -> 9.9-10.1 ms (docs/design.md).
    pub fn after_round(round: std::time::Duration) -> Self {
        if round <= 2 * LINGER {
            return Self::SHORT;
        }
        Self { wait: (round / 2).clamp(LINGER, LINGER_MAX), eighths: 7 }
    }
}

/// The batching loop: one batch at a time (see `next_batch`), at most `in_flight` in Raft.
async fn run(
    raft: Raft,
    node_id: u64,
    mut rx: mpsc::Receiver<Pending>,
    in_flight: Arc<Semaphore>,
    mut hold: watch::Receiver<bool>,
) {
    // Writes answered by the batch that completed last and not yet waited for, and how long
    // that batch took from proposal to answer (µs).
    let answered = Arc::new(AtomicUsize::new(0));
    let round_us = Arc::new(AtomicU64::new(0));
    while let Some(first) = rx.recv().await {
        let Ok(mut permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let linger = Linger::after_round(std::time::Duration::from_micros(round_us.load(Ordering::Relaxed)));
        let batch = next_batch(first, &mut rx, answered.swap(0, Ordering::Relaxed), linger).await;
        if *hold.borrow_and_update() {
            // A transfer waits for every permit: give ours back while held.
            drop(permit);
            if hold.wait_for(|held| !*held).await.is_err() {
                return;
            }
            let Ok(p) = in_flight.clone().acquire_owned().await else {
                return;
            };
            permit = p;
        }
        let (proposals, replies): (Vec<Proposal>, Vec<_>) = batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
        // Refused here, nothing reached Raft: "not applied" for certain. Once handed to Raft, a
        // write may commit even if this node reports a lost leadership (another member holding
        // the entry can still commit it), so every later failure is "outcome unknown".
        if let Some(leader_id) = not_leader(&raft) {
            for (r, proposal) in replies.into_iter().zip(proposals) {
                let error = Error::NotLeader { node_id, leader_id, leader_addr: None, reached_raft: false };
                let _ = r.send(Err(Failed { error, proposal: Some(proposal) }));
            }
            continue;
        }
        let payload = LogPayload::V1(BatchV1 { leader_time_ms: now_ms(), proposals });
        match raft.client_write_ff(payload).await {
            Err(fatal) => {
                for r in replies {
                    let _ = r.send(Err(Error::OutcomeUnknown(format!("raft stopped: {fatal}")).into()));
                }
            }
            Ok(responder) => {
                let (answered, round_us) = (answered.clone(), round_us.clone());
                let proposed = std::time::Instant::now();
                tokio::spawn(async move {
                    let outcome = responder.await;
                    round_us.store(proposed.elapsed().as_micros() as u64, Ordering::Relaxed);
                    answered.store(replies.len(), Ordering::Relaxed);
                    drop(permit);
                    deliver(node_id, outcome, replies);
                });
            }
        }
    }
}

/// Forms one batch: `first`, everything queued (up to [`MAX_BATCH_PROPOSALS`] /
/// [`MAX_BATCH_BYTES`]), then, if `answered` writes were just answered by a completed batch,
/// waits (at most `linger.wait`) until the share `linger.eighths` of them have queued their
/// next write as well (see [`Linger`]).
///
/// Why: writers are mostly closed loops (a job manager, a client with a bounded number of
/// outstanding calls), and the writers of a batch that just completed send their next write a
/// fraction of a millisecond later. Proposing only what is queued at that moment splits the
/// writers into groups that alternate, each waiting for the other's whole Raft round (16
/// writers on one counter ran as two batches of 8). Waiting that fraction of a millisecond
/// keeps them in one batch per round. Nothing answered means nothing expected: an idle node's
/// first write never waits.
async fn next_batch(first: Pending, rx: &mut mpsc::Receiver<Pending>, answered: usize, linger: Linger) -> Vec<Pending> {
    let mut bytes = first.size;
    let mut batch = vec![first];
    take_queued(rx, &mut batch, &mut bytes);
    // The writers queued now were waiting already; those just answered come on top.
    let expect = batch.len() + answered * linger.eighths / 8;
    let deadline = tokio::time::Instant::now() + linger.wait;
    while batch.len() < expect && !full(&batch, bytes) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => {
                bytes += p.size;
                batch.push(p);
            }
            _ => break,
        }
    }
    // And the rest of a forwarded call whose first writes made it ([`Proposer::propose_all`]):
    // left for the next round, they would hold the whole call's answer until then, and the
    // batch after would wait for writers that cannot come back yet.
    take_queued_while(rx, &mut batch, &mut bytes, |batch| batch.last().is_some_and(|p| p.more));
    batch
}

fn full(batch: &[Pending], bytes: usize) -> bool {
    batch.len() >= MAX_BATCH_PROPOSALS || bytes >= MAX_BATCH_BYTES
}

/// Moves everything queued in `rx` into `batch`, up to a full batch.
fn take_queued(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, bytes: &mut usize) {
    take_queued_while(rx, batch, bytes, |_| true);
}

/// Moves what is queued in `rx` into `batch` while `more` says so, up to a full batch.
fn take_queued_while(
    rx: &mut mpsc::Receiver<Pending>,
    batch: &mut Vec<Pending>,
    bytes: &mut usize,
    more: impl Fn(&[Pending]) -> bool,
) {
    while more(batch) && !full(batch, *bytes) {
        match rx.try_recv() {
            Ok(p) => {
                *bytes += p.size;
                batch.push(p);
            }
            Err(_) => break,
        }
    }
}

type WriteOutcome = Result<
    Result<openraft::raft::ClientWriteResponse<super::TypeConfig>, ClientWriteError<u64, super::PeerNode>>,
    oneshot::error::RecvError,
>;

fn deliver(node_id: u64, outcome: WriteOutcome, replies: Vec<oneshot::Sender<Result<CommandResult, Failed>>>) {
    match outcome {
        Ok(Ok(resp)) => {
            let mut results = resp.data.0.into_iter();
            for r in replies {
                let result = results.next().ok_or_else(|| {
                    Error::Internal("state machine returned fewer results than proposals".into()).into()
                });
                let _ = r.send(result);
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            for r in replies {
                let _ = r.send(Err(Error::NotLeader {
                    node_id,
                    leader_id: f.leader_id,
                    leader_addr: None,
                    reached_raft: true,
                }
                .into()));
            }
        }
        Ok(Err(e)) => {
            for r in replies {
                let _ = r.send(Err(Error::OutcomeUnknown(e.to_string()).into()));
            }
        }
        Err(_) => {
            for r in replies {
                let _ =
                    r.send(Err(Error::OutcomeUnknown("leadership was lost before the write committed".into()).into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log_entry::Command;

    fn pending(n: u64) -> (Pending, oneshot::Receiver<Result<CommandResult, Failed>>) {
        let (reply, rx) = oneshot::channel();
        let proposal =
            Proposal { request_id: None, command: Command::RegisterNode { node_id: n, client_addr: String::new() } };
        (Pending { proposal, size: 16, reply, more: false }, rx)
    }

    fn ids(batch: &[Pending]) -> Vec<u64> {
        batch
            .iter()
            .map(|p| match &p.proposal.command {
                Command::RegisterNode { node_id, .. } => *node_id,
                _ => u64::MAX,
            })
            .collect()
    }

    #[tokio::test]
    async fn takes_everything_queued_and_does_not_wait_when_nothing_was_answered() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut keep = Vec::new();
        for n in 1..=3 {
            let (p, r) = pending(n);
            keep.push(r);
            tx.send(p).await.expect("queued");
        }
        let (first, r) = pending(0);
        keep.push(r);
        // A sender that would add more writes later must not be waited for.
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (p, r) = pending(9);
            let _ = tx.send(p).await;
            vec![r] // kept alive until the test ends
        });
        let batch = next_batch(first, &mut rx, 0, Linger::SHORT).await;
        assert_eq!(ids(&batch), vec![0, 1, 2, 3]);
        let _ = late.await;
    }

    #[tokio::test]
    async fn a_forwarded_call_whose_first_writes_make_a_batch_goes_in_it_whole() {
        let (tx, mut rx) = mpsc::channel(64);
        let (first, _r0) = pending(0);
        // Four writers were answered, so the batch waits for three; a forwarded call brings
        // six writes at once (queued back to back, as `propose_all` does), then a lone write.
        let call = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let mut keep = Vec::new();
            for n in 1..=7 {
                let (mut p, r) = pending(n);
                p.more = n < 6;
                keep.push(r);
                tx.try_send(p).expect("room");
            }
            keep
        });
        let batch = next_batch(first, &mut rx, 4, Linger::SHORT).await;
        assert_eq!(ids(&batch), vec![0, 1, 2, 3, 4, 5, 6], "the whole call joined the batch, the lone write did not");
        let _ = call.await;
    }

    #[tokio::test]
    async fn a_call_is_queued_contiguously_even_when_the_queue_is_nearly_full() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut keep = Vec::new();
        for n in 0..3 {
            let (p, r) = pending(n);
            keep.push(r);
            tx.send(p).await.expect("room");
        }
        // One slot left: the call of three waits for room, and a lone write comes meanwhile.
        let group = (10..13).map(|n| (pending(n).0.proposal, 16)).collect();
        let call = tokio::spawn({
            let tx = tx.clone();
            async move { queue_together(&tx, group).await }
        });
        tokio::task::yield_now().await;
        let lone = tokio::spawn(async move {
            let (p, r) = pending(99);
            tx.send(p).await.expect("room");
            vec![r] // kept alive until the test ends
        });
        tokio::task::yield_now().await;
        // Taken one at a time, letting the senders run in between (as a busy node would).
        let mut order = Vec::new();
        while order.len() < 7 {
            let p = rx.recv().await.expect("queued");
            order.push((ids(std::slice::from_ref(&p))[0], p.more));
            tokio::task::yield_now().await;
        }
        assert_eq!(
            order,
            vec![(0, false), (1, false), (2, false), (10, true), (11, true), (12, false), (99, false)],
            "the call's writes are contiguous, the last one unmarked"
        );
        let _ = (call.await, lone.await);
    }

    #[test]
    fn the_linger_grows_with_long_rounds_only() {
        let ms = Duration::from_millis;
        assert_eq!(Linger::after_round(Duration::ZERO), Linger::SHORT);
        assert_eq!(Linger::after_round(ms(2)), Linger::SHORT, "a fast disk's round keeps the short linger");
        assert_eq!(Linger::after_round(ms(8)), Linger { wait: ms(4), eighths: 7 });
        assert_eq!(Linger::after_round(ms(40)).wait, LINGER_MAX, "bounded");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_long_round_the_batch_waits_longer_for_more_of_the_returning_writers() {
        let (tx, mut rx) = mpsc::channel(64);
        let (first, _r0) = pending(0);
        // Eight writers were answered; seven come back 2 ms later, past the short linger.
        let senders = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let mut keep = Vec::new();
            for n in 1..=7 {
                let (p, r) = pending(n);
                keep.push(r);
                let _ = tx.send(p).await;
            }
            keep
        });
        let batch = next_batch(first, &mut rx, 8, Linger::after_round(Duration::from_millis(8))).await;
        assert_eq!(batch.len(), 8, "the returning writers joined: {:?}", ids(&batch));
        let _ = senders.await;
    }

    #[tokio::test]
    async fn waits_for_the_writers_just_answered_then_stops_at_the_linger_bound() {
        let (tx, mut rx) = mpsc::channel(16);
        let (first, _r0) = pending(0);
        // Eight writes were just answered: about six of them are expected back.
        let senders = tokio::spawn(async move {
            let mut keep = Vec::new();
            for n in 1..=8 {
                tokio::task::yield_now().await;
                let (p, r) = pending(n);
                keep.push(r);
                let _ = tx.send(p).await;
            }
            keep
        });
        let batch = next_batch(first, &mut rx, 8, Linger::SHORT).await;
        assert!(batch.len() >= 7, "the returning writers joined the batch: {:?}", ids(&batch));
        let _ = senders.await;

        // Expected writers that never come: the batch goes after the linger bound.
        let (tx, mut rx) = mpsc::channel::<Pending>(16);
        let (first, _r) = pending(0);
        let started = tokio::time::Instant::now();
        let batch = next_batch(first, &mut rx, 8, Linger::SHORT).await;
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1), "bounded wait");
        drop(tx);
    }
}
