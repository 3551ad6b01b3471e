//! Outgoing Raft traffic: openraft's `RaftNetworkFactory` over the internal gRPC peer protocol.
//!
//! Calls travel on the peer port's framed wire ([`wire`], [`PeerChannel`]) once the peer has
//! advertised it, else over gRPC.
//!
//! One cached channel per peer (reconnecting by itself): Conclave's own [`GrpcChannel`], which
//! sends a unary request's HEADERS and DATA in one write from the caller's task. tonic's
//! `Channel` handed every message to two tasks and wrote HEADERS and DATA apart, so the peer
//! could wake twice per message; every Raft round and every forwarded write crosses this
//! channel at least twice (docs/design.md, "Where the time goes"). Outgoing connections bind their
//! local address to this node's own IP, so per-address network faults (iptables in a private
//! namespace) can target a node's traffic. Transport failures map to `Unreachable`, so openraft
//! backs off instead of spinning. AppendEntries with entries are bounded by bytes and run with a
//! timeout sized to them, beyond openraft's heartbeat-long call (see `network/append.rs`).

mod append;
mod peer_channel;
pub mod wire;
mod wire_channel;

pub use peer_channel::{PeerChannel, Route};
pub(crate) use wire_channel::write_loop as wire_write_loop;
pub use wire_channel::{KeepAlive, WireChannel};

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_client::grpc_channel::{ChannelOptions, GrpcChannel};
use conclave_proto::internal::v1::RaftMessage;
use conclave_tls::ClientTls;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cluster_id::{self, ClusterId};
use super::peer_levels::{self, PeerLevels};
use super::read_lease::ReadLease;
use super::{NodeId, PeerNode, TypeConfig};
use crate::log_entry::{decode, encode};
use crate::storage::durability::Durability;

/// Wire format tag of [`RaftMessage::format`].
pub const FORMAT_BINCODE: u32 = 1;
/// Largest peer message (a batch of log entries or a snapshot chunk).
pub const MAX_PEER_MESSAGE: usize = 256 * 1024 * 1024;

/// Creates peer clients; caches one channel per peer address.
#[derive(Clone)]
pub struct PeerNetwork {
    /// This member's id (the sender of openraft's messages).
    node_id: NodeId,
    local_ip: Option<IpAddr>,
    cluster_id: ClusterId,
    /// Mutual TLS to the other members (None: plain TCP).
    tls: Option<ClientTls>,
    channels: Arc<Mutex<HashMap<String, PeerChannel>>>,
    /// Use the framed peer wire toward peers that advertise it (plain TCP links only).
    wire: bool,
    /// This member's durable log mark: an AppendEntries waits until its `leader_commit` is
    /// durable here (see `storage::durability`).
    durable: Option<Arc<Durability>>,
    lease: Option<Arc<ReadLease>>,
    /// The log format level each member told (see `peer_levels`).
    levels: Arc<PeerLevels>,
}

impl PeerNetwork {
    /// A factory for member `node_id` whose connections originate from `local_ip`, over TLS
    /// when `tls` is set, and whose requests carry `cluster_id` (once known).
    pub fn new(node_id: NodeId, local_ip: Option<IpAddr>, cluster_id: ClusterId, tls: Option<ClientTls>) -> Self {
        Self {
            node_id,
            local_ip,
            cluster_id,
            tls,
            channels: Arc::default(),
            wire: false,
            durable: None,
            lease: None,
            levels: Arc::default(),
        }
    }

    /// The log format level each member told (see `peer_levels`).
    pub fn levels(&self) -> &Arc<PeerLevels> {
        &self.levels
    }

    /// Sends a commit index to followers only once this member's log holds it durably.
    #[must_use]
    pub fn with_durability(mut self, durable: Arc<Durability>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// Records the voters' answers to this leader's AppendEntries in `lease` (see `read_lease`).
    #[must_use]
    pub fn with_read_lease(mut self, lease: Arc<ReadLease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// This member's cluster id, once known.
    pub fn cluster_id(&self) -> Option<u64> {
        self.cluster_id.get()
    }

    /// Uses the framed peer wire toward peers that advertise it (`wire::advertise`), unless the
    /// peer links use TLS (they then stay on gRPC).
    #[must_use]
    pub fn with_wire(mut self, on: bool) -> Self {
        self.wire = on && self.tls.is_none();
        self
    }

    /// The cached channel to `addr` (created lazily, reconnecting by itself).
    pub(crate) fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let mut channels = self.channels.lock().map_err(|e| e.to_string())?;
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let options = ChannelOptions {
            connect_timeout: Duration::from_millis(500),
            local_address: self.local_ip,
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(3),
            tls: self.tls.clone(),
            token: None,
        };
        let grpc = GrpcChannel::new(addr, options).map_err(|e| format!("bad peer address: {e}"))?;
        let wire = self.wire.then(|| WireChannel::new(addr, self.local_ip, KeepAlive::default()));
        let channel = PeerChannel::new(grpc, wire);
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// A channel to a member's client or peer port `addr` for a one-off call (plain, or TLS
/// verified against `tls`), connected lazily: a failure to connect (the TLS handshake's reason
/// included) is the call's `UNAVAILABLE` status.
///
/// # Errors
/// A malformed address.
pub(crate) fn dial_once(addr: &str, tls: Option<ClientTls>) -> Result<GrpcChannel, String> {
    let options = ChannelOptions { connect_timeout: Duration::from_secs(2), tls, ..ChannelOptions::default() };
    GrpcChannel::new(addr, options)
}

/// The peer protocol's calls besides openraft's own messages (one RPC each; payload and reply
/// types in peer.proto's comments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A write forwarded to the leader: payload `Proposal`, reply `Result<CommandResult, Error>`.
    Propose,
    /// Writes forwarded to the leader together: payload `Vec<ForwardedWrite>`, reply
    /// `Vec<Result<CommandResult, Error>>` (see `forward`).
    ProposeBatch,
    /// A read index from the leader: payload `()`, reply `Result<u64, Error>`.
    ReadIndex,
    /// Session keep-alives or liveness on the leader: payload `SessionTimesRequest`, reply
    /// `Result<Vec<SessionTime>, Error>`.
    Sessions,
    /// A member that lost its data asks the leader to re-add it: payload `RejoinRequest`, reply
    /// `Result<RejoinReply, Error>`.
    Rejoin,
    /// What a member knows of the asker: payload `MemberStateRequest`, reply `MemberStateReply`.
    MemberState,
    /// Pre-vote probe: payload the asker's `NodeId`, reply `ProbeReply`.
    ElectionProbe,
    /// Leadership transfer, leader to target: payload `TimeoutNow`, reply `Result<(), Error>`.
    TimeoutNow,
}

/// Why a [`PeerNetwork::call`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No channel to the address (malformed address).
    #[error("{0}")]
    Unreachable(String),
    /// The RPC failed (the status says how; it may have reached the peer).
    #[error("{}", .0.message())]
    Transport(tonic::Status),
    /// The request or the reply could not be encoded / decoded.
    #[error("peer message encoding: {0}")]
    Codec(String),
}

impl PeerNetwork {
    /// One peer-protocol call to `addr` over the cached channel: `req` encoded, the reply decoded.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        call: Call,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let channel = self.channel(addr).map_err(CallError::Unreachable)?;
        let payload = encode(req).map_err(|e| CallError::Codec(e.to_string()))?;
        let msg = request(RaftMessage { format: FORMAT_BINCODE, payload }, self.cluster_id.get());
        let route = match call {
            Call::Propose => Route::Wire(wire::Method::Propose),
            Call::ProposeBatch => Route::Wire(wire::Method::ProposeBatch),
            Call::ReadIndex => Route::Wire(wire::Method::ReadIndex),
            Call::Sessions => Route::Wire(wire::Method::Sessions),
            Call::ElectionProbe => Route::Wire(wire::Method::ElectionProbe),
            Call::TimeoutNow => Route::Wire(wire::Method::TimeoutNow),
            Call::Rejoin => Route::Rejoin,
            Call::MemberState => Route::MemberState,
        };
        let reply = channel.unary(route, msg).await.map_err(CallError::Transport)?;
        decode(&reply.into_inner().payload).map_err(|e| CallError::Codec(e.to_string()))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Self::Network {
        PeerClient {
            from: self.node_id,
            target,
            channel: self.channel(&node.peer_addr),
            cluster_id: self.cluster_id.clone(),
            in_flight: None,
            durable: self.durable.clone(),
            lease: self.lease.clone(),
            levels: self.levels.clone(),
        }
    }
}

/// A connection to one peer (one per openraft replication stream or vote).
pub struct PeerClient {
    from: NodeId,
    target: NodeId,
    channel: Result<PeerChannel, String>,
    cluster_id: ClusterId,
    /// The AppendEntries with entries in flight to this peer, if any.
    in_flight: Option<append::InFlight>,
    durable: Option<Arc<Durability>>,
    lease: Option<Arc<ReadLease>>,
    levels: Arc<PeerLevels>,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(request) = self.in_flight.take() {
            request.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr<E> = RPCError<NodeId, PeerNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, kind: Kind, req: &Req, option: &RPCOption) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned,
    {
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        exchange(self.peer(), kind, payload, option.hard_ttl()).await
    }

    /// What one exchange with this peer needs.
    fn peer(&self) -> Peer {
        Peer {
            channel: self.channel.clone(),
            from: self.from,
            target: self.target,
            cluster_id: self.cluster_id.get(),
            levels: self.levels.clone(),
        }
    }
}

/// Sends one encoded request to `target` and decodes its reply, within `timeout`.
///
/// # Errors
/// `Unreachable` on a transport failure or timeout, `Network` on other statuses or a reply that
/// does not decode, `RemoteError` with the peer's own Raft error.
async fn exchange<Resp, E>(to: Peer, kind: Kind, payload: Vec<u8>, timeout: Duration) -> Result<Resp, RpcErr<E>>
where
    Resp: DeserializeOwned,
    E: StdError + DeserializeOwned,
{
    let Peer { channel, from, target, cluster_id, levels } = to;
    let channel = channel.map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
    let msg = request(RaftMessage { format: FORMAT_BINCODE, payload }, cluster_id);
    let route = match kind {
        Kind::Append => Route::Wire(wire::Method::AppendEntries),
        Kind::Vote => Route::Wire(wire::Method::Vote),
        Kind::Snapshot => Route::Snapshot,
    };
    let fut = channel.unary(route, msg);
    let started = std::time::Instant::now();
    let reply = match tokio::time::timeout(timeout, fut).await {
        // A slow answer is a timeout, not an unreachable peer: openraft 0.9 stops replicating
        // to an Unreachable peer for 500 ms (its backoff), longer than the election timeout,
        // so on an overloaded host every heartbeat over 50 ms turned a slow follower into a
        // leader change, over and over. A timeout is retried at the next heartbeat.
        Err(_) => {
            let action = match kind {
                Kind::Append => RPCTypes::AppendEntries,
                Kind::Vote => RPCTypes::Vote,
                Kind::Snapshot => RPCTypes::InstallSnapshot,
            };
            return Err(RPCError::Timeout(Timeout { action, id: from, target, timeout }));
        }
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown => RPCError::Unreachable(Unreachable::new(&status)),
                _ => RPCError::Network(NetworkError::new(&status)),
            })
        }
        Ok(Ok(reply)) => {
            if matches!(kind, Kind::Append) {
                crate::ops::metrics::observe_peer_rtt(target, started.elapsed());
                levels.heard(target, peer_levels::told(reply.metadata()));
            }
            reply.into_inner()
        }
    };
    let result: Result<Resp, RaftError<NodeId, E>> =
        decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
}

/// Where one openraft message goes.
struct Peer {
    channel: Result<PeerChannel, String>,
    from: NodeId,
    target: NodeId,
    cluster_id: Option<u64>,
    /// Where the target's log format level goes (from its AppendEntries replies).
    levels: Arc<PeerLevels>,
}

/// A peer request carrying this member's cluster id (see `cluster_id`) and log format level
/// (see `peer_levels`).
fn request(msg: RaftMessage, cluster_id: Option<u64>) -> tonic::Request<RaftMessage> {
    let mut req = tonic::Request::new(msg);
    peer_levels::tell(req.metadata_mut());
    if let Some(id) = cluster_id {
        if let Ok(v) = cluster_id::format(id).parse() {
            req.metadata_mut().insert(cluster_id::METADATA, v);
        }
    }
    req
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        // Taken before anything is sent: the voter's lease starts when it handles the request,
        // later than this.
        let (sent, vote) = (std::time::Instant::now(), rpc.vote);
        let reply = self.send_append(rpc, &option).await;
        if let (Some(lease), Ok(answer)) = (&self.lease, &reply) {
            lease.answered(self.target, &vote, sent, answer);
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}

impl PeerClient {
    async fn send_append(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        if let (Some(durable), Some(commit)) = (&self.durable, rpc.leader_commit) {
            // A pipelined leader may count an entry committed before its own fsync of it ends:
            // no follower may apply it before then (`storage::durability`). Rarely waits: by
            // the time a follower's acknowledgement commits an entry, the leader's fsync that
            // started when the entry was sent has usually ended.
            durable.wait(commit.index).await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        }
        if rpc.entries.is_empty() {
            // A heartbeat: small, answered at once; openraft's timeout is the right one.
            return self.call(Kind::Append, &rpc, option).await;
        }
        self.append_bounded(rpc, option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that accepts connections and never answers (an overloaded or stopped process
    /// whose socket is still open) times out as `Timeout`, which openraft retries at the next
    /// heartbeat, never as `Unreachable`, which makes it stop replicating for 500 ms.
    #[tokio::test]
    async fn a_silent_peer_times_out_without_being_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let channel = GrpcChannel::new(&addr.to_string(), ChannelOptions::default()).expect("channel");
        let to = Peer {
            channel: Ok(PeerChannel::new(channel, None)),
            from: 1,
            target: 2,
            cluster_id: None,
            levels: Arc::default(),
        };
        let result: Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> =
            exchange(to, Kind::Append, Vec::new(), Duration::from_millis(50)).await;
        match result {
            Err(RPCError::Timeout(t)) => assert_eq!((t.id, t.target, t.action), (1, 2, RPCTypes::AppendEntries)),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
