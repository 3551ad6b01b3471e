//! The `Cluster` service: this node's status and the membership. Served locally, never forwarded.

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_server::Cluster;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::Api;

impl Api {
    fn members(&self) -> Vec<pb::Member> {
        let addrs = self.router.shared().sm.read().map(|sm| sm.client_addrs().clone()).unwrap_or_default();
        let metrics = self.router.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                peer_addr: node.peer_addr.clone(),
                client_addr: addrs.get(id).cloned().unwrap_or_default(),
                voter: voters.contains(id),
            })
            .collect()
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Cluster for Api {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let (revision, compact_revision) =
            self.router.shared().sm.read().map(|sm| (sm.revision(), sm.compact_revision())).unwrap_or_default();
        let members = self.members();
        let metrics = self.router.raft().metrics().borrow().clone();
        let leader_client_addr = metrics.current_leader.and_then(|l| self.router.client_addr_of(l)).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.header(revision)),
            node_id: self.router.node_id(),
            leader_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            revision,
            compact_revision,
            members,
            role: role(metrics.state).into(),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            leader_client_addr,
        }))
    }

    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let revision = self.router.shared().sm.read().map(|sm| sm.revision()).unwrap_or_default();
        Ok(Response::new(pb::MemberListResponse { header: Some(self.header(revision)), members: self.members() }))
    }
}
