//! Incoming Raft traffic: the `RaftPeer` gRPC service, handing messages to openraft.
//! The reply carries openraft's `Result` (so a remote Raft error reaches the sender intact).

use conclave_proto::internal::v1::raft_peer_server::RaftPeer;
use conclave_proto::internal::v1::RaftMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::network::FORMAT_BINCODE;
use super::prompt_election::{ProbeReply, PromptElection};
use super::router::Router;
use super::Raft;
use crate::error::ForwardError;
use crate::log_entry::{decode, encode, Proposal};
use crate::sessions::{SessionTime, SessionTracker};
use crate::state_machine::response::CommandResult;

/// Serves the peer protocol for one node.
pub struct PeerService {
    raft: Raft,
    router: Arc<Router>,
    sessions: Arc<SessionTracker>,
    election: Arc<PromptElection>,
}

impl PeerService {
    /// A peer service feeding this node's Raft, router, session tracker and election driver.
    pub fn new(router: Arc<Router>, sessions: Arc<SessionTracker>, election: Arc<PromptElection>) -> Self {
        Self { raft: router.raft().clone(), router, sessions, election }
    }
}

fn unpack<T: DeserializeOwned>(req: Request<RaftMessage>) -> Result<T, Status> {
    let msg = req.into_inner();
    if msg.format != FORMAT_BINCODE {
        return Err(Status::invalid_argument(format!("unsupported peer message format {}", msg.format)));
    }
    decode(&msg.payload).map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

fn pack<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(Response::new(RaftMessage { format: FORMAT_BINCODE, payload }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = unpack(req)?;
        pack(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = unpack(req)?;
        pack(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = unpack(req)?;
        pack(&self.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let size = req.get_ref().payload.len();
        let proposal: Proposal = unpack(req)?;
        let result: Result<CommandResult, ForwardError> =
            self.router.propose_local(proposal, size).await.map_err(ForwardError::from);
        pack(&result)
    }

    async fn read_index(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let () = unpack(req)?;
        let result: Result<u64, ForwardError> = self.router.read_index_local().await.map_err(ForwardError::from);
        pack(&result)
    }

    async fn sessions(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (ids, renew): (Vec<u64>, bool) = unpack(req)?;
        let result: Result<Vec<SessionTime>, ForwardError> =
            self.router.session_times_local(&self.sessions, &ids, renew).await.map_err(ForwardError::from);
        pack(&result)
    }

    async fn election_probe(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let _asker: u64 = unpack(req)?;
        let reply: ProbeReply = self.election.probe_reply().await.map_err(Status::unavailable)?;
        pack(&reply)
    }
}
