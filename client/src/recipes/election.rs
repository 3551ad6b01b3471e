//! Leader election with fencing.
//!
//! One [`LeaderElection`] per job-manager process, over one [`Session`]. [`LeaderElection::campaign`]
//! yields [`LeadershipEvent::Granted`] with a [`LeaderToken`] (a random UUID, as Flink's leader
//! session id, plus the **epoch**: the lease's fencing token, strictly greater than every earlier
//! grant's) and [`LeadershipEvent::Revoked`] with a reason.
//!
//! Guarantees and failure modes:
//! - At most one session holds the lease at any time. Two processes may still *believe* they
//!   lead at the same moment (a paused leader whose session expired has not noticed yet); this
//!   is why every write a leader makes must be fenced with [`LeaderElection::fence`] (or the
//!   recipes' fenced operations): the cluster rejects writes carrying a superseded epoch.
//! - [`RevokePolicy::OnExpired`] (default) keeps leadership through a `Suspended` connection:
//!   safe, because fencing rejects anything written after the session really expired.
//!   [`RevokePolicy::OnSuspended`] revokes on the first failed keep-alive (ZooKeeper-like) and
//!   campaigns again after reconnecting.
//! - A grant is revoked when the session expires, when the lease is found held by someone else
//!   or free (checked every TTL / 2), or on [`LeaderElection::resign`].
//! - Failover time after a leader process dies: its session TTL plus the server's expiry
//!   bound (about one second) plus one acquisition round.

use std::sync::Arc;
use std::time::Duration;

use conclave_proto::v1 as pb;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::keys;
use crate::session::{Session, SessionState};
use crate::{fence, Client, Error, Result};

/// When leadership is revoked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RevokePolicy {
    /// Revoke as soon as the connection is suspended (ZooKeeper-compatible, more failovers).
    OnSuspended,
    /// Revoke only when the session expires (safe with fencing; the default).
    #[default]
    OnExpired,
}

/// Proof of leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderToken {
    /// Random id of this grant (Flink's leader session id).
    pub uuid: Uuid,
    /// The lease's fencing token for this grant: strictly increasing across grants.
    pub epoch: u64,
    /// The election lease.
    pub lease: String,
}

/// What a campaign reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeadershipEvent {
    /// Leadership granted.
    Granted(LeaderToken),
    /// Leadership lost or given up, with the reason.
    Revoked(String),
}

/// A leader election for one cluster id.
pub struct LeaderElection {
    client: Client,
    session: Arc<Session>,
    lease: String,
    info: Vec<u8>,
    policy: RevokePolicy,
    current: Arc<Mutex<Option<LeaderToken>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl LeaderElection {
    /// An election for `cluster_id`; `info` describes this candidate (e.g. its address).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed cluster id.
    pub fn new(
        client: &Client,
        session: Arc<Session>,
        cluster_id: &str,
        info: &[u8],
        policy: RevokePolicy,
    ) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        Ok(Self {
            client: client.clone(),
            session,
            lease: keys::election_lease(cluster_id),
            info: info.to_vec(),
            policy,
            current: Arc::default(),
            task: std::sync::Mutex::new(None),
        })
    }

    /// The session this election runs on.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// A transaction compare that holds only while `token` is the current leadership.
    pub fn fence(token: &LeaderToken) -> pb::Compare {
        fence(&token.lease, token.epoch)
    }

    /// Starts campaigning; returns the stream of leadership events. Calling it again restarts
    /// the campaign (the previous stream ends).
    pub fn campaign(&self) -> mpsc::Receiver<LeadershipEvent> {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(campaign_loop(Campaign {
            client: self.client.clone(),
            session: self.session.clone(),
            lease: self.lease.clone(),
            info: self.info.clone(),
            policy: self.policy,
            current: self.current.clone(),
            tx,
        }));
        self.set_task(Some(task));
        rx
    }

    /// Replaces the campaign task, stopping the previous one.
    fn set_task(&self, task: Option<JoinHandle<()>>) {
        if let Ok(mut t) = self.task.lock() {
            if let Some(old) = std::mem::replace(&mut *t, task) {
                old.abort();
            }
        }
    }

    /// The leadership this process believes it holds (local view; see [`Self::has_leadership`]).
    pub async fn current(&self) -> Option<LeaderToken> {
        self.current.lock().await.clone()
    }

    /// Whether `token` is the cluster's current leadership (a linearizable read, not a local flag).
    ///
    /// # Errors
    /// `Unavailable` when the cluster cannot answer.
    pub async fn has_leadership(&self, token: &LeaderToken) -> Result<bool> {
        let state = self.client.lease_get(&token.lease, false).await?;
        Ok(state.holder.is_some_and(|h| h.session_id == self.session.id() && h.token == token.epoch))
    }

    /// Stops campaigning and releases leadership at once (the lease, fenced by its token).
    ///
    /// # Errors
    /// As [`Client::lease_release`]; releasing leadership that was already lost is not an error.
    pub async fn resign(&self) -> Result<()> {
        self.set_task(None);
        let token = self.current.lock().await.take();
        if let Some(token) = token {
            match self.client.lease_release(&token.lease, token.epoch).await {
                Ok(_) | Err(Error::Status { code: tonic::Code::FailedPrecondition, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        self.set_task(None);
    }
}

struct Campaign {
    client: Client,
    session: Arc<Session>,
    lease: String,
    info: Vec<u8>,
    policy: RevokePolicy,
    current: Arc<Mutex<Option<LeaderToken>>>,
    tx: mpsc::Sender<LeadershipEvent>,
}

impl Campaign {
    /// Drops the current leadership (reporting it, if there was one); returns whether the
    /// campaign should go on (false once nobody listens to the events any more).
    async fn revoke(&self, reason: &str) -> bool {
        let had = self.current.lock().await.take().is_some();
        !had || self.tx.send(LeadershipEvent::Revoked(reason.to_owned())).await.is_ok()
    }

    /// Usable for campaigning under the policy.
    fn usable(&self, state: SessionState) -> bool {
        match state {
            SessionState::Expired => false,
            SessionState::Suspended => self.policy == RevokePolicy::OnExpired,
            SessionState::Connected | SessionState::Reconnected => true,
        }
    }
}

async fn campaign_loop(c: Campaign) {
    let mut states: watch::Receiver<SessionState> = c.session.subscribe();
    let check_every = (c.session.ttl() / 2).max(Duration::from_millis(100));
    loop {
        let state = *states.borrow_and_update();
        if state == SessionState::Expired {
            let _ = c.revoke("session expired").await;
            return;
        }
        if !c.usable(state) {
            if !c.revoke("connection suspended").await {
                return;
            }
            if states.changed().await.is_err() {
                return;
            }
            continue;
        }
        let leading = c.current.lock().await.is_some();
        if !leading {
            let wait = c.session.ttl().as_millis() as u64;
            let acquired = tokio::select! {
                r = c.client.lease_acquire(&c.lease, c.session.id(), &c.info, wait) => r,
                _ = states.changed() => continue,
            };
            match acquired {
                Ok(resp) if resp.granted => {
                    let epoch = resp.holder.map_or(0, |h| h.token);
                    let token = LeaderToken { uuid: Uuid::new_v4(), epoch, lease: c.lease.clone() };
                    *c.current.lock().await = Some(token.clone());
                    if c.tx.send(LeadershipEvent::Granted(token)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(Error::Status { code: tonic::Code::NotFound, .. }) => {
                    let _ = c.revoke("session expired").await;
                    return;
                }
                Err(e) => {
                    tracing::debug!("campaign: acquire failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        // Leading: watch the session and re-check the lease periodically.
        tokio::select! {
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(check_every) => {
                let token = c.current.lock().await.clone();
                if let Some(token) = token {
                    match c.client.lease_get(&token.lease, false).await {
                        Ok(s) if s.holder.as_ref().is_some_and(|h| h.token == token.epoch) => {}
                        Ok(_) => {
                            if !c.revoke("lease lost").await {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!("campaign: lease check failed: {e}"),
                    }
                }
            }
        }
    }
}
