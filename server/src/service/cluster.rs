//! The `Cluster` service: this node's status and the membership. Served locally, never forwarded.

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use super::Api;

impl Api {
    fn members(&self) -> Vec<pb::Member> {
        self.node
            .members()
            .into_iter()
            .map(|m| pb::Member { id: m.id, peer_addr: m.peer_addr, client_addr: m.client_addr, voter: m.voter })
            .collect()
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
        }))
    }

    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let revision = self.applied_revision();
        Ok(Response::new(pb::MemberListResponse { header: Some(self.header(revision)), members: self.members() }))
    }
}
