//! The server's error type and its single conversion to `tonic::Status`.
//!
//! | variant | gRPC code |
//! |---|---|
//! | `InvalidArgument`, `KeyTooLarge`, `ValueTooLarge`, `TooManyOps`, `EmptyKey` | INVALID_ARGUMENT |
//! | `RequestTooLarge` | RESOURCE_EXHAUSTED |
//! | `Compacted`, `FutureRevision` | OUT_OF_RANGE |
//! | `Command(CounterOverflow)`, `Command(RetryTooOld)`, `Command(LeaseNotHeld)` | FAILED_PRECONDITION |
//! | `Command(SessionNotFound)` | NOT_FOUND |
//! | `NotLeader`, `NoLeader`, `LeaderChanged`, `Unavailable` | UNAVAILABLE (retriable; leader hint in metadata) |
//! | `Internal` | INTERNAL |

use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::state_machine::response::CommandError;
use crate::state_machine::ReadError;

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// Empty key.
    #[error("{0}: the key must not be empty")]
    EmptyKey(&'static str),
    /// A key over the limit.
    #[error("key is {size} bytes; the limit is {limit} bytes")]
    KeyTooLarge {
        /// Actual size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// A value over the limit.
    #[error("value is {size} bytes; the limit is {limit} bytes")]
    ValueTooLarge {
        /// Actual size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// A transaction with too many operations.
    #[error("transaction has {count} operations (compares + ops); the limit is {limit}")]
    TooManyOps {
        /// Actual count.
        count: usize,
        /// Limit.
        limit: usize,
    },
    /// A request over the size limit.
    #[error("request is {size} bytes; the limit is {limit} bytes")]
    RequestTooLarge {
        /// Actual size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// A read at a compacted or future revision.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A deterministic business failure from the state machine.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// This node is not the leader (and did not forward).
    #[error("node {node_id} is not the leader; the leader is node {leader_id:?}")]
    NotLeader {
        /// This node.
        node_id: u64,
        /// The leader, if known.
        leader_id: Option<u64>,
        /// The leader's client address, if known.
        leader_addr: Option<String>,
    },
    /// No leader is known (election in progress or no quorum).
    #[error("no leader is known to node {0} (election in progress or no quorum); retry")]
    NoLeader(u64),
    /// The leader changed while the request was in flight: the outcome is unknown; retry with
    /// the same request id (safe: writes are deduplicated).
    #[error("leader {0} changed while the request was in flight; outcome unknown, retry with the same request id")]
    LeaderChanged(u64),
    /// Transient failure (peer unreachable, Raft busy, shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or storage fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Errors that cross the peer protocol (a forwarded proposal or read index).
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The contacted node is not the leader.
    #[error("node {node_id} is not the leader (leader: {leader_id:?})")]
    NotLeader {
        /// Contacted node.
        node_id: u64,
        /// Leader it knows.
        leader_id: Option<u64>,
    },
    /// Anything else, retriable.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ForwardError> for Error {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader { node_id, leader_id } => {
                Error::NotLeader { node_id, leader_id, leader_addr: None }
            }
            ForwardError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}

impl From<Error> for ForwardError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { node_id, leader_id, .. } => ForwardError::NotLeader { node_id, leader_id },
            other => ForwardError::Unavailable(other.to_string()),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(_)
            | Error::EmptyKey(_)
            | Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::TooManyOps { .. } => Status::invalid_argument(message),
            Error::RequestTooLarge { .. } => Status::resource_exhausted(message),
            Error::Read(_) => Status::out_of_range(message),
            Error::Command(CommandError::SessionNotFound { .. }) => Status::not_found(message),
            Error::Command(_) => Status::failed_precondition(message),
            Error::NotLeader { leader_id, leader_addr, .. } => {
                let mut status = Status::unavailable(message);
                if let Some(id) = leader_id {
                    if let Ok(v) = MetadataValue::try_from(id.to_string()) {
                        status.metadata_mut().insert(conclave_proto::LEADER_ID_METADATA, v);
                    }
                }
                if let Some(addr) = leader_addr {
                    if let Ok(v) = MetadataValue::try_from(addr) {
                        status.metadata_mut().insert(conclave_proto::LEADER_HINT_METADATA, v);
                    }
                }
                status
            }
            Error::NoLeader(_) | Error::LeaderChanged(_) | Error::Unavailable(_) => Status::unavailable(message),
            Error::Internal(_) => Status::internal(message),
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
