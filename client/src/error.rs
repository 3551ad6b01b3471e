//! The client's error type: keeps the gRPC status code and the server's message.

use conclave_proto::errors::{reason_of, Reason};
use tonic::Code;

pub use crate::request_id::WriteId;

/// Everything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status (bad input, failed precondition, ...). Retrying
    /// the same request will give the same answer.
    #[error("{code:?}: {message}")]
    Status {
        /// gRPC status code.
        code: Code,
        /// The server's message (for people; decide nothing from it).
        message: String,
        /// The machine-readable reason of the error contract, when the server sent one.
        reason: Option<Reason>,
    },
    /// A write whose outcome cannot be known: it may or may not have been applied (the deadline
    /// passed while the cluster was unreachable or changing leader after the write was sent, or
    /// the server forgot the result of a retry, reason `RETRY_TOO_OLD`). Never treat it as
    /// success or as failure: read the state to find out, or send the same write again with
    /// [`Indeterminate::write_id`] (e.g. [`crate::Client::counter_add_as`]): the server answers
    /// the original result and never applies it twice.
    #[error("outcome unknown: {0}")]
    Indeterminate(Indeterminate),
    /// A fenced write was rejected: the lease is no longer held with the presented token (the
    /// writer's session expired or a newer holder took over). The writer must stop acting as
    /// the owner; nothing was written.
    #[error("fenced out: lease {lease:?} is not held with token {presented_token} (current token {current_token}, 0 = not held)")]
    Fenced {
        /// The lease.
        lease: String,
        /// The token the write presented.
        presented_token: u64,
        /// The current token (0 = not held).
        current_token: u64,
    },
    /// No endpoint could be reached before the deadline; nothing was applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A malformed endpoint or argument given to the client.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A client-side status error (no server reason).
    pub(crate) fn local(code: Code, message: impl Into<String>) -> Self {
        Error::Status { code, message: message.into(), reason: None }
    }

    /// The error contract's reason, when the server sent one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Status { reason, .. } => *reason,
            _ => None,
        }
    }

    /// The gRPC code this error corresponds to.
    pub fn code(&self) -> Code {
        match self {
            Error::Status { code, .. } => *code,
            Error::Indeterminate(_) => Code::Unknown,
            Error::Fenced { .. } => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::InvalidArgument(_) => Code::InvalidArgument,
        }
    }

    pub(crate) fn from_status(s: &tonic::Status) -> Self {
        Error::Status { code: s.code(), message: s.message().to_owned(), reason: reason_of(s) }
    }
}

/// The details of [`Error::Indeterminate`].
#[derive(Debug, Clone)]
pub struct Indeterminate {
    /// What happened, for people.
    pub message: String,
    /// The write's id, to send it again (`None` for a write that had none).
    pub write_id: Option<WriteId>,
}

impl Indeterminate {
    pub(crate) fn new(message: String) -> Self {
        Self { message, write_id: None }
    }
}

impl std::fmt::Display for Indeterminate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    /// Attaches the write's id to an `Indeterminate` error (other errors pass through).
    pub(crate) fn with_write_id(self, id: &WriteId) -> Self {
        match self {
            Error::Indeterminate(i) => Error::Indeterminate(Indeterminate { write_id: Some(id.clone()), ..i }),
            other => other,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
