//! Cluster status and membership.

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_client::ClusterClient;
use tonic::transport::Endpoint;

use crate::{Client, Error, Result};

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

    /// The status of one specific endpoint (its own view; no retries elsewhere).
    ///
    /// # Errors
    /// `Unavailable` when that endpoint does not answer within the attempt timeout.
    pub async fn status_of(&self, endpoint: &str) -> Result<pb::StatusResponse> {
        let uri = if endpoint.starts_with("http://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
        let config = self.config();
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| Error::InvalidArgument(format!("endpoint {endpoint:?}: {e}")))?
            .connect_timeout(config.connect_timeout)
            .timeout(config.attempt_timeout)
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("{endpoint}: {e}")))?;
        let resp = ClusterClient::new(channel).status(pb::StatusRequest {}).await.map_err(|s| {
            if s.code() == tonic::Code::Unavailable {
                Error::Unavailable(format!("{endpoint}: {}", s.message()))
            } else {
                Error::from_status(&s)
            }
        })?;
        Ok(resp.into_inner())
    }
}
