//! Linearizable reads on the leader. While the leader holds its read lease (`read_lease`) a
//! read index is its applied index, answered at once. Otherwise reads are coalesced: every
//! read waiting when a quorum check starts is answered by that one check (openraft 0.9's
//! `ensure_linearizable` costs a heartbeat round per call). A read joins only a check that
//! starts after it arrived, so each read still sees every write acknowledged before it was
//! issued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot, watch};

use super::read_lease::ReadLease;
use super::{Raft, RaftMetrics};
use crate::error::{Error, UnavailableReason};
use crate::storage::sm_store::Applied;

type Waiter = oneshot::Sender<Result<u64, Error>>;

/// Handle to the coalescing task.
#[derive(Clone)]
pub struct ReadIndex {
    tx: mpsc::Sender<Waiter>,
    node_id: u64,
    lease: Arc<ReadLease>,
    metrics: watch::Receiver<RaftMetrics>,
    applied: watch::Receiver<Applied>,
    /// Set once the first read as leader has waited for the whole log (see `run`).
    floor_done: Arc<AtomicBool>,
}

impl ReadIndex {
    /// Starts the task.
    pub fn spawn(raft: Raft, node_id: u64, lease: Arc<ReadLease>, applied: watch::Receiver<Applied>) -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let floor_done = Arc::new(AtomicBool::new(false));
        let metrics = raft.metrics();
        tokio::spawn(run(raft, node_id, rx, floor_done.clone()));
        Self { tx, node_id, lease, metrics, applied, floor_done }
    }

    /// Confirms leadership (by the read lease, else with a quorum); returns the log index that
    /// this node has applied and that every linearizable read must observe.
    ///
    /// # Errors
    /// `NotLeader` or `Unavailable`.
    pub async fn read_index(&self) -> Result<u64, Error> {
        if let Some(index) = self.leased() {
            crate::ops::metrics::read_index_leased();
            return Ok(index);
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .await
            .map_err(|_| Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down"))?;
        rx.await.map_err(|_| Error::unavailable(UnavailableReason::ShuttingDown, "the node is shutting down"))?
    }

    /// The applied index, when this node leads, holds the read lease and has applied an entry
    /// of its own term (so every entry committed by earlier leaders is applied too). Every
    /// write acknowledged before this call was applied on this leader first, so the applied
    /// index read here covers it.
    fn leased(&self) -> Option<u64> {
        if !self.floor_done.load(Ordering::Acquire) {
            return None;
        }
        let applied = *self.applied.borrow();
        let m = self.metrics.borrow();
        if applied.term != m.vote.leader_id().get_term() {
            return None;
        }
        let configs = m.membership_config.membership().get_joint_config();
        self.lease.holds(self.node_id, &m.vote, configs, Instant::now()).then_some(applied.index)
    }
}

/// How long the first read as leader waits for the log it holds to be applied.
const FLOOR_WAIT: Duration = Duration::from_secs(5);

async fn run(raft: Raft, node_id: u64, mut rx: mpsc::Receiver<Waiter>, floor_done: Arc<AtomicBool>) {
    // The first read this node serves as leader waits until everything in its log is applied.
    // openraft 0.9 restores a restarted leader as leader of its term without a new blank
    // entry and reads at that term's first entry; the commit index is not fsynced, so after a
    // power loss it can lag far behind entries committed and acknowledged before. Every entry
    // the leader holds is committed before it is applied, so this read sees them all. Later
    // reads get a commit index at least as high from openraft.
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let started = std::time::Instant::now();
        let confirmed = raft.ensure_linearizable().await;
        crate::ops::metrics::observe_read_index(started.elapsed());
        let result = match confirmed {
            Ok(log_id) if !floor_done.load(Ordering::Acquire) => {
                let last = raft.metrics().borrow().last_log_index;
                let index = log_id.map_or(0, |l| l.index).max(last.unwrap_or(0));
                match raft.wait(Some(FLOOR_WAIT)).applied_index_at_least(Some(index), "read floor").await {
                    Ok(_) => {
                        floor_done.store(true, Ordering::Release);
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
