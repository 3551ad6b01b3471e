//! The `Cluster` service: this node's status and the membership (served locally), and
//! membership changes (on the leader; see `node::membership`).

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::Error;

impl Api {
    /// Every member; match index and lag when this node leads.
    fn members(&self) -> Vec<pb::Member> {
        let progress = self.node.replication_progress();
        self.node
            .members()
            .into_iter()
            .map(|m| {
                let (match_index, lag) = progress.get(&m.id).copied().unwrap_or_default();
                pb::Member {
                    id: m.id,
                    peer_addr: m.peer_addr,
                    client_addr: m.client_addr,
                    voter: m.voter,
                    match_index,
                    lag,
                    log_format: self.node.log_format_of(m.id),
                }
            })
            .collect()
    }

    fn invalid_id(id: u64) -> Result<(), Status> {
        if id == 0 {
            return Err(Error::InvalidArgument("member id must be at least 1".into()).into());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for Api {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let (revision, compact_revision) = self.node.view(|sm| (sm.revision(), sm.compact_revision()))?;
        let members = self.members();
        let s = self.node.status();
        let leader_client_addr = s.leader_id.and_then(|l| self.node.client_addr_of(l)).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.header(revision)),
            node_id: s.node_id,
            leader_id: s.leader_id.unwrap_or(0),
            term: s.term,
            applied_index: s.applied_index,
            revision,
            compact_revision,
            members,
            role: s.role.into(),
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            leader_client_addr,
            cluster_id: s.cluster_id.map(crate::raft::cluster_id::format).unwrap_or_default(),
            log_format: self.node.log_format_of(s.node_id),
            cluster_log_format: self.node.cluster_log_format(),
        }))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.caller(&req).await?;
        let revision = self.applied_revision();
        Ok(Response::new(pb::MemberListResponse { header: Some(self.header(revision)), members: self.members() }))
    }

    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.root(&req, "adding a member").await?;
        let r = req.into_inner();
        Api::invalid_id(r.id)?;
        if r.peer_addr.is_empty() {
            return Err(Error::InvalidArgument(
                "peer_addr is required (host:port of the new member's peer port)".into(),
            )
            .into());
        }
        self.node.member_add(r.id, r.peer_addr, r.client_addr).await?;
        let revision = self.applied_revision();
        Ok(Response::new(pb::MemberAddResponse { header: Some(self.header(revision)), members: self.members() }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.root(&req, "promoting a member").await?;
        let r = req.into_inner();
        Api::invalid_id(r.id)?;
        self.node.member_promote(r.id).await?;
        let revision = self.applied_revision();
        Ok(Response::new(pb::MemberPromoteResponse { header: Some(self.header(revision)), members: self.members() }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.root(&req, "removing a member").await?;
        let r = req.into_inner();
        Api::invalid_id(r.id)?;
        self.node.member_remove(r.id, r.force).await?;
        let revision = self.applied_revision();
        Ok(Response::new(pb::MemberRemoveResponse { header: Some(self.header(revision)), members: self.members() }))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.root(&req, "moving the leader").await?;
        let r = req.into_inner();
        let target = (r.target_id != 0).then_some(r.target_id);
        let leader_id = self.node.move_leader(target).await?;
        let revision = self.applied_revision();
        Ok(Response::new(pb::MoveLeaderResponse { header: Some(self.header(revision)), leader_id }))
    }
}
