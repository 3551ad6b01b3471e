//! openraft's type configuration and the aliases every layer uses. A leaf module: it imports
//! only the log entry format and the state machine's result type, so storage and Raft glue can
//! both depend on it without depending on each other.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::log_entry::LogPayload;
use crate::state_machine::response::CommandResult;

/// A member's addresses, stored in Raft membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Address the node's peer (Raft) service listens on.
    pub peer_addr: String,
}

/// The results of one applied log entry: one per proposal in its batch (empty for
/// membership and blank entries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse(pub Vec<CommandResult>);

openraft::declare_raft_types!(
    /// Conclave's openraft type configuration.
    pub TypeConfig:
        D = LogPayload,
        R = BatchResponse,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Node id.
pub type NodeId = u64;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// Storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
/// Metrics.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, PeerNode>;
