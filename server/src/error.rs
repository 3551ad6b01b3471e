//! The server's error type and its single conversion to `tonic::Status`: the one place that
//! builds error statuses, with the machine-readable reason and the outcome of the shared
//! contract (`conclave_proto::errors`).
//!
//! | variant | gRPC code | reason | outcome |
//! |---|---|---|---|
//! | `InvalidArgument`, `KeyTooLarge`, `ValueTooLarge`, `TooManyOps`, `EmptyKey` | INVALID_ARGUMENT | INVALID_ARGUMENT | NOT_APPLIED |
//! | `RequestTooLarge` | RESOURCE_EXHAUSTED | REQUEST_TOO_LARGE | NOT_APPLIED |
//! | `LimitExceeded` | RESOURCE_EXHAUSTED | LIMIT_EXCEEDED | NOT_APPLIED |
//! | `Read(Compacted)`, `Read(Future)` | OUT_OF_RANGE | COMPACTED, FUTURE_REVISION | NOT_APPLIED |
//! | `Command(SessionNotFound)` | NOT_FOUND | SESSION_NOT_FOUND | APPLIED |
//! | `Command(CounterOverflow)`, `Command(LeaseNotHeld)` | FAILED_PRECONDITION | COUNTER_OVERFLOW, LEASE_NOT_HELD | APPLIED |
//! | `Command(RetryTooOld)` | UNKNOWN | RETRY_TOO_OLD | UNKNOWN |
//! | `NotLeader` | UNAVAILABLE | NOT_LEADER | NOT_APPLIED, or UNKNOWN once the write reached Raft |
//! | `NoLeader` | UNAVAILABLE | NO_LEADER | NOT_APPLIED |
//! | `LeaderChanged` | UNAVAILABLE | LEADER_CHANGED | UNKNOWN |
//! | `Unavailable` | UNAVAILABLE | the given reason | NOT_APPLIED |
//! | `OutcomeUnknown` | UNAVAILABLE | the given reason | UNKNOWN |
//! | `Membership` | ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION | MEMBER_EXISTS, MEMBER_NOT_FOUND, LEARNER_NOT_READY, QUORUM_AT_RISK | NOT_APPLIED |
//! | `Unavailable(TransferFailed)` | UNAVAILABLE | TRANSFER_FAILED | NOT_APPLIED |
//! | `ClusterIdMismatch` | FAILED_PRECONDITION | CLUSTER_ID_MISMATCH | NOT_APPLIED |
//! | `Unauthenticated` | UNAUTHENTICATED | AUTH_REQUIRED, AUTH_FAILED, TOKEN_INVALID, TOKEN_EXPIRED | NOT_APPLIED |
//! | `PermissionDenied`, `SessionNotOwned` | PERMISSION_DENIED | PERMISSION_DENIED | NOT_APPLIED |
//! | `Command(Auth)` | ALREADY_EXISTS, NOT_FOUND | AUTH_EXISTS, AUTH_NOT_FOUND | APPLIED |
//! | `Command(PermissionDenied)` (refused at apply, `Command::AsUser`) | PERMISSION_DENIED | PERMISSION_DENIED | APPLIED |
//! | `Internal` | INTERNAL | INTERNAL | UNKNOWN |
//!
//! The type is serializable so that a leader's error crosses the peer protocol intact: a
//! follower answers its client exactly what the leader said.

use conclave_proto::errors::{self, Outcome, Reason};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::state_machine::response::AuthRefusal;
use crate::state_machine::response::CommandError;
use crate::state_machine::ReadError;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// Empty key.
    #[error("{0}: the key must not be empty")]
    EmptyKey(String),
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
    /// A per-stream or per-request resource limit (the message names it and its value).
    #[error("{0}")]
    LimitExceeded(String),
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
        /// Whether the write had been handed to Raft (it may then still commit).
        reached_raft: bool,
    },
    /// No leader is known (election in progress or no quorum).
    #[error("no leader is known to node {0} (election in progress or no quorum); retry")]
    NoLeader(u64),
    /// The leader changed while the request was in flight: the outcome is unknown; retry with
    /// the same request id (safe: writes are deduplicated).
    #[error("leader {0} changed while the request was in flight; outcome unknown, retry with the same request id")]
    LeaderChanged(u64),
    /// Transient failure before anything was applied (shutting down, behind, unreachable).
    #[error("unavailable: {message}")]
    Unavailable {
        /// Which one.
        reason: UnavailableReason,
        /// For people.
        message: String,
    },
    /// A transient failure after the write may have reached the leader.
    #[error("outcome unknown: {0}; retry with the same request id")]
    OutcomeUnknown(String),
    /// A refused membership change (the message says why and what to do).
    #[error("{message}")]
    Membership {
        /// Which refusal.
        reason: MembershipRefusal,
        /// For people.
        message: String,
    },
    /// A peer message from a member of another cluster (the message names both ids).
    #[error("{0}")]
    ClusterIdMismatch(String),
    /// No, or no valid, identity (`--auth`): the message says which and what to do.
    #[error("{message}")]
    Unauthenticated {
        /// Which failure.
        reason: AuthFailure,
        /// For people.
        message: String,
    },
    /// The caller lacks a permission.
    #[error("permission denied: user {user:?} needs {needed} permission on {what}; ask an administrator (root) to grant it to one of the user's roles")]
    PermissionDenied {
        /// The user.
        user: String,
        /// `read`, `write`, or `root` for root-only operations.
        needed: String,
        /// The key, prefix or operation.
        what: String,
    },
    /// A bug or storage fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// Under `--auth`, `user` named a session another user opened (the owner is not named).
    #[error("permission denied: session {session_id} belongs to another user; only the user who opened it (or root) may keep it alive, close it, read it or bind keys and leases to it; user {user:?} can open its own session")]
    SessionNotOwned {
        /// The caller.
        user: String,
        /// The session.
        session_id: u64,
    },
}

/// The kinds of [`Error::Unauthenticated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthFailure {
    /// No token and no client certificate.
    Required,
    /// Wrong user or password (or no root user yet).
    Failed,
    /// Malformed or foreign token, or its user no longer exists.
    TokenInvalid,
    /// The token expired or its user's credentials changed: authenticate again.
    TokenExpired,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipRefusal {
    /// The id is already a member.
    Exists,
    /// No such member (or not a learner, for a promotion).
    NotFound,
    /// The learner has not caught up.
    LearnerNotReady,
    /// The removal would leave no quorum of live voters.
    QuorumAtRisk,
}

/// The kinds of [`Error::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnavailableReason {
    /// The node is stopping.
    ShuttingDown,
    /// The node has not applied a requested revision in time.
    Behind,
    /// A peer or the leader could not be reached.
    Unreachable,
    /// The node is rejoining after losing its data.
    Rejoining,
    /// A leadership transfer did not complete.
    TransferFailed,
}

impl Error {
    /// `Unavailable` of kind `reason`.
    pub fn unavailable(reason: UnavailableReason, message: impl Into<String>) -> Self {
        Error::Unavailable { reason, message: message.into() }
    }

    /// `Unauthenticated` of kind `reason`.
    pub fn unauthenticated(reason: AuthFailure, message: impl Into<String>) -> Self {
        Error::Unauthenticated { reason, message: message.into() }
    }

    /// Whether this is a refusal of the caller (`Unauthenticated`, `PermissionDenied`,
    /// `SessionNotOwned`), as opposed to a failure of the request.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Unauthenticated { .. } | Error::PermissionDenied { .. } | Error::SessionNotOwned { .. })
    }

    /// Whether the request may have taken effect.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Command(CommandError::RetryTooOld { .. }) => Outcome::Unknown,
            Error::Command(_) => Outcome::Applied,
            Error::NotLeader { reached_raft: true, .. }
            | Error::LeaderChanged(_)
            | Error::OutcomeUnknown(_)
            | Error::Internal(_) => Outcome::Unknown,
            _ => Outcome::NotApplied,
        }
    }

    /// The machine-readable reason.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument(_)
            | Error::EmptyKey(_)
            | Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::TooManyOps { .. } => Reason::InvalidArgument,
            Error::RequestTooLarge { .. } => Reason::RequestTooLarge,
            Error::LimitExceeded(_) => Reason::LimitExceeded,
            Error::Read(ReadError::Compacted { .. }) => Reason::Compacted,
            Error::Read(ReadError::Future { .. }) => Reason::FutureRevision,
            Error::Command(CommandError::SessionNotFound { .. }) => Reason::SessionNotFound,
            Error::Command(CommandError::CounterOverflow { .. }) => Reason::CounterOverflow,
            Error::Command(CommandError::LeaseNotHeld { .. }) => Reason::LeaseNotHeld,
            Error::Command(CommandError::RetryTooOld { .. }) => Reason::RetryTooOld,
            Error::NotLeader { .. } => Reason::NotLeader,
            Error::NoLeader(_) => Reason::NoLeader,
            Error::LeaderChanged(_) => Reason::LeaderChanged,
            Error::Unavailable { reason, .. } => match reason {
                UnavailableReason::ShuttingDown => Reason::ShuttingDown,
                UnavailableReason::Behind => Reason::Behind,
                UnavailableReason::Unreachable => Reason::Unavailable,
                UnavailableReason::Rejoining => Reason::Rejoining,
                UnavailableReason::TransferFailed => Reason::TransferFailed,
            },
            Error::OutcomeUnknown(_) => Reason::Unavailable,
            Error::Membership { reason, .. } => match reason {
                MembershipRefusal::Exists => Reason::MemberExists,
                MembershipRefusal::NotFound => Reason::MemberNotFound,
                MembershipRefusal::LearnerNotReady => Reason::LearnerNotReady,
                MembershipRefusal::QuorumAtRisk => Reason::QuorumAtRisk,
            },
            Error::ClusterIdMismatch(_) => Reason::ClusterIdMismatch,
            Error::Unauthenticated { reason, .. } => match reason {
                AuthFailure::Required => Reason::AuthRequired,
                AuthFailure::Failed => Reason::AuthFailed,
                AuthFailure::TokenInvalid => Reason::TokenInvalid,
                AuthFailure::TokenExpired => Reason::TokenExpired,
            },
            Error::PermissionDenied { .. }
            | Error::SessionNotOwned { .. }
            | Error::Command(CommandError::PermissionDenied { .. }) => Reason::PermissionDenied,
            Error::Command(CommandError::Auth { refusal: AuthRefusal::Exists, .. }) => Reason::AuthExists,
            Error::Command(CommandError::Auth { refusal: AuthRefusal::NotFound, .. }) => Reason::AuthNotFound,
            Error::Internal(_) => Reason::Internal,
        }
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_)
            | Error::EmptyKey(_)
            | Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::TooManyOps { .. } => Code::InvalidArgument,
            Error::RequestTooLarge { .. } | Error::LimitExceeded(_) => Code::ResourceExhausted,
            Error::Read(_) => Code::OutOfRange,
            Error::Command(CommandError::SessionNotFound { .. }) => Code::NotFound,
            Error::Command(CommandError::RetryTooOld { .. }) => Code::Unknown,
            Error::Command(CommandError::PermissionDenied { .. }) => Code::PermissionDenied,
            Error::Command(CommandError::Auth { refusal: AuthRefusal::Exists, .. }) => Code::AlreadyExists,
            Error::Command(CommandError::Auth { refusal: AuthRefusal::NotFound, .. }) => Code::NotFound,
            Error::Command(_) => Code::FailedPrecondition,
            Error::NotLeader { .. }
            | Error::NoLeader(_)
            | Error::LeaderChanged(_)
            | Error::Unavailable { .. }
            | Error::OutcomeUnknown(_) => Code::Unavailable,
            Error::Membership { reason: MembershipRefusal::Exists, .. } => Code::AlreadyExists,
            Error::Membership { reason: MembershipRefusal::NotFound, .. } => Code::NotFound,
            Error::Membership { .. } | Error::ClusterIdMismatch(_) => Code::FailedPrecondition,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } | Error::SessionNotOwned { .. } => Code::PermissionDenied,
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let mut status = errors::status(e.code(), e.to_string(), e.reason(), e.outcome());
        if let Error::NotLeader { leader_id, leader_addr, .. } = e {
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
        }
        status
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_carries_reason_and_outcome() {
        let cases = [
            (Error::Command(CommandError::RetryTooOld { client_id: 1, seq: 2 }), Code::Unknown, Outcome::Unknown),
            (
                Error::NotLeader { node_id: 1, leader_id: Some(2), leader_addr: None, reached_raft: false },
                Code::Unavailable,
                Outcome::NotApplied,
            ),
            (
                Error::NotLeader { node_id: 1, leader_id: None, leader_addr: None, reached_raft: true },
                Code::Unavailable,
                Outcome::Unknown,
            ),
            (Error::LeaderChanged(3), Code::Unavailable, Outcome::Unknown),
            (Error::NoLeader(1), Code::Unavailable, Outcome::NotApplied),
            (
                Error::Command(CommandError::CounterOverflow { name: "c".into(), value: 1, delta: u64::MAX }),
                Code::FailedPrecondition,
                Outcome::Applied,
            ),
            (
                Error::Command(CommandError::PermissionDenied { message: "user \"u\" lacks write".into() }),
                Code::PermissionDenied,
                Outcome::Applied,
            ),
        ];
        for (e, code, outcome) in cases {
            let reason = e.reason();
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(errors::reason_of(&s), Some(reason));
            assert_eq!(errors::outcome_of(&s), outcome);
        }
    }

    #[test]
    fn errors_cross_the_peer_protocol_intact() {
        let e = Error::NotLeader { node_id: 1, leader_id: Some(2), leader_addr: None, reached_raft: true };
        let bytes = crate::log_entry::encode(&e).expect("encode");
        let back: Error = crate::log_entry::decode(&bytes).expect("decode");
        assert_eq!(back, e);
    }
}
