//! Cluster status and membership.

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_client::ClusterClient;

use crate::{Client, Result};

/// How long a `move_leader` call may be held by the leader beyond a normal request.
const MOVE_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Client {
    /// Asks the cluster for its members and remembers their client addresses.
    ///
    /// # Errors
    /// `Unavailable` when no member could answer.
    pub async fn refresh_members(&self) -> Result<Vec<pb::Member>> {
        let req = pb::MemberListRequest {};
        let resp =
            self.conn.unary(false, req, |ch, r| async move { ClusterClient::new(ch).member_list(r).await }).await?;
        self.conn.learn_members(&resp.members);
        Ok(resp.members)
    }

    /// The members (ids, addresses, voter or learner).
    ///
    /// # Errors
    /// `Unavailable` when no member could answer.
    pub async fn member_list(&self) -> Result<Vec<pb::Member>> {
        self.refresh_members().await
    }

    /// Adds node `id` (peer address `peer_addr`) as a learner; `client_addr` (optional) is shown
    /// in member lists before it starts. Start the node with `--join`, then [`Client::member_promote`].
    ///
    /// # Errors
    /// `Status(AlreadyExists)` (reason `MEMBER_EXISTS`) when the id is taken.
    pub async fn member_add(&self, id: u64, peer_addr: &str, client_addr: &str) -> Result<Vec<pb::Member>> {
        let req = pb::MemberAddRequest { id, peer_addr: peer_addr.to_owned(), client_addr: client_addr.to_owned() };
        let resp =
            self.conn.unary(true, req, |ch, r| async move { ClusterClient::new(ch).member_add(r).await }).await?;
        Ok(resp.members)
    }

    /// Promotes learner `id` to a voter.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` with reason `LEARNER_NOT_READY` until it has caught up;
    /// `Status(NotFound)` when it is not a learner.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<pb::Member>> {
        let req = pb::MemberPromoteRequest { id };
        let resp =
            self.conn.unary(true, req, |ch, r| async move { ClusterClient::new(ch).member_promote(r).await }).await?;
        Ok(resp.members)
    }

    /// Removes member `id`; `force` overrides the live-quorum check.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` with reason `QUORUM_AT_RISK`; `Status(NotFound)`.
    pub async fn member_remove(&self, id: u64, force: bool) -> Result<Vec<pb::Member>> {
        let req = pb::MemberRemoveRequest { id, force };
        let resp =
            self.conn.unary(true, req, |ch, r| async move { ClusterClient::new(ch).member_remove(r).await }).await?;
        Ok(resp.members)
    }

    /// Hands leadership to voter `target` (or, when `None`, to the voter with the highest match
    /// index); returns the new leader's id. Writes issued meanwhile wait and are served by the
    /// new leader: none fails because of the transfer.
    ///
    /// # Errors
    /// `Status(Unavailable)` with reason `TRANSFER_FAILED` when it did not complete in time (the
    /// old leader may still lead); `Status(InvalidArgument)` for a target that is not a voter.
    pub async fn move_leader(&self, target: Option<u64>) -> Result<u64> {
        let req = pb::MoveLeaderRequest { target_id: target.unwrap_or(0) };
        // The leader holds the call while the target catches up and is elected (bounded on the
        // server, under 2 s by default): allow an attempt that long on top of the usual.
        let resp =
            self.conn
                .unary_waiting(true, MOVE_LEADER_WAIT, req, |ch, r| async move {
                    ClusterClient::new(ch).move_leader(r).await
                })
                .await?;
        Ok(resp.leader_id)
    }

    /// The status of one specific endpoint (its own view; no retries elsewhere), over the
    /// client's connection to it.
    ///
    /// # Errors
    /// `Unavailable` when that endpoint does not answer within the attempt timeout.
    pub async fn status_of(&self, endpoint: &str) -> Result<pb::StatusResponse> {
        Ok(self.endpoint_status(endpoint).await?.status)
    }
}
