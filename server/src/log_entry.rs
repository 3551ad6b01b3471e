//! The Raft log entry format: what the leader proposes and every replica applies.
//!
//! This is deliberately separate from the public gRPC API (`conclave.v1`): the service layer
//! validates a request and converts it into a [`Command`]; the log stores only these types.
//! The format is versioned from day one: [`LogPayload`] is an enum whose variants are never
//! reordered or changed; a new format is a new variant, and every replica keeps decoding the old.
//! Entries are encoded with bincode 2 (standard config) inside openraft's entry.

use serde::{Deserialize, Serialize};

pub mod auth;
pub mod bytes;
pub mod format;
pub mod zk;

/// One Raft log entry's application payload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum LogPayload {
    /// Format 1: a batch of proposals stamped with the leader's clock.
    V1(BatchV1),
}

/// A batch of client proposals, applied in order. Batching many proposals into one entry is how
/// Conclave amortizes one fsync over many writes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchV1 {
    /// Milliseconds since the Unix epoch on the proposing leader's clock. The only source of
    /// time apply may use (sessions), so every replica sees the same time.
    pub leader_time_ms: u64,
    /// The proposals, applied in order, each at its own revision (if it changes anything).
    pub proposals: Vec<Proposal>,
}

/// One client write.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Proposal {
    /// Exactly-once identity; `None` for internal commands that need no deduplication.
    pub request_id: Option<RequestId>,
    /// What to do.
    pub command: Command,
}

/// Identifies a client write for exactly-once retries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestId {
    /// Random id the client picked at start-up.
    pub client_id: u64,
    /// The client's sequence number for this write (retries reuse it).
    pub seq: u64,
    /// Every seq below this has been answered to the client; results may be forgotten.
    pub first_incomplete: u64,
}

/// Selects keys: one key, a prefix, or a half-open interval `[key, end)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum KeySelector {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes (empty = every key).
    Prefix(Vec<u8>),
    /// Keys `k` with `start <= k < end`.
    Interval {
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
}

/// A read inside a transaction (or served directly by the read path).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RangeSpec {
    /// Which keys.
    pub selector: KeySelector,
    /// Maximum number of keys returned; 0 = unlimited.
    pub limit: u64,
    /// Omit values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
}

/// A state-machine command.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Set a key's value.
    Put {
        /// Key (non-empty).
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "bytes")]
        value: Vec<u8>,
        /// Return the previous key-value.
        prev_kv: bool,
        /// Session the key is bound to (ephemeral); 0 = none.
        session: u64,
    },
    /// Delete the selected keys.
    DeleteRange {
        /// Which keys.
        selector: KeySelector,
        /// Return the deleted key-values.
        prev_kv: bool,
    },
    /// Compare, then run one of two operation lists atomically at one revision.
    Txn {
        /// All must hold for `success` to run.
        compares: Vec<Compare>,
        /// Run when every compare holds.
        success: Vec<TxnOp>,
        /// Run otherwise.
        failure: Vec<TxnOp>,
    },
    /// Add to a counter, returning the previous value.
    CounterAdd {
        /// Counter name.
        name: String,
        /// Amount to add.
        delta: u64,
    },
    /// Set a counter.
    CounterSet {
        /// Counter name.
        name: String,
        /// New value.
        value: u64,
    },
    /// Delete a counter.
    CounterDelete {
        /// Counter name.
        name: String,
    },
    /// Open a session.
    SessionOpen {
        /// Time to live, milliseconds (validated by the service layer).
        ttl_ms: u64,
    },
    /// Close a session at a client's request: delete its keys, release its leases.
    SessionClose {
        /// Session.
        session_id: u64,
    },
    /// Expire a session (proposed by the leader when its deadline passed); like close, but a
    /// no-op when the session is already gone.
    SessionExpire {
        /// Session.
        session_id: u64,
    },
    /// Grant a lease to a session if free.
    LeaseAcquire {
        /// Lease name.
        name: String,
        /// Acquiring session.
        session_id: u64,
        /// Holder description.
        info: Vec<u8>,
    },
    /// Release a lease held with `token`.
    LeaseRelease {
        /// Lease name.
        name: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// A node announces the address it serves clients on (membership metadata).
    RegisterNode {
        /// The node's id.
        node_id: u64,
        /// Its client (gRPC API) address.
        client_addr: String,
    },
    // New variants go last: bincode numbers variants by position (log format V1).
    /// A waiting acquire's re-proposal after a release (`service/lease.rs`): acquires like
    /// `LeaseAcquire`, but only while client `original.client_id` has applied no write newer
    /// than `original.seq` (it has not given up and moved on); otherwise not granted.
    LeaseAcquireRetry {
        /// Lease name.
        name: String,
        /// Acquiring session.
        session_id: u64,
        /// Holder description.
        info: Vec<u8>,
        /// The request id of the waiting acquire it continues.
        original: RequestId,
    },
    /// Sets the cluster-wide settings of the state machine (replicated, so every replica
    /// applies with the same values). A node must understand this variant before a leader
    /// proposes it: upgrade every node before the first leader of the new version is elected.
    SetSettings {
        /// Revisions of history retained (0 is taken as 1).
        history_revisions: u64,
        /// Bootstrap proposal: applies only while the cluster has no settings yet (the first
        /// leader proposes its flag this way; a racing second proposal changes nothing).
        bootstrap: bool,
    },
    /// ZooKeeper-protocol writes of one request of session `session` (`crate::zk`): a single
    /// operation, or a `multi` applied all-or-nothing at one revision.
    Zk {
        /// The ZooKeeper session (= Conclave session) sending it; must be live.
        session: u64,
        /// The sending connection's identities, checked against the ACLs.
        ids: Vec<zk::ZkId>,
        /// The operations, in order.
        ops: Vec<zk::ZkOp>,
    },
    /// Sets the cluster's ZooKeeper password secret, from which every member derives a
    /// session's password. Proposed with a random value by the member that first needs it;
    /// applies only while unset (the first proposal wins).
    ZkSecret {
        /// The secret.
        secret: [u64; 2],
    },
    /// Consecutive ZooKeeper write requests one connection pipelined, applied in order, each
    /// exactly like a `Zk` command (its own revision when it changes anything, its own
    /// all-or-nothing outcome): one log round trip for many requests, same results.
    ZkBatch {
        /// The session sending them; must be live.
        session: u64,
        /// The sending connection's identities.
        ids: Vec<zk::ZkId>,
        /// The requests' ops, in arrival order.
        requests: Vec<Vec<zk::ZkOp>>,
    },
    /// ZooKeeper nodes the leader found due for deletion from its clock (TTL nodes past their
    /// TTL, empty containers; `zk::reaper`): each is deleted only if still as the leader saw it
    /// (same mzxid and cversion, no children). Time never enters apply.
    ZkReap {
        /// The nodes.
        targets: Vec<zk::ZkReapTarget>,
    },
    /// A member announces the address it serves the ZooKeeper protocol on (`--zk-addr`), for
    /// `/zookeeper/config`; empty when it serves none.
    RegisterZkAddr {
        /// The member's id.
        node_id: u64,
        /// Its ZooKeeper client address, `host:port`.
        zk_addr: String,
    },
    /// A ZooKeeper client re-attached session `session_id` on a connection (any member) that
    /// picked the random `owner` token: from then on, only that connection serves the session;
    /// an older one answers SESSIONMOVED and closes (ZooKeeper's session-moved rule). A no-op
    /// when the session is gone.
    ZkAttach {
        /// The session.
        session_id: u64,
        /// The new owner's token (non-zero; 0 stands for the connection that opened it).
        owner: u64,
    },
    /// A change of users, roles, permissions or the token secret (`--auth`), prepared (hashed,
    /// random secret drawn) before proposing; apply only stores.
    Auth(auth::AuthCommand),
    /// Open a session owned by `owner`: under `--auth`, the session service proposes this for
    /// an authenticated caller (plain `SessionOpen` otherwise). Only the owner or root may
    /// then keep the session alive, close it, read it or bind keys and leases to it
    /// (`auth::Authorizer::require_session_owner`); apply only records the owner. Log format
    /// level 1: proposed as `SessionOpen` while a member of an older build remains ([`format`](mod@format)).
    SessionOpenOwned {
        /// Time to live, milliseconds (validated by the service layer).
        ttl_ms: u64,
        /// The user who opened it.
        owner: String,
    },
    /// `command`, sent by authenticated user `user` (not root) under `--auth`. The member that
    /// received the request checked it first; apply checks again, on the state at this index,
    /// that `user` still holds every permission `command` needs and owns every session it names
    /// (`state_machine::access::refusal`), so a permission revoked, a role taken away, a user
    /// deleted or a session opened by another user before this entry is honoured wherever the
    /// request came in. Refused: `CommandError::PermissionDenied`, nothing changed. Log format
    /// level 1: proposed as `command` alone while a member of an older build remains ([`format`](mod@format)).
    AsUser {
        /// The caller.
        user: String,
        /// What it asked for (never another `AsUser`).
        command: UserCommand,
    },
}

/// The command inside [`Command::AsUser`]. Decoding refuses another `AsUser` inside it, so a
/// crafted entry or peer message cannot nest commands deeply enough to exhaust the stack (the
/// only recursive place in the format).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UserCommand(pub Box<Command>);

impl std::ops::Deref for UserCommand {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        thread_local!(static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if INSIDE.with(|inside| inside.replace(true)) {
            return Err(serde::de::Error::custom("a command sent as a user holds another one sent as a user"));
        }
        let inner = Box::<Command>::deserialize(d);
        INSIDE.with(|inside| inside.set(false));
        inner.map(UserCommand)
    }
}

/// One operation inside a transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum TxnOp {
    /// Read keys.
    Range(RangeSpec),
    /// Put a key.
    Put {
        /// Key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "bytes")]
        value: Vec<u8>,
        /// Return the previous key-value.
        prev_kv: bool,
        /// Session the key is bound to; 0 = none.
        session: u64,
    },
    /// Delete keys.
    DeleteRange {
        /// Which keys.
        selector: KeySelector,
        /// Return deleted key-values.
        prev_kv: bool,
    },
    /// Add to a counter.
    CounterAdd {
        /// Counter.
        name: String,
        /// Amount.
        delta: u64,
    },
    /// Read a counter.
    CounterGet {
        /// Counter.
        name: String,
    },
    /// Set a counter.
    CounterSet {
        /// Counter.
        name: String,
        /// Value.
        value: u64,
    },
    /// Delete a counter.
    CounterDelete {
        /// Counter.
        name: String,
    },
}

/// Comparison operator.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// Which field of a key a compare looks at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum KeyField {
    /// The value bytes (a missing key never compares true, whatever the operator).
    Value(#[serde(with = "bytes")] Vec<u8>),
    /// Version (0 when missing).
    Version(u64),
    /// Create revision (0 when missing).
    CreateRevision(u64),
    /// Mod revision (0 when missing).
    ModRevision(u64),
    /// Existence; only `Equal` and `NotEqual` are meaningful.
    Exists(bool),
}

/// One transaction guard.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Compare {
    /// Compare a key's field.
    Key {
        /// The key.
        key: Vec<u8>,
        /// Operator.
        op: CompareOp,
        /// Field and operand.
        field: KeyField,
    },
    /// Compare a counter's value (a missing counter is 0).
    Counter {
        /// Counter name.
        name: String,
        /// Operator.
        op: CompareOp,
        /// Operand.
        value: u64,
    },
    /// The number of live keys under a prefix.
    Children {
        /// The prefix (non-empty).
        prefix: Vec<u8>,
        /// Operator.
        op: CompareOp,
        /// Operand.
        count: u64,
    },
    /// Fencing: the lease is held with exactly this token. Failing it rejects the transaction.
    Lease {
        /// Lease name.
        name: String,
        /// Expected token.
        token: u64,
    },
}

/// Encodes a payload for the log (bincode 2, standard config).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

/// Encodes like [`encode`], into a writer (the same bytes, without holding them all).
///
/// # Errors
/// When a value cannot be encoded or the writer fails.
pub fn encode_into<T: Serialize>(
    value: &T,
    mut out: &mut dyn std::io::Write,
) -> Result<usize, bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
}

/// Decodes a payload written by [`encode`], from any source (peer messages, log records,
/// snapshot files): never trusts a length prefix beyond what its input could hold.
///
/// bincode allocates a byte string or a `String` at the length its prefix claims before reading
/// it; unbounded, a 15-byte peer message claiming 4 EiB aborted the process. Decoding now runs
/// with a bincode limit on claimed bytes. bincode claims in-memory sizes (a one-byte varint
/// `u64` claims 8 bytes, a `u128` 16), so a well-formed payload claims at most 16x its length:
/// the limit is the smallest of 1 MiB, 4 MiB, 16 MiB, ... (powers of 4) up to 1 TiB that is at
/// least 16x the input's length. A lying prefix fails with `LimitExceeded` (or `UnexpectedEnd`)
/// after at most 64x the input (1 MiB for small inputs) was reserved. Sequences of other types
/// go through serde, which preallocates at most 1 MiB per sequence.
///
/// # Errors
/// A [`bincode::error::DecodeError`] on malformed input or an over-long length prefix.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let claimable = (bytes.len() as u64).saturating_mul(16);
    macro_rules! with_limit {
        ($($limit:expr),*) => {
            $(if claimable <= $limit {
                let config = bincode::config::standard().with_limit::<{ $limit as usize }>();
                return bincode::serde::decode_from_slice(bytes, config).map(|(v, _)| v);
            })*
        };
    }
    with_limit!(
        1u64 << 20,
        1u64 << 22,
        1u64 << 24,
        1u64 << 26,
        1u64 << 28,
        1u64 << 30,
        1u64 << 32,
        1u64 << 34,
        1u64 << 36,
        1u64 << 40
    );
    Err(bincode::error::DecodeError::LimitExceeded)
}

/// The length [`encode`] would produce, without encoding into memory.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, bincode::error::EncodeError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode::config::standard())?;
    Ok(size.bytes_written)
}

#[cfg(test)]
mod tests;
