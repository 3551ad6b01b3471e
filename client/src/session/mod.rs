//! Sessions: the low-level calls and [`Session`], a handle that keeps one session alive.
//!
//! Connection states ([`SessionState`]), as a job manager sees them:
//! - `Connected`: keep-alives succeed.
//! - `Suspended`: a keep-alive failed (the contacted member is down, no leader yet, ...); the
//!   session may well be alive on the cluster: nothing is lost yet. Fenced writes stay safe.
//! - `Reconnected`: keep-alives succeed again after a suspension; the session survived.
//! - `Expired`: the cluster reported the session gone, or no keep-alive succeeded for twice the
//!   TTL (by then the cluster has expired it or soon will: a leader change can stretch a
//!   session's life to 2 x TTL plus an election, never more than that beyond its last renewal,
//!   so the handle gives it up). Final.
//!
//! Keep-alives go every TTL / 3, each one attempt on the member the client is connected to: a
//! failure (that member died, or no leader yet) reports `Suspended`, and the next attempt, 100 ms
//! later, goes to another member, so a session rides out a member's death or a leader change
//! (about one second) without expiring. The keep-alives of all the sessions of one [`Client`]
//! share requests (`coalesce.rs`).

use std::time::Duration;

use conclave_proto::v1 as pb;
use conclave_proto::v1::session_client::SessionClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Client, Error, Result, WriteId};

mod coalesce;

pub(crate) use coalesce::KeepAlives;

/// A session's connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Keep-alives succeed.
    Connected,
    /// A keep-alive failed; the session may still be alive.
    Suspended,
    /// Keep-alives succeed again after a suspension.
    Reconnected,
    /// The session is gone (final).
    Expired,
}

impl Client {
    /// Opens a session with a TTL; returns its id.
    ///
    /// # Errors
    /// `Status(InvalidArgument)` when the TTL is out of range (the message states the range).
    pub async fn session_open(&self, ttl: Duration) -> Result<u64> {
        self.session_open_as(&self.new_write_id(), ttl).await
    }

    /// [`Client::session_open`] as the write `id` (a resend returns the same session).
    ///
    /// # Errors
    /// See [`Client::session_open`].
    pub async fn session_open_as(&self, id: &WriteId, ttl: Duration) -> Result<u64> {
        let req = pb::SessionOpenRequest { ttl_ms: ttl.as_millis() as u64, request_id: Some(id.request_id()) };
        let resp = self
            .write(Some(id), Duration::ZERO, req, |ch, r| async move { SessionClient::new(ch).open(r).await })
            .await?;
        Ok(resp.session_id)
    }

    /// Renews sessions once (one request can renew many); returns each session's liveness.
    ///
    /// # Errors
    /// `Unavailable` when no leader could confirm the renewal in time.
    pub async fn keep_alive(&self, session_ids: &[u64]) -> Result<Vec<pb::KeepAliveResult>> {
        let req = pb::KeepAliveRequest { session_ids: session_ids.to_vec() };
        let resp = self.conn.call(false, |ch| keep_alive_rpc(ch, req.clone())).await?;
        self.conn.observe(crate::connection::Headed::header(&resp));
        Ok(resp.results)
    }

    /// One keep-alive attempt on the current endpoint, no retries: a failure means this
    /// client's connection is in trouble (the [`Session`] handle reports `Suspended`).
    /// `budget` bounds the attempt; a member that does not answer within it is left, so the next
    /// keep-alive goes to another one (never wait longer than the session can afford).
    async fn keep_alive_once(&self, session_ids: &[u64], budget: Duration) -> Result<Vec<pb::KeepAliveResult>> {
        let req = pb::KeepAliveRequest { session_ids: session_ids.to_vec() };
        let resp = self.conn.call_once_within(budget, |ch| keep_alive_rpc(ch, req)).await?;
        self.conn.observe(crate::connection::Headed::header(&resp));
        Ok(resp.results)
    }

    /// Closes a session: its ephemeral keys are deleted and its leases released at once.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn session_close(&self, session_id: u64) -> Result<pb::SessionCloseResponse> {
        let id = self.new_write_id();
        let req = pb::SessionCloseRequest { session_id, request_id: Some(id.request_id()) };
        self.write(Some(&id), Duration::ZERO, req, |ch, r| async move { SessionClient::new(ch).close(r).await }).await
    }

    /// A session's TTL, remaining time, keys and leases.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn session_info(&self, session_id: u64) -> Result<pb::SessionStatus> {
        let req = pb::SessionInfoRequest { session_id };
        let resp = self.conn.unary(false, req, |ch, r| async move { SessionClient::new(ch).info(r).await }).await?;
        resp.session.ok_or_else(|| Error::local(tonic::Code::Internal, "empty session info"))
    }

    /// Every live session, in id order (fetched page by page; see [`Client::session_list_page`]).
    ///
    /// # Errors
    /// `Unavailable` when no member could answer.
    pub async fn session_list(&self) -> Result<Vec<pb::SessionStatus>> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (page, more) = self.session_list_page(after, 0).await?;
            after = page.last().map_or(after, |s| s.session_id);
            all.extend(page);
            if !more {
                return Ok(all);
            }
        }
    }

    /// One page of live sessions with ids greater than `after`, at most `limit` (0: the server's
    /// default of 1,000; at most 10,000), and whether more follow.
    ///
    /// # Errors
    /// `Unavailable` when no member could answer; `InvalidArgument` for a limit over 10,000.
    pub async fn session_list_page(&self, after: u64, limit: u32) -> Result<(Vec<pb::SessionStatus>, bool)> {
        let req = pb::SessionListRequest { after, limit };
        let resp = self.conn.unary(false, req, |ch, r| async move { SessionClient::new(ch).list(r).await }).await?;
        Ok((resp.sessions, resp.more))
    }
}

async fn keep_alive_rpc(
    ch: crate::GrpcChannel,
    req: pb::KeepAliveRequest,
) -> std::result::Result<pb::KeepAliveResponse, tonic::Status> {
    let mut stream = SessionClient::new(ch).keep_alive(futures::stream::iter([req])).await?.into_inner();
    stream.message().await?.ok_or_else(|| tonic::Status::unavailable("keep-alive stream closed without an answer"))
}

/// A session kept alive by a background task until [`Session::close`] (or drop, as a safety
/// net: the task stops and the session then expires after its TTL).
pub struct Session {
    client: Client,
    id: u64,
    ttl: Duration,
    state: watch::Receiver<SessionState>,
    task: JoinHandle<()>,
}

impl Session {
    /// Opens a session and starts keeping it alive (every TTL / 3).
    ///
    /// # Errors
    /// As [`Client::session_open`].
    pub async fn open(client: &Client, ttl: Duration) -> Result<Self> {
        let id = client.session_open(ttl).await?;
        Ok(Self::attach(client, id, ttl))
    }

    /// Starts keeping an existing session alive.
    pub fn attach(client: &Client, id: u64, ttl: Duration) -> Self {
        let (tx, state) = watch::channel(SessionState::Connected);
        let task = tokio::spawn(keep_alive_loop(client.clone(), id, ttl, tx));
        Self { client: client.clone(), id, ttl, state, task }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The current connection state.
    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// A stream of connection-state changes (a `watch` receiver: always has the latest state).
    pub fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.state.clone()
    }

    /// Stops the keep-alives and closes the session on the cluster (its keys and leases go at
    /// once).
    ///
    /// # Errors
    /// As [`Client::session_close`]; a session that already expired is not an error.
    pub async fn close(self) -> Result<()> {
        self.task.abort();
        match self.client.session_close(self.id).await {
            Ok(_) => Ok(()),
            Err(Error::Status { code: tonic::Code::NotFound, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delay between keep-alive attempts after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(100);

async fn keep_alive_loop(client: Client, id: u64, ttl: Duration, state: watch::Sender<SessionState>) {
    let interval = (ttl / 3).max(Duration::from_millis(50));
    // One attempt may take up to half the TTL (a follower waits for a new leader to answer).
    let attempt_budget = (ttl / 2).max(Duration::from_millis(500));
    let mut last_ok = Instant::now();
    let mut delay = interval;
    loop {
        tokio::time::sleep(delay).await;
        let next = match client.keep_alive_coalesced(id, attempt_budget).await {
            Some(true) => {
                last_ok = Instant::now();
                delay = interval;
                match *state.borrow() {
                    SessionState::Suspended | SessionState::Reconnected => SessionState::Reconnected,
                    _ => SessionState::Connected,
                }
            }
            Some(false) => SessionState::Expired,
            _ if last_ok.elapsed() >= ttl * 2 => SessionState::Expired,
            _ => {
                delay = RETRY_DELAY;
                SessionState::Suspended
            }
        };
        state.send_if_modified(|s| {
            let changed = *s != next;
            if changed {
                *s = next;
            }
            changed
        });
        if next == SessionState::Expired {
            return;
        }
    }
}
