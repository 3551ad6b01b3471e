//! The `Lease` service: acquire (optionally waiting), release, get.
//!
//! A waiting acquire never outlives its caller: the wait ends at `wait_ms`, and the gRPC server
//! drops the handler at the caller's deadline (tonic enforces the `grpc-timeout` header, which
//! the Rust client sends) or when the caller's stream is gone. Each re-proposal after a release carries the caller's
//! request id (`LeaseAcquireRetry`): it is applied only while that client has sent nothing newer,
//! so a caller that gave up here and went on elsewhere (acquired and released through another
//! member) is never granted the lease again by this stale wait.

use std::time::Duration;

use conclave_proto::v1 as pb;
use conclave_proto::v1::lease_server::Lease;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{unexpected, validate, Api};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::log_entry::auth::PermType;
use crate::log_entry::{Command, KeySelector, Proposal};
use crate::state_machine::response::OutcomeBody;
use crate::state_machine::sessions::Holder;

/// Longest `wait_ms` of an acquire.
pub const MAX_ACQUIRE_WAIT_MS: u64 = 60_000;

fn holder(h: Holder) -> pb::LeaseHolder {
    pb::LeaseHolder { session_id: h.session_id, holder_info: h.info, token: h.token, grant_revision: h.token }
}

impl Api {
    /// Waits until lease `name` is free (or already held by `session`), or `until` passes.
    ///
    /// "Held by `session`" matters for a client's retry of a waiting acquire: its first attempt
    /// may have been granted after the client gave up on it, and the retry (same request id)
    /// first gets the original "not granted" answer; it must then get the existing grant, not
    /// wait for a release that will never come.
    async fn wait_for_release(&self, name: &str, session: u64, until: tokio::time::Instant) -> bool {
        let mut applied = self.node.subscribe_applied();
        loop {
            let free = self
                .node
                .view(|sm| {
                    sm.sessions().lease(name).and_then(|l| l.holder.as_ref()).is_none_or(|h| h.session_id == session)
                })
                .unwrap_or(false);
            if free {
                return true;
            }
            match tokio::time::timeout_at(until, applied.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    async fn acquire_once(
        &self,
        caller: &Caller,
        cmd: Command,
        request_id: Option<&pb::RequestId>,
        size: usize,
    ) -> Result<(u64, bool, Holder)> {
        let outcome = self.write(caller, cmd, request_id, size).await?;
        match outcome.body {
            OutcomeBody::LeaseAcquired { granted, holder } => Ok((outcome.revision, granted, holder)),
            other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

#[tonic::async_trait]
impl Lease for Api {
    async fn acquire(
        &self,
        req: Request<pb::LeaseAcquireRequest>,
    ) -> Result<Response<pb::LeaseAcquireResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = validate::lease_acquire(&r)?;
        if r.wait_ms > MAX_ACQUIRE_WAIT_MS {
            return Err(Error::InvalidArgument(format!(
                "wait_ms {} exceeds the limit of {MAX_ACQUIRE_WAIT_MS} ms",
                r.wait_ms
            ))
            .into());
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(r.wait_ms);
        let size = r.encoded_len();
        let original = validate::request_id(r.request_id.as_ref())?;
        let (mut revision, mut granted, mut current) =
            self.acquire_once(&who, cmd.clone(), r.request_id.as_ref(), size).await?;
        // Waiting: no queue; when the lease is released, every waiter proposes again and the
        // first applied wins. A re-proposal is conditional on the caller not having moved on.
        while !granted && self.wait_for_release(&r.name, r.session_id, until).await {
            let command = match (&cmd, original) {
                (Command::LeaseAcquire { name, session_id, info }, Some(original)) => Command::LeaseAcquireRetry {
                    name: name.clone(),
                    session_id: *session_id,
                    info: info.clone(),
                    original,
                },
                _ => cmd.clone(),
            };
            let (command, size) = super::as_caller(&who, command, size);
            let outcome = self.node.propose(Proposal { request_id: None, command }, size).await?;
            match outcome.body {
                OutcomeBody::LeaseAcquired { granted: g, holder: h } => {
                    (revision, granted, current) = (outcome.revision, g, h);
                }
                other => return Err(unexpected(&other)),
            }
        }
        Ok(Response::new(pb::LeaseAcquireResponse {
            header: Some(self.header(revision)),
            granted,
            holder: Some(holder(current)),
        }))
    }

    async fn release(
        &self,
        req: Request<pb::LeaseReleaseRequest>,
    ) -> Result<Response<pb::LeaseReleaseResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = validate::lease_release(&r)?;
        let outcome = self.write(&who, cmd, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::LeaseReleased => {
                Ok(Response::new(pb::LeaseReleaseResponse { header: Some(self.header(outcome.revision)) }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, req: Request<pb::LeaseGetRequest>) -> Result<Response<pb::LeaseGetResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        validate::lease_name(&r.name)?;
        self.auth.require(&who, PermType::Read, &KeySelector::Key(r.name.as_bytes().to_vec())).await?;
        let (revision, state) = self
            .read(r.serializable, r.min_revision, |sm| Ok((sm.revision(), sm.sessions().lease(&r.name).cloned())))
            .await?;
        let state = state.unwrap_or_default();
        Ok(Response::new(pb::LeaseGetResponse {
            header: Some(self.header(revision)),
            held: state.holder.is_some(),
            holder: state.holder.map(holder),
            transitions: state.transitions,
            last_token: state.last_token,
        }))
    }
}
