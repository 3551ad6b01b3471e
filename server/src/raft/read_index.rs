//! Linearizable reads on the leader, coalesced: every read waiting when a quorum check starts
//! is answered by that one check (openraft 0.9's `ensure_linearizable` costs a heartbeat round
//! per call). A read joins only a check that starts after it arrived, so each read still sees
//! every write acknowledged before it was issued.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::Raft;
use crate::error::{Error, UnavailableReason};

type Waiter = oneshot::Sender<Result<u64, Error>>;

/// Handle to the coalescing task.
#[derive(Clone)]
pub struct ReadIndex {
    tx: mpsc::Sender<Waiter>,
}

impl ReadIndex {
    /// Starts the task.
    pub fn spawn(raft: Raft, node_id: u64) -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(run(raft, node_id, rx));
        Self { tx }
    }

    /// Confirms leadership with a quorum; returns the log index that this node has applied and
    /// that every linearizable read must observe.
    ///
    /// # Errors
    /// `NotLeader` or `Unavailable`.
    pub async fn read_index(&self) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .await
            .map_err(|_| Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down"))?;
        rx.await.map_err(|_| Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down"))?
    }
}

/// How long the first read as leader waits for the log it holds to be applied.
const FLOOR_WAIT: Duration = Duration::from_secs(5);

async fn run(raft: Raft, node_id: u64, mut rx: mpsc::Receiver<Waiter>) {
    // The first read this node serves as leader waits until everything in its log is applied.
    // openraft 0.9 restores a restarted leader as leader of its term without a new blank
    // entry and reads at that term's first entry; the commit index is not fsynced, so after a
    // power loss it can lag far behind entries committed and acknowledged before. Every entry
    // the leader holds is committed before it is applied, so this read sees them all. Later
    // reads get a commit index at least as high from openraft.
    let mut floor_pending = true;
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let started = std::time::Instant::now();
        let confirmed = raft.ensure_linearizable().await;
        crate::ops::metrics::observe_read_index(started.elapsed());
        let result = match confirmed {
            Ok(log_id) if floor_pending => {
                let last = raft.metrics().borrow().last_log_index;
                let index = log_id.map_or(0, |l| l.index).max(last.unwrap_or(0));
                match raft.wait(Some(FLOOR_WAIT)).applied_index_at_least(Some(index), "read floor").await {
                    Ok(_) => {
                        floor_pending = false;
                        Ok(index)
                    }
                    Err(e) => Err(Error::unavailable(
                        UnavailableReason::Behind,
                        format!("log not applied yet after a restart: {e}"),
                    )),
                }
            }
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::NotLeader { node_id, leader_id: f.leader_id, leader_addr: None, reached_raft: false })
            }
            Err(e) => Err(Error::unavailable(UnavailableReason::Unreachable, e.to_string())),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
