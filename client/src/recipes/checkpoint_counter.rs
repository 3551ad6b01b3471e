//! Checkpoint-ID counter.
//!
//! Ids start at 1. [`CheckpointIdCounter::get_and_increment`] returns the previous value in one
//! round trip (a server-side atomic add inside a fenced transaction: no read-modify-write loop),
//! so ids are unique and strictly increasing across leader failovers and crashes; a retry after
//! a lost answer is deduplicated by the server (never skips or repeats an id). An increment
//! whose outcome stays unknown returns `Indeterminate`: treat that id as possibly used.
//! Increments and `set` are fenced by the leadership token when one is given: a stale leader
//! gets [`Error::Fenced`] and nothing changes.

use super::election::{LeaderElection, LeaderToken};
use super::{check_fencing, keys, put_op};
use crate::{proto as pb, Client, Error, Result};

/// A job's status, as far as cleanup is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Still running, restarting, suspended, ... (not terminal).
    NonTerminal,
    /// Finished.
    Finished,
    /// Failed.
    Failed,
    /// Canceled.
    Canceled,
    /// Suspended: terminal locally, but another job manager will recover the job.
    Suspended,
}

impl JobStatus {
    /// Whether the job is over for good (its HA data may be deleted).
    pub fn is_globally_terminal(self) -> bool {
        matches!(self, JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled)
    }
}

/// A job's checkpoint-id counter.
#[derive(Clone)]
pub struct CheckpointIdCounter {
    client: Client,
    name: String,
    marker: String,
    token: Option<LeaderToken>,
}

fn op(request: pb::request_op::Request) -> pb::RequestOp {
    pb::RequestOp { request: Some(request) }
}

impl CheckpointIdCounter {
    /// The counter of `job_id` in `cluster_id`, fenced by `token` when given.
    ///
    /// # Errors
    /// `InvalidArgument` for malformed ids.
    pub fn new(client: &Client, cluster_id: &str, job_id: &str, token: Option<LeaderToken>) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        keys::check_id("job id", job_id)?;
        Ok(Self {
            client: client.clone(),
            name: keys::checkpoint_counter(cluster_id, job_id),
            marker: format!("{}{job_id}", keys::counter_markers(cluster_id)),
            token,
        })
    }

    fn fenced(&self, mut compare: Vec<pb::Compare>, success: Vec<pb::RequestOp>) -> pb::TxnRequest {
        if let Some(t) = &self.token {
            compare.push(LeaderElection::fence(t));
        }
        pb::TxnRequest { compare, success, ..Default::default() }
    }

    /// Makes sure the counter exists, starting at 1 (idempotent: an existing counter is kept).
    ///
    /// # Errors
    /// [`Error::Fenced`] for a stale leader.
    pub async fn start(&self) -> Result<()> {
        let counter_is = |v: u64| pb::Compare {
            target: Some(pb::compare::Target::Counter(pb::CounterCompare {
                name: self.name.clone(),
                op: pb::CompareOp::Equal as i32,
                value: v,
            })),
        };
        let init = vec![
            op(pb::request_op::Request::CounterSet(pb::CounterSetRequest {
                name: self.name.clone(),
                value: 1,
                request_id: None,
            })),
            put_op(self.marker.clone().into_bytes(), self.name.clone().into_bytes(), 0),
        ];
        check_fencing(&self.client.txn(self.fenced(vec![counter_is(0)], init)).await?)
    }

    /// Returns the current id and advances the counter by one, in one round trip.
    ///
    /// # Errors
    /// [`Error::Fenced`] for a stale leader; `Indeterminate` when the outcome is unknown.
    pub async fn get_and_increment(&self) -> Result<u64> {
        let add = op(pb::request_op::Request::CounterAdd(pb::CounterAddRequest {
            name: self.name.clone(),
            delta: 1,
            request_id: None,
        }));
        let resp = self.client.txn(self.fenced(Vec::new(), vec![add])).await?;
        check_fencing(&resp)?;
        match resp.responses.first().and_then(|r| r.response.as_ref()) {
            Some(pb::response_op::Response::CounterAdd(a)) => Ok(a.previous),
            _ => Err(Error::local(tonic::Code::Internal, "missing counter result")),
        }
    }

    /// The next id `get_and_increment` would return (linearizable).
    ///
    /// # Errors
    /// `Unavailable` when the cluster cannot answer.
    pub async fn get(&self) -> Result<u64> {
        Ok(self.client.counter_get(&self.name, false).await?.value)
    }

    /// Sets the next id (on restore), fenced.
    ///
    /// # Errors
    /// [`Error::Fenced`] for a stale leader.
    pub async fn set(&self, next_id: u64) -> Result<()> {
        let set = op(pb::request_op::Request::CounterSet(pb::CounterSetRequest {
            name: self.name.clone(),
            value: next_id,
            request_id: None,
        }));
        check_fencing(&self.client.txn(self.fenced(Vec::new(), vec![set])).await?)
    }

    /// Deletes the counter if the job is globally terminal; otherwise keeps it. Idempotent.
    /// Returns whether the counter is gone.
    ///
    /// # Errors
    /// As [`Client::txn`].
    pub async fn shutdown(&self, status: JobStatus) -> Result<bool> {
        if !status.is_globally_terminal() {
            return Ok(false);
        }
        let del = vec![
            op(pb::request_op::Request::CounterDelete(pb::CounterDeleteRequest {
                name: self.name.clone(),
                request_id: None,
            })),
            super::delete_op(self.marker.clone().into_bytes(), false),
        ];
        self.client.txn(pb::TxnRequest { success: del, ..Default::default() }).await?;
        Ok(true)
    }
}
