//! Health and status of one specific endpoint (no retries elsewhere, no leader following):
//! what `conclavectl endpoint health|status` reports per member.

use std::time::{Duration, Instant};

use conclave_proto::v1 as pb;
use conclave_proto::v1::cluster_client::ClusterClient;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{Client, Error, Result};

/// The response header in which a server names its version.
pub const SERVER_VERSION_HEADER: &str = "x-conclave-server-version";

/// One endpoint's answer to a health check.
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    /// SERVING: the member knows a leader it hears from, the leader confirmed its commit index
    /// and this member has applied close to it (the server's readiness rule).
    pub healthy: bool,
    /// How long the check took.
    pub took: Duration,
    /// Why it is not healthy (the status it reported, or the failure to ask).
    pub error: Option<String>,
}

/// One endpoint's own status, with the server version it reported.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    /// The member's view (`Cluster.Status`, served locally).
    pub status: pb::StatusResponse,
    /// The server's version ("" when it did not say).
    pub version: String,
}

impl Client {
    /// Asks `endpoint` (only) whether it is healthy: `grpc.health.v1.Health/Check` of the whole
    /// server (service ""), bounded by the attempt timeout. Never fails: a failure to ask is an
    /// unhealthy answer with the reason.
    pub async fn health_of(&self, endpoint: &str) -> EndpointHealth {
        let started = Instant::now();
        let result = self.check_health(endpoint).await;
        let took = started.elapsed();
        match result {
            Ok(ServingStatus::Serving) => EndpointHealth { healthy: true, took, error: None },
            Ok(other) => EndpointHealth { healthy: false, took, error: Some(other.as_str_name().to_owned()) },
            Err(e) => EndpointHealth { healthy: false, took, error: Some(e.to_string()) },
        }
    }

    async fn check_health(&self, endpoint: &str) -> Result<ServingStatus> {
        let mut client = HealthClient::new(self.conn.channel_to(endpoint)?);
        let call = client.check(HealthCheckRequest { service: String::new() });
        Ok(self.bounded(endpoint, call).await?.into_inner().status())
    }

    /// `call` to `endpoint`, bounded by the attempt timeout; every failure is `Unavailable`.
    async fn bounded<T>(
        &self,
        endpoint: &str,
        call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<tonic::Response<T>> {
        let timeout = self.config().attempt_timeout;
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::Unavailable(format!("{endpoint}: no answer within {timeout:?}")))?
            .map_err(|s| {
                if s.code() == tonic::Code::Unavailable {
                    Error::Unavailable(format!("{endpoint}: {}", s.message()))
                } else {
                    Error::from_status(&s)
                }
            })
    }

    /// The status of `endpoint` (only), with its server version.
    ///
    /// # Errors
    /// `Unavailable` when that endpoint does not answer within the attempt timeout.
    pub async fn endpoint_status(&self, endpoint: &str) -> Result<EndpointStatus> {
        let mut client = ClusterClient::new(self.conn.channel_to(endpoint)?);
        let resp = self.bounded(endpoint, client.status(pb::StatusRequest {})).await?;
        let version =
            resp.metadata().get(SERVER_VERSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok(EndpointStatus { status: resp.into_inner(), version })
    }
}
