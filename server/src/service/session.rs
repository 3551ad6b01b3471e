//! The `Session` service: open, keep alive (a stream), close, inspect.
//!
//! Under `--auth`, a session belongs to the user who opened it: only that user or root may keep
//! it alive, close it, read its status (`Info`) or bind keys and leases to it; others get
//! `PERMISSION_DENIED` naming the session (`auth::Authorizer::require_session_owner`). Sessions
//! opened without `--auth` (or before owners existed) have no owner and anyone may use them.

use std::collections::HashMap;
use std::pin::Pin;

use conclave_proto::v1 as pb;
use conclave_proto::v1::session_server::Session;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::{unexpected, Api};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::log_entry::Command;
use crate::node::SessionTime;
use crate::state_machine::response::{CommandError, OutcomeBody};

/// Longest session TTL.
pub const MAX_TTL_MS: u64 = 3_600_000;
/// Most session ids in one keep-alive request.
pub const MAX_KEEP_ALIVE_IDS: usize = 100_000;
/// Sessions in a `List` page when the request does not say.
pub const DEFAULT_LIST_PAGE: usize = 1_000;
/// Most sessions in one `List` page.
pub const MAX_LIST_PAGE: usize = 10_000;

impl Api {
    /// The status of each live session in `ids` (in order), with the leader's remaining times.
    fn status_of(&self, ids: &[u64], times: &[SessionTime]) -> Result<Vec<pb::SessionStatus>> {
        let remaining: HashMap<u64, u64> =
            times.iter().filter(|t| t.alive).map(|t| (t.session_id, t.remaining_ms)).collect();
        self.node.view(|sm| {
            ids.iter()
                .filter_map(|id| {
                    let s = sm.sessions().get(*id)?;
                    let remaining = remaining.get(id).copied().unwrap_or(s.ttl_ms);
                    Some(pb::SessionStatus {
                        session_id: *id,
                        ttl_ms: s.ttl_ms,
                        remaining_ms: remaining,
                        keys: s.keys.iter().cloned().collect(),
                        leases: s.leases.iter().cloned().collect(),
                    })
                })
                .collect()
        })
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::KeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Session for Api {
    async fn open(&self, req: Request<pb::SessionOpenRequest>) -> Result<Response<pb::SessionOpenResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let min = self.limits.min_session_ttl_ms;
        if r.ttl_ms < min || r.ttl_ms > MAX_TTL_MS {
            return Err(Error::InvalidArgument(format!(
                "ttl_ms {} is out of range: sessions live {min} to {MAX_TTL_MS} ms (the minimum covers the longest wait for a new leader, so a leader change cannot expire a live session)",
                r.ttl_ms
            ))
            .into());
        }
        let command = match &who {
            Caller::User(owner) => Command::SessionOpenOwned { ttl_ms: r.ttl_ms, owner: owner.clone() },
            Caller::Anyone => Command::SessionOpen { ttl_ms: r.ttl_ms },
        };
        let outcome = self.write(&who, command, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::SessionOpened { session_id } => Ok(Response::new(pb::SessionOpenResponse {
                header: Some(self.header(outcome.revision)),
                session_id,
                ttl_ms: r.ttl_ms,
            })),
            other => Err(unexpected(&other)),
        }
    }

    type KeepAliveStream = KeepAliveStream;

    async fn keep_alive(
        &self,
        req: Request<Streaming<pb::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let who = self.caller(&req).await?;
        let api = self.clone();
        let stream = req.into_inner().then(move |item| {
            let (api, who) = (api.clone(), who.clone());
            async move {
                let r = item?;
                if r.session_ids.len() > MAX_KEEP_ALIVE_IDS {
                    return Err(Error::LimitExceeded(format!(
                        "{} sessions in one keep-alive request; the limit is {MAX_KEEP_ALIVE_IDS}",
                        r.session_ids.len()
                    ))
                    .into());
                }
                api.auth.require_session_owner(&who, &r.session_ids).await?;
                let times = api.node.session_times(&r.session_ids, true).await?;
                let revision = api.applied_revision();
                Ok(pb::KeepAliveResponse {
                    header: Some(api.header(revision)),
                    results: times
                        .into_iter()
                        .map(|t| pb::KeepAliveResult { session_id: t.session_id, alive: t.alive, ttl_ms: t.ttl_ms })
                        .collect(),
                })
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn close(&self, req: Request<pb::SessionCloseRequest>) -> Result<Response<pb::SessionCloseResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = Command::SessionClose { session_id: r.session_id };
        let outcome = self.write(&who, cmd, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::SessionClosed { deleted_keys, released_leases } => {
                Ok(Response::new(pb::SessionCloseResponse {
                    header: Some(self.header(outcome.revision)),
                    deleted_keys,
                    released_leases,
                }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn info(&self, req: Request<pb::SessionInfoRequest>) -> Result<Response<pb::SessionInfoResponse>, Status> {
        let who = self.caller(&req).await?;
        let id = req.into_inner().session_id;
        self.auth.require_session_owner(&who, &[id]).await?;
        let revision = self.read(false, 0, |sm| Ok(sm.revision())).await?;
        let times = self.node.session_times(&[id], false).await.unwrap_or_default();
        let session = self
            .status_of(&[id], &times)?
            .pop()
            .ok_or(Error::Command(CommandError::SessionNotFound { session_id: id }))?;
        Ok(Response::new(pb::SessionInfoResponse { header: Some(self.header(revision)), session: Some(session) }))
    }

    async fn list(&self, req: Request<pb::SessionListRequest>) -> Result<Response<pb::SessionListResponse>, Status> {
        // Lists every user's sessions, leases and keys: root only under --auth.
        self.root(&req, "listing sessions").await?;
        let r = req.into_inner();
        let limit = match r.limit as usize {
            0 => DEFAULT_LIST_PAGE,
            n if n > MAX_LIST_PAGE => {
                return Err(Error::InvalidArgument(format!(
                    "session list limit {n} is over the maximum page of {MAX_LIST_PAGE}; page with `after`"
                ))
                .into())
            }
            n => n,
        };
        let (revision, mut ids) = self
            .read(false, 0, |sm| {
                let page = sm.sessions().iter_after(r.after).take(limit + 1).map(|(id, _)| *id);
                Ok((sm.revision(), page.collect::<Vec<_>>()))
            })
            .await?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        // Only this page's remaining times (an empty list would ask for every session's).
        let times =
            if ids.is_empty() { Vec::new() } else { self.node.session_times(&ids, false).await.unwrap_or_default() };
        Ok(Response::new(pb::SessionListResponse {
            header: Some(self.header(revision)),
            sessions: self.status_of(&ids, &times)?,
            more,
        }))
    }
}
