//! Named leases: exclusive claims with fencing tokens.

use conclave_proto::v1 as pb;
use conclave_proto::v1::lease_client::LeaseClient;

use crate::{Client, Result, WriteId};

/// A transaction compare that holds only while lease `name` is held with `token`: put it in a
/// transaction to make the transaction's writes conditional on still holding the lease. When it
/// fails, the transaction is rejected and `TxnResponse::fencing_failure` says why.
pub fn fence(name: &str, token: u64) -> pb::Compare {
    pb::Compare { target: Some(pb::compare::Target::Lease(pb::LeaseCompare { name: name.to_owned(), token })) }
}

impl Client {
    /// Tries to acquire lease `name` for `session_id`; waits up to `wait_ms` for a holder to
    /// release it. The response says whether it was granted and who holds it now; a granted
    /// lease carries its fencing token. Acquiring a lease the session already holds returns the
    /// existing grant (idempotent).
    ///
    /// # Errors
    /// `Status(NotFound)` for an unknown session; `Indeterminate` when the outcome is unknown
    /// (call again: acquisition is idempotent per session). Each attempt may take `wait_ms` plus
    /// the client's attempt timeout.
    pub async fn lease_acquire(
        &self,
        name: &str,
        session_id: u64,
        info: &[u8],
        wait_ms: u64,
    ) -> Result<pb::LeaseAcquireResponse> {
        self.lease_acquire_as(&self.new_write_id(), name, session_id, info, wait_ms).await
    }

    /// [`Client::lease_acquire`] as the write `id`.
    ///
    /// # Errors
    /// See [`Client::lease_acquire`].
    pub async fn lease_acquire_as(
        &self,
        id: &WriteId,
        name: &str,
        session_id: u64,
        info: &[u8],
        wait_ms: u64,
    ) -> Result<pb::LeaseAcquireResponse> {
        let req = pb::LeaseAcquireRequest {
            name: name.to_owned(),
            session_id,
            holder_info: info.to_vec(),
            request_id: Some(id.request_id()),
            wait_ms,
        };
        // The server holds the request up to wait_ms: attempts must not give up before that.
        // The attempt's deadline travels with it (grpc-timeout), so a member this client is
        // cut off from stops waiting for it when the client has given up.
        let wait = std::time::Duration::from_millis(wait_ms);
        let deadline = wait + self.conn.config().attempt_timeout;
        self.write(Some(id), wait, req, |ch, r| async move {
            let mut r = tonic::Request::new(r);
            r.set_timeout(deadline);
            LeaseClient::new(ch).acquire(r).await
        })
        .await
    }

    /// Releases lease `name` held with `token`.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` when it is not held with that token.
    pub async fn lease_release(&self, name: &str, token: u64) -> Result<u64> {
        self.lease_release_as(&self.new_write_id(), name, token).await
    }

    /// [`Client::lease_release`] as the write `id`.
    ///
    /// # Errors
    /// See [`Client::lease_release`].
    pub async fn lease_release_as(&self, id: &WriteId, name: &str, token: u64) -> Result<u64> {
        let req = pb::LeaseReleaseRequest { name: name.to_owned(), token, request_id: Some(id.request_id()) };
        let resp =
            self.write(Some(id), std::time::Duration::ZERO, req, |ch, r| async move {
                LeaseClient::new(ch).release(r).await
            })
            .await?;
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// Reads a lease's holder, token and transitions.
    ///
    /// # Errors
    /// `Unavailable` when no member could answer.
    pub async fn lease_get(&self, name: &str, serializable: bool) -> Result<pb::LeaseGetResponse> {
        let req = |min_revision| pb::LeaseGetRequest { name: name.to_owned(), serializable, min_revision };
        self.conn.read(serializable, req, |ch, r| async move { LeaseClient::new(ch).get(r).await }).await
    }
}
