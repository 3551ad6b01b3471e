//! What applying a command produces. Business outcomes (a failed compare, an overflowing
//! counter, a forgotten retry) are values here, agreed by every replica; they are never
//! storage errors.

use serde::{Deserialize, Serialize};

use super::mvcc::KeyValue;
use super::sessions::Holder;

/// The result of one proposal.
pub type CommandResult = Result<Outcome, CommandError>;

/// A successfully applied command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The store revision after the command (the revision it created, if it changed anything).
    pub revision: u64,
    /// Command-specific result.
    pub body: OutcomeBody,
}

/// Command-specific results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OutcomeBody {
    /// A put.
    Put {
        /// Previous key-value if requested and present.
        prev: Option<KeyValue>,
    },
    /// A delete.
    DeleteRange {
        /// Number of keys deleted.
        deleted: u64,
        /// Deleted key-values if requested.
        prev_kvs: Vec<KeyValue>,
    },
    /// A transaction.
    Txn {
        /// Whether every compare held.
        succeeded: bool,
        /// One result per executed operation.
        responses: Vec<OpResult>,
        /// Set when a lease compare failed: the transaction was rejected, nothing ran.
        fencing_failure: Option<FencingFailure>,
    },
    /// A session was opened.
    SessionOpened {
        /// Its id.
        session_id: u64,
    },
    /// A session was closed or expired.
    SessionClosed {
        /// Ephemeral keys deleted.
        deleted_keys: u64,
        /// Leases released.
        released_leases: Vec<String>,
    },
    /// A lease acquisition.
    LeaseAcquired {
        /// Whether the session holds the lease now.
        granted: bool,
        /// The holder after the call.
        holder: Holder,
    },
    /// A lease was released.
    LeaseReleased,
    /// A counter addition.
    CounterAdd {
        /// Value before.
        previous: u64,
        /// Value after.
        value: u64,
    },
    /// A counter set.
    CounterSet {
        /// Value before (0 when it did not exist).
        previous: u64,
    },
    /// A counter delete.
    CounterDelete {
        /// Whether the counter existed.
        deleted: bool,
    },
    /// Node registration recorded.
    Registered,
    /// A ZooKeeper request's writes (`Command::Zk`): one result per op.
    Zk {
        /// Per-op results (all `Error` when the request failed: see `znodes`).
        results: Vec<super::zk_result::ZkOpResult>,
    },
    /// A batch of ZooKeeper requests (`Command::ZkBatch`): per request, the revision after it
    /// and its per-op results.
    ZkBatch {
        /// One entry per request, in order.
        results: Vec<(u64, Vec<super::zk_result::ZkOpResult>)>,
    },
    /// The ZooKeeper password secret in force.
    ZkSecret {
        /// The secret.
        secret: [u64; 2],
    },
    /// Settings command applied: the settings in force after it.
    Settings {
        /// History revisions retained.
        history_revisions: u64,
    },
    /// An auth change applied (or a bootstrap / secret that was already set: a no-op).
    Auth {
        /// The auth revision after it.
        auth_revision: u64,
    },
}

/// The result of one operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpResult {
    /// A range read.
    Range(RangeResult),
    /// A put.
    Put {
        /// Previous key-value if requested.
        prev: Option<KeyValue>,
    },
    /// A delete.
    DeleteRange {
        /// Keys deleted.
        deleted: u64,
        /// Deleted key-values if requested.
        prev_kvs: Vec<KeyValue>,
    },
    /// A counter addition.
    CounterAdd {
        /// Value before.
        previous: u64,
        /// Value after.
        value: u64,
    },
    /// A counter read.
    CounterGet {
        /// Value (0 when missing).
        value: u64,
        /// Whether it exists.
        exists: bool,
        /// Revision of its last change.
        mod_revision: u64,
    },
    /// A counter set.
    CounterSet {
        /// Value before.
        previous: u64,
    },
    /// A counter delete.
    CounterDelete {
        /// Whether it existed.
        deleted: bool,
    },
}

/// Why a fenced transaction was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencingFailure {
    /// The lease.
    pub lease: String,
    /// Token the transaction presented.
    pub presented_token: u64,
    /// Current token (0 = not held).
    pub current_token: u64,
}

/// The result of a range read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeResult {
    /// Selected key-values (empty with count_only).
    pub kvs: Vec<KeyValue>,
    /// Whether the limit left keys out.
    pub more: bool,
    /// Number of selected keys, ignoring the limit.
    pub count: u64,
}

/// A deterministic business failure: nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// The addition would pass u64::MAX.
    #[error("counter {name:?} would overflow: {value} + {delta} exceeds u64::MAX")]
    CounterOverflow {
        /// Counter.
        name: String,
        /// Its value.
        value: u64,
        /// The delta.
        delta: u64,
    },
    /// The session does not exist (never opened, expired or closed).
    #[error("session {session_id} does not exist (expired or closed)")]
    SessionNotFound {
        /// Session.
        session_id: u64,
    },
    /// Releasing a lease with a token that is not the current one.
    #[error("lease {name:?} is not held with token {token} (current token: {current}, 0 = not held)")]
    LeaseNotHeld {
        /// Lease.
        name: String,
        /// Token presented.
        token: u64,
        /// Current token.
        current: u64,
    },
    /// A retry whose original result has been forgotten; its outcome is unknown.
    #[error("retry of request {seq} from client {client_id:#x} is too old: its result was forgotten, so its outcome is unknown (it was not applied again)")]
    RetryTooOld {
        /// Client id.
        client_id: u64,
        /// Sequence number.
        seq: u64,
    },
    /// A user / role administration request refused (exists already, or does not exist).
    #[error("{message}")]
    Auth {
        /// Which refusal.
        refusal: AuthRefusal,
        /// For people: names the user or role.
        message: String,
    },
    /// Under `--auth`: the caller lost what the write needs between the check of the member
    /// that received it and its apply (`Command::AsUser`). Nothing changed.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// For people: the user and what it lacks.
        message: String,
    },
}

/// Why an auth change was refused (a value every replica agrees on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRefusal {
    /// The user or role exists already.
    Exists,
    /// No such user, role or permission.
    NotFound,
}
