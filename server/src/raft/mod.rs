//! Raft glue: openraft type configuration, the peer network (client and server side).
//!
//! openraft is pinned at `=0.9.25` (see docs/design.md for why 0.9 and not 0.10).

pub mod bootstrap_settings;
pub mod cluster_id;
pub mod leader_presence;
pub mod network;
pub mod prompt_election;
pub mod proposer;
pub mod read_index;
pub mod router;
pub mod transfer;
pub mod voting_gate;

pub use crate::types::{
    BatchResponse, LogId, NodeId, PeerNode, Raft, RaftMetrics, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
