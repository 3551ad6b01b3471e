//! One peer address's channel: the framed wire ([`super::wire`]) for the peer protocol's
//! frequent small calls once the peer has advertised it, gRPC (Conclave's HTTP/2 channel) for
//! the rest and until then.
//!
//! Snapshots, rejoin and member-state calls always go over gRPC: a snapshot chunk can be large,
//! and on the wire it would hold up the heartbeats queued behind it on the same connection
//! (HTTP/2 interleaves them).

use conclave_client::grpc_channel::GrpcChannel;
use conclave_proto::internal::v1::raft_peer_client::RaftPeerClient;
use conclave_proto::internal::v1::RaftMessage;
use tonic::Status;

use super::wire::{self, Method};
use super::wire_channel::WireChannel;
use super::MAX_PEER_MESSAGE;

/// Which call, and how it may travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A call the framed wire carries.
    Wire(Method),
    /// `InstallSnapshot` (gRPC only).
    Snapshot,
    /// `Rejoin` (gRPC only).
    Rejoin,
    /// `MemberState` (gRPC only).
    MemberState,
}

/// The channels to one peer address. Cheap to clone.
#[derive(Clone)]
pub struct PeerChannel {
    grpc: GrpcChannel,
    /// `None`: the framed wire is off for this peer (peer TLS, or `--peer-wire false`).
    wire: Option<WireChannel>,
}

impl PeerChannel {
    /// Channels over `grpc`, and over `wire` once the peer advertises it.
    pub fn new(grpc: GrpcChannel, wire: Option<WireChannel>) -> Self {
        Self { grpc, wire }
    }

    /// One call; the answer (or status) is the same whichever way it travelled.
    ///
    /// # Errors
    /// The peer's status, or the transport's (`UNAVAILABLE`: see `GrpcChannel` and
    /// [`WireChannel::unary`] for which outcome each failure carries).
    pub async fn unary(
        &self,
        route: Route,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        if let (Route::Wire(method), Some(wire)) = (route, self.wire.as_ref().filter(|w| w.supported())) {
            crate::ops::metrics::peer_wire_call();
            return wire.unary(method, request).await;
        }
        let mut client = RaftPeerClient::new(self.grpc.clone())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let reply = match route {
            Route::Wire(Method::AppendEntries) => client.append_entries(request).await,
            Route::Wire(Method::Vote) => client.vote(request).await,
            Route::Wire(Method::Propose) => client.propose(request).await,
            Route::Wire(Method::ProposeBatch) => client.propose_batch(request).await,
            Route::Wire(Method::ReadIndex) => client.read_index(request).await,
            Route::Wire(Method::Sessions) => client.sessions(request).await,
            Route::Wire(Method::ElectionProbe) => client.election_probe(request).await,
            Route::Wire(Method::TimeoutNow) => client.timeout_now(request).await,
            Route::Snapshot => client.install_snapshot(request).await,
            Route::Rejoin => client.rejoin(request).await,
            Route::MemberState => client.member_state(request).await,
        };
        if let (Some(wire), Ok(r)) = (&self.wire, &reply) {
            if !wire.supported() && wire::advertised(r.metadata()) {
                wire.mark_supported();
            }
        }
        reply
    }
}
