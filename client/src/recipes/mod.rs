//! Recipes for high-availability job managers, built on transactions, sessions, leases and
//! watches. Each module states its guarantee and its failure modes.
//!
//! | module | what |
//! |---|---|
//! | [`election`] | [`LeaderElection`]: one per process; fenced leadership with a UUID and an epoch |
//! | [`retrieval`] | publishing leader addresses (fenced, ephemeral) and following them |
//! | [`checkpoint_counter`] | [`CheckpointIdCounter`]: never-repeating checkpoint ids |
//! | [`state_handle_store`] | [`StateHandleStore`]: owner-locked pointers to state |
//! | [`job_result_store`] | [`JobResultStore`]: dirty / clean job results |
//! | [`cleanup`] | deleting a job's or a cluster id's data, listing cluster ids |
//!
//! All keys of one cluster id live under [`keys::cluster_prefix`].

pub mod checkpoint_counter;
pub mod cleanup;
pub mod election;
pub mod job_result_store;
pub mod keys;
pub mod retrieval;
pub mod state_handle_store;

pub use checkpoint_counter::{CheckpointIdCounter, JobStatus};
pub use election::{LeaderElection, LeaderToken, LeadershipEvent, RevokePolicy};
pub use job_result_store::JobResultStore;
pub use retrieval::{LeaderInfo, LeaderRetrieval};
pub use state_handle_store::StateHandleStore;

use conclave_proto::v1 as pb;

use crate::{Error, Result};

/// Turns a transaction's fencing failure into [`Error::Fenced`].
pub(crate) fn check_fencing(resp: &pb::TxnResponse) -> Result<()> {
    match &resp.fencing_failure {
        Some(f) => Err(Error::Fenced {
            lease: f.lease.clone(),
            presented_token: f.presented_token,
            current_token: f.current_token,
        }),
        None => Ok(()),
    }
}

/// A put operation for a transaction.
pub(crate) fn put_op(key: Vec<u8>, value: Vec<u8>, session_id: u64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest { key, value, session_id, ..Default::default() })),
    }
}

/// A delete operation (one key, or a prefix).
pub(crate) fn delete_op(key: Vec<u8>, prefix: bool) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::DeleteRange(pb::DeleteRangeRequest {
            range: Some(pb::KeyRange { key, range_end: Vec::new(), prefix }),
            ..Default::default()
        })),
    }
}

/// A range operation (one key, or a prefix).
pub(crate) fn range_op(key: Vec<u8>, prefix: bool) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Range(pb::RangeRequest {
            range: Some(pb::KeyRange { key, range_end: Vec::new(), prefix }),
            ..Default::default()
        })),
    }
}

/// A compare on a key's existence.
pub(crate) fn exists(key: Vec<u8>, exists: bool) -> pb::Compare {
    pb::Compare {
        target: Some(pb::compare::Target::Key(pb::KeyCompare {
            key,
            op: pb::CompareOp::Equal as i32,
            target: Some(pb::key_compare::Target::Exists(exists)),
        })),
    }
}
