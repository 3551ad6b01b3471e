//! Write batching: many client proposals become one Raft log entry, so one fsync (on the leader
//! and on each follower) covers many writes.
//!
//! Proposals queue in a channel. A single task takes everything queued (up to
//! [`MAX_BATCH_PROPOSALS`] / [`MAX_BATCH_BYTES`]) and submits it as one entry; at most
//! `--batches-in-flight` entries are in flight at once, so while they commit the queue fills and the
//! next batch is larger. Latency stays one Raft round at low load; throughput grows with load.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Raft;
use crate::error::Error;
use crate::log_entry::{BatchV1, LogPayload, Proposal};
use crate::state_machine::response::CommandResult;

/// Most proposals in one log entry.
pub const MAX_BATCH_PROPOSALS: usize = 2048;
/// Most payload bytes in one log entry (a single larger proposal still goes alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Pending {
    proposal: Proposal,
    size: usize,
    reply: oneshot::Sender<Result<CommandResult, Error>>,
}

/// Handle to the batching task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task for `raft` on this node, with at most `in_flight` log entries
    /// proposed but not yet applied.
    pub fn spawn(raft: Raft, node_id: u64, in_flight: usize) -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(run(raft, node_id, rx, in_flight.max(1)));
        Self { tx }
    }

    /// Proposes one write and waits until it is applied on this node.
    ///
    /// # Errors
    /// `NotLeader` when this node is not the leader; `Unavailable` when leadership was lost or
    /// Raft stopped before the outcome was known (the write may or may not have applied).
    pub async fn propose(&self, proposal: Proposal, size: usize) -> Result<CommandResult, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { proposal, size, reply })
            .await
            .map_err(|_| Error::Unavailable("the node is shutting down".into()))?;
        rx.await.map_err(|_| {
            Error::Unavailable(
                "the write's outcome is unknown (leadership lost or node stopping); retry with the same request id"
                    .into(),
            )
        })?
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn run(raft: Raft, node_id: u64, mut rx: mpsc::Receiver<Pending>, in_flight: usize) {
    let in_flight = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_PROPOSALS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (proposals, replies): (Vec<Proposal>, Vec<_>) = batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
        let payload = LogPayload::V1(BatchV1 { leader_time_ms: now_ms(), proposals });
        match raft.client_write_ff(payload).await {
            Err(fatal) => {
                for r in replies {
                    let _ = r.send(Err(Error::Unavailable(format!("raft stopped: {fatal}"))));
                }
            }
            Ok(responder) => {
                tokio::spawn(async move {
                    let outcome = responder.await;
                    drop(permit);
                    deliver(node_id, outcome, replies);
                });
            }
        }
    }
}

type WriteOutcome = Result<
    Result<openraft::raft::ClientWriteResponse<super::TypeConfig>, ClientWriteError<u64, super::PeerNode>>,
    oneshot::error::RecvError,
>;

fn deliver(node_id: u64, outcome: WriteOutcome, replies: Vec<oneshot::Sender<Result<CommandResult, Error>>>) {
    match outcome {
        Ok(Ok(resp)) => {
            let mut results = resp.data.0.into_iter();
            for r in replies {
                let result = results
                    .next()
                    .ok_or_else(|| Error::Internal("state machine returned fewer results than proposals".into()));
                let _ = r.send(result);
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            for r in replies {
                let _ = r.send(Err(Error::NotLeader { node_id, leader_id: f.leader_id, leader_addr: None }));
            }
        }
        Ok(Err(e)) => {
            for r in replies {
                let _ = r.send(Err(Error::Unavailable(e.to_string())));
            }
        }
        Err(_) => {
            for r in replies {
                let _ = r.send(Err(Error::Unavailable(
                    "leadership was lost before the write committed; outcome unknown, retry with the same request id"
                        .into(),
                )));
            }
        }
    }
}
