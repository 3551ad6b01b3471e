//! Raft glue: openraft type configuration, the peer network (client and server side).
//!
//! openraft is pinned at `=0.9.25` (see docs/design.md for why 0.9 and not 0.10).

pub mod bootstrap_settings;
pub mod cluster_id;
pub mod forward;
pub mod leader_presence;
pub mod network;
pub mod peer_levels;
pub mod prompt_election;
pub mod proposer;
pub mod read_index;
pub mod read_lease;
pub mod router;
pub mod snapshots;
pub mod transfer;
pub mod voting_gate;

/// The leader's match index for member `id` (None: this node does not lead, or has nothing
/// matched there yet).
pub fn match_index(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map(|l| l.index)
}

pub use crate::types::{
    BatchResponse, LogId, NodeId, PeerNode, Raft, RaftMetrics, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
