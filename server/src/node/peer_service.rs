//! Incoming peer traffic: the `RaftPeer` gRPC service. Raft messages go to openraft (its
//! `Result` travels back intact); forwarded client calls go to this node's [`Node`] facade and
//! answer with the server's [`Error`] (serializable), so a follower relays the leader's exact
//! error. Every payload is a named type (see peer.proto for which).

use std::sync::Arc;

use conclave_proto::internal::v1::raft_peer_server::RaftPeer;
use conclave_proto::internal::v1::RaftMessage;
use openraft::raft::AppendEntriesRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::rejoin::{self, MemberStateRequest, RejoinReply, RejoinRequest};
use super::{Node, SessionTimesRequest};
use crate::error::{Error, UnavailableReason};
use crate::log_entry::{decode, encode, Proposal};
use crate::raft::cluster_id::{self, ClusterId};
use crate::raft::forward::{BatchReply, ForwardedWrite};
use crate::raft::network::FORMAT_BINCODE;
use crate::raft::peer_levels;
use crate::raft::prompt_election::{ProbeReply, PromptElection};
use crate::raft::transfer::{self, TimeoutNow};
use crate::raft::voting_gate::VotingGate;
use crate::raft::{Raft, TypeConfig};
use crate::sessions::SessionTime;
use crate::state_machine::response::CommandResult;

/// Serves the peer protocol for one node.
pub struct PeerService {
    raft: Raft,
    node: Arc<Node>,
    election: Arc<PromptElection>,
    gate: Arc<VotingGate>,
    cluster_id: ClusterId,
}

impl PeerService {
    /// A peer service feeding this node's Raft, facade, election driver and voting gate, and
    /// accepting only peers of `cluster_id` (see `raft::cluster_id`).
    pub fn new(node: Arc<Node>, election: Arc<PromptElection>, gate: Arc<VotingGate>, cluster_id: ClusterId) -> Self {
        Self { raft: node.router().raft().clone(), node, election, gate, cluster_id }
    }
}

impl PeerService {
    /// Checks the sender's cluster id, then decodes the payload.
    fn unpack<T: DeserializeOwned>(&self, req: Request<RaftMessage>) -> Result<T, Status> {
        self.check_cluster(&req, false)?;
        decode_msg(req)
    }

    /// Like `unpack`, for the leader's replication messages: a member that has no cluster id yet
    /// (it joined, or rejoins after losing its data) adopts the leader's.
    fn unpack_from_leader<T: DeserializeOwned>(&self, req: Request<RaftMessage>) -> Result<T, Status> {
        self.check_cluster(&req, true)?;
        decode_msg(req)
    }

    fn check_cluster(&self, req: &Request<RaftMessage>, adopt: bool) -> Result<(), Status> {
        let theirs = req.metadata().get(cluster_id::METADATA).and_then(|v| v.to_str().ok()).and_then(cluster_id::parse);
        if self.cluster_id.accepts(theirs) {
            if let (true, None, Some(id)) = (adopt, self.cluster_id.get(), theirs) {
                match self.cluster_id.record(id) {
                    Ok(_) => tracing::info!(cluster_id = %cluster_id::format(id), "adopted the leader's cluster id"),
                    Err(e) => {
                        return Err(Error::Internal(format!("cannot record the cluster id in the data dir: {e}")).into())
                    }
                }
            }
            return Ok(());
        }
        let mine = self.cluster_id.get().map(cluster_id::format).unwrap_or_default();
        let theirs = theirs.map(cluster_id::format).unwrap_or_default();
        tracing::warn!(%mine, %theirs, "refused a peer message from another cluster");
        Err(Error::ClusterIdMismatch(format!(
            "node {} belongs to cluster {mine}, the sender to cluster {theirs}: a member of another cluster \
             (a data dir from another cluster, or --join/--initial-cluster pointing at the wrong members) \
             is not accepted",
            self.node.node_id()
        ))
        .into())
    }
}

fn decode_msg<T: DeserializeOwned>(req: Request<RaftMessage>) -> Result<T, Status> {
    let msg = req.into_inner();
    if msg.format != FORMAT_BINCODE {
        return Err(Error::InvalidArgument(format!("unsupported peer message format {}", msg.format)).into());
    }
    decode(&msg.payload).map_err(|e| Error::InvalidArgument(format!("undecodable peer message: {e}")).into())
}

/// Refuses a forwarded write above the log format level this member tells, as a build of that
/// level refuses one it cannot decode. Never refuses on a member telling its build's own level
/// (every level it decodes); it makes a member started with `peer_levels::TELL_ENV` stand in
/// for an older build faithfully (`it::log_format`).
fn decodable_here(proposal: &Proposal) -> Result<(), Status> {
    let level = crate::log_entry::format::level_of(&proposal.command);
    if level > peer_levels::own() {
        return Err(Error::InvalidArgument(format!(
            "undecodable peer message: a write of log format level {level}, above this member's {}",
            peer_levels::own()
        ))
        .into());
    }
    Ok(())
}

/// A reply carrying this member's log format level (see `peer_levels`) and telling that its
/// peer port serves the framed wire (`raft::network::wire`).
fn pack<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(value).map_err(|e| Status::from(Error::Internal(format!("cannot encode reply: {e}"))))?;
    let mut reply = Response::new(RaftMessage { format: FORMAT_BINCODE, payload });
    peer_levels::tell(reply.metadata_mut());
    crate::raft::network::wire::advertise(reply.metadata_mut());
    Ok(reply)
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    /// Also records the sender's log format level: the leader's, for the writes this member
    /// hands it (`log_entry::format`).
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let level = peer_levels::told(req.metadata());
        let rpc: AppendEntriesRequest<TypeConfig> = self.unpack_from_leader(req)?;
        if let Some(leader) = rpc.vote.leader_id().voted_for() {
            self.node.router().peers().levels().heard(leader, level);
        }
        pack(&self.raft.append_entries(rpc).await)
    }

    /// Refused while this node may not vote (it is rejoining after losing its data).
    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        if !self.gate.open() {
            return Err(Error::unavailable(
                UnavailableReason::Rejoining,
                format!(
                    "node {} does not vote yet: it is starting without Raft state or rejoining after losing its data",
                    self.node.node_id()
                ),
            )
            .into());
        }
        let rpc = self.unpack(req)?;
        // Before openraft sees it: a leader may grant it (see `raft::read_lease`).
        self.node.router().read_lease().revoke();
        pack(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.unpack_from_leader(req)?;
        pack(&self.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let size = req.get_ref().payload.len();
        let proposal: Proposal = self.unpack(req)?;
        decodable_here(&proposal)?;
        let result: Result<CommandResult, Error> = self.node.router().propose_local(proposal, size).await;
        pack(&result)
    }

    /// Each write proposed on its own, all at once (they usually share one log entry).
    async fn propose_batch(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let writes: Vec<ForwardedWrite> = self.unpack(req)?;
        for w in &writes {
            decodable_here(&w.proposal)?;
        }
        let writes = writes.into_iter().map(|w| (w.proposal, w.size as usize)).collect();
        let results: BatchReply = self.node.router().propose_all_local(writes).await;
        pack(&results)
    }

    async fn read_index(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let () = self.unpack(req)?;
        let result: Result<u64, Error> = self.node.router().read_index_local().await;
        pack(&result)
    }

    async fn sessions(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let r: SessionTimesRequest = self.unpack(req)?;
        let result: Result<Vec<SessionTime>, Error> = self.node.session_times_local(&r.ids, r.renew).await;
        pack(&result)
    }

    async fn election_probe(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let _asker: u64 = self.unpack(req)?;
        let reply: ProbeReply = self
            .election
            .probe_reply()
            .await
            .map_err(|m| Status::from(Error::unavailable(UnavailableReason::ShuttingDown, m)))?;
        pack(&reply)
    }

    async fn member_state(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let r: MemberStateRequest = self.unpack(req)?;
        pack(&rejoin::member_state(&self.node, r.asker))
    }

    async fn timeout_now(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let r: TimeoutNow = self.unpack(req)?;
        let result: Result<(), Error> = transfer::on_timeout_now(&self.raft, r).await;
        pack(&result)
    }

    async fn rejoin(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let r: RejoinRequest = self.unpack(req)?;
        let result: Result<RejoinReply, Error> = self.node.readmit(r.node_id).await;
        pack(&result)
    }
}
