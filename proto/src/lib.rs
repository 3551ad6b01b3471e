//! Generated gRPC code for Conclave.
//!
//! - [`v1`]: the public API (`conclave.v1`): key-value with transactions, counters and cluster status.
//!   Stable: fields are only ever added.
//! - [`internal::v1`]: the peer protocol between `conclave` nodes (Raft messages). Not for clients.
#![allow(missing_docs, clippy::all)]

pub mod errors;
pub mod zookeeper;

/// The public API, package `conclave.v1`.
pub mod v1 {
    tonic::include_proto!("conclave.v1");
}

/// Protocols between Conclave nodes.
pub mod internal {
    /// The peer protocol, package `conclave.internal.v1`.
    pub mod v1 {
        tonic::include_proto!("conclave.internal.v1");
    }
}

/// gRPC metadata key carrying the current leader's client address on `Unavailable` replies.
pub const LEADER_HINT_METADATA: &str = "x-conclave-leader";
/// gRPC metadata key carrying the current leader's node id on `Unavailable` replies.
pub const LEADER_ID_METADATA: &str = "x-conclave-leader-id";
/// gRPC metadata key a follower sets when it forwards a request to the leader; a node that
/// receives a forwarded request and is not the leader answers with a hint instead of forwarding again.
pub const FORWARDED_METADATA: &str = "x-conclave-forwarded";

/// Metadata key of an authentication token (`Auth.Authenticate`), sent as is. The standard
/// `authorization: Bearer <token>` is accepted too.
pub const TOKEN_METADATA: &str = "x-conclave-token";
/// The standard metadata key for credentials; Conclave reads `Bearer <token>` from it.
pub const AUTHORIZATION_METADATA: &str = "authorization";
