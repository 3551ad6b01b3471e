//! Leader-following connection management and the retry loop.
//!
//! The client keeps one lazily connected channel per endpoint, learns every member's client
//! address (`MemberList`) and the leader (every response header), sends to the leader when it
//! knows it, follows `x-conclave-leader` hints, and rotates through endpoints with backoff on
//! transport failures. Every attempt has a deadline; the whole call has an overall deadline.
//!
//! Serializable reads and watches go to the client's *home* member instead (the clients of a
//! process take the configured endpoints in turn), as ZooKeeper sessions and etcd's balancer
//! spread reads.
//! They carry the highest revision the client has seen in any response, and the member waits
//! until it has applied that revision: a client's serializable reads see its own writes and
//! never go back in time, wherever they are served (session consistency, ZooKeeper's
//! guarantee). When the home member fails or lags, the read goes the leader's way.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use conclave_proto::v1 as pb;
use tonic::{Code, Status};

use conclave_proto::errors::{outcome_of, reason_of, Outcome, Reason};

use crate::config::ClientConfig;
use crate::error::{Error, Indeterminate, Result};
use crate::grpc_channel::{ChannelOptions, GrpcChannel};
use crate::token::TokenCell;

#[derive(Default)]
struct View {
    /// Known endpoints in order of preference (configured first, then discovered).
    endpoints: Vec<String>,
    /// Index of the endpoint in use when no leader is known.
    current: usize,
    /// Client address by member id.
    members: BTreeMap<u64, String>,
    /// Leader id, if known.
    leader: Option<u64>,
    /// Endpoints that just failed, until when they are avoided as "the leader" (other members
    /// keep naming a dead leader in their headers until they elect a new one).
    suspect: HashMap<String, tokio::time::Instant>,
    channels: HashMap<String, GrpcChannel>,
}

impl View {
    /// Avoids `addr` (as the leader's address, or as the home member) for [`SUSPECT_FOR`].
    fn suspect_for_a_while(&mut self, addr: &str) {
        self.suspect.insert(addr.to_owned(), tokio::time::Instant::now() + SUSPECT_FOR);
    }
}

/// How long an endpoint that failed is not trusted as the leader's address.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// Connection state shared by all calls of a client.
pub(crate) struct Connection {
    config: ClientConfig,
    view: Mutex<View>,
    /// Where serializable reads go first (one of the configured endpoints).
    home: String,
    /// Highest store revision seen in a response (see the module documentation).
    seen_revision: AtomicU64,
    /// The token of `config.credentials`, attached by every channel.
    token: Option<Arc<TokenCell>>,
}

/// The clients of one process take the configured endpoints in turn as their home member,
/// starting at a random one, so that many clients (and processes) spread their reads.
fn next_home() -> usize {
    static NEXT: OnceLock<AtomicUsize> = OnceLock::new();
    NEXT.get_or_init(|| AtomicUsize::new(usize::from(rand::random::<u16>()))).fetch_add(1, Ordering::Relaxed)
}

/// Classification of a failed attempt.
enum Failure {
    /// Definitely not applied; try elsewhere.
    NotApplied(String),
    /// Maybe applied; a retry (same request id) resolves it.
    Unknown(String),
    /// Final answer from the server.
    Final(Error),
}

/// Decides from the status's code and the error contract's reason and outcome
/// (`conclave_proto::errors`), never from its message.
fn classify(s: &Status) -> Failure {
    let msg = s.message().to_owned();
    match reason_of(s) {
        // The server forgot the original result: retrying cannot tell more.
        Some(Reason::RetryTooOld) => return Failure::Final(Error::Indeterminate(Indeterminate::new(msg))),
        // A leadership transfer that did not complete: whether to try again (and with which
        // target) is the caller's decision; leadership may have moved meanwhile.
        Some(Reason::TransferFailed) => return Failure::Final(Error::from_status(s)),
        _ => {}
    }
    match (s.code(), outcome_of(s)) {
        (Code::Internal, _) => Failure::Final(Error::from_status(s)),
        (Code::Unavailable, Outcome::NotApplied) => Failure::NotApplied(msg),
        (_, Outcome::Unknown) => Failure::Unknown(msg),
        _ => Failure::Final(Error::from_status(s)),
    }
}

impl Connection {
    pub(crate) fn new(config: ClientConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        let view = View { endpoints: config.endpoints.clone(), ..View::default() };
        let home = config.endpoints[next_home() % config.endpoints.len()].clone();
        let token = config.credentials.clone().map(|c| Arc::new(TokenCell::new(c)));
        Ok(Self { config, view: Mutex::new(view), home, seen_revision: AtomicU64::new(0), token })
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A channel to `endpoint` for a call made without retries (maintenance): authenticated
    /// first when credentials are configured and no token is held yet.
    ///
    /// # Errors
    /// A malformed endpoint; the refusal of the credentials.
    pub(crate) async fn authenticated_channel_to(&self, endpoint: &str) -> Result<GrpcChannel> {
        let channel = self.channel_to(endpoint)?;
        if let Some(cell) = self.token.as_ref().filter(|t| t.current().is_none()) {
            crate::auth::refresh_token(cell, channel.clone(), None).await.map_err(|s| Error::from_status(&s))?;
        }
        Ok(channel)
    }

    /// The token in use now (with credentials configured).
    pub(crate) fn token(&self) -> Option<Option<String>> {
        self.token.as_ref().map(|t| t.current())
    }

    /// After `status` refused `stale` (the token an attempt carried): authenticates again when
    /// a fresh token may help.
    ///
    /// # Errors
    /// The refusal of the credentials themselves (`AUTH_FAILED`): final.
    pub(crate) async fn renew_token(
        &self,
        channel: GrpcChannel,
        status: &Status,
        stale: Option<Option<String>>,
    ) -> Result<Renewal> {
        let (Some(cell), Some(stale)) = (&self.token, stale) else { return Ok(Renewal::NotCurable) };
        if !TokenCell::curable(status) {
            return Ok(Renewal::NotCurable);
        }
        match crate::auth::refresh_token(cell, channel, stale).await {
            Ok(()) => Ok(Renewal::Renewed),
            Err(s) if s.code() == Code::Unauthenticated => Err(Error::from_status(&s)),
            Err(s) => Ok(Renewal::Failed(s)),
        }
    }

    fn channel_for(&self, view: &mut View, addr: &str) -> Result<GrpcChannel> {
        if let Some(c) = view.channels.get(addr) {
            return Ok(c.clone());
        }
        let options = ChannelOptions { token: self.token.clone(), ..self.config.channel_options() };
        let channel = GrpcChannel::new(addr, options).map_err(Error::InvalidArgument)?;
        view.channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// The (shared, lazily connected) channel to `addr`, whether or not it is a known member.
    pub(crate) fn channel_to(&self, addr: &str) -> Result<GrpcChannel> {
        let mut view = self.view.lock().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.channel_for(&mut view, addr)
    }

    /// The endpoint to use next: the leader's if known, else the current one.
    pub(crate) fn pick(&self) -> Result<(String, GrpcChannel)> {
        let mut view = self.view.lock().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let now = tokio::time::Instant::now();
        view.suspect.retain(|_, until| *until > now);
        let leader = view.leader.and_then(|l| view.members.get(&l).cloned()).filter(|a| !a.is_empty());
        let addr = match leader.filter(|a| !view.suspect.contains_key(a)) {
            Some(a) => a,
            None => {
                // The current endpoint, skipping suspects while there is an alternative.
                let n = view.endpoints.len();
                let start = view.current % n;
                let pick = (0..n).map(|i| (start + i) % n).find(|i| !view.suspect.contains_key(&view.endpoints[*i]));
                view.current = pick.unwrap_or(start);
                view.endpoints[view.current].clone()
            }
        };
        let channel = self.channel_for(&mut view, &addr)?;
        Ok((addr, channel))
    }

    /// Forgets the leader and moves to the next endpoint (or to the hinted leader).
    pub(crate) fn fail_over(&self, failed: &str, hint: Option<(Option<u64>, Option<String>)>) {
        let Ok(mut view) = self.view.lock() else { return };
        view.leader = None;
        view.suspect_for_a_while(failed);
        if let Some((id, addr)) = hint.filter(|_| self.config.discover) {
            if let Some(addr) = addr.filter(|a| !a.is_empty()) {
                if !view.endpoints.contains(&addr) {
                    view.endpoints.push(addr.clone());
                }
                if let Some(id) = id {
                    view.members.insert(id, addr.clone());
                    view.leader = Some(id);
                }
                return;
            }
        }
        if view.endpoints[view.current % view.endpoints.len()] == failed {
            view.current = (view.current + 1) % view.endpoints.len();
        }
    }

    /// Records what a response header says about the leader and the store's revision.
    pub(crate) fn observe(&self, header: Option<&pb::ResponseHeader>) {
        if let Some(h) = header {
            self.seen_revision.fetch_max(h.revision, Ordering::Relaxed);
        }
        let Some(h) = header.filter(|_| self.config.discover) else { return };
        if let Ok(mut view) = self.view.lock() {
            view.leader = (h.leader_id != 0).then_some(h.leader_id);
        }
    }

    /// Records the membership (client addresses) learned from the cluster.
    pub(crate) fn learn_members(&self, members: &[pb::Member]) {
        if !self.config.discover {
            return;
        }
        if let Ok(mut view) = self.view.lock() {
            for m in members.iter().filter(|m| !m.client_addr.is_empty()) {
                view.members.insert(m.id, m.client_addr.clone());
                if !view.endpoints.contains(&m.client_addr) {
                    view.endpoints.push(m.client_addr.clone());
                }
            }
        }
    }

    /// The highest store revision seen in any response so far.
    pub(crate) fn seen_revision(&self) -> u64 {
        self.seen_revision.load(Ordering::Relaxed)
    }

    /// The home member's channel, unless it failed recently.
    fn home_channel(&self) -> Option<GrpcChannel> {
        let mut view = self.view.lock().ok()?;
        let now = tokio::time::Instant::now();
        if view.suspect.get(&self.home).is_some_and(|until| *until > now) {
            return None;
        }
        self.channel_for(&mut view, &self.home).ok()
    }

    /// The home member (see the module documentation) unless it failed recently, else
    /// [`Connection::pick`]: where watches go, as any member serves them.
    pub(crate) fn pick_home(&self) -> Result<(String, GrpcChannel)> {
        match self.home_channel() {
            Some(channel) => Ok((self.home.clone(), channel)),
            None => self.pick(),
        }
    }

    fn suspect(&self, addr: &str) {
        if let Ok(mut view) = self.view.lock() {
            view.suspect_for_a_while(addr);
        }
    }

    /// Endpoints known so far.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.view.lock().map(|v| v.endpoints.clone()).unwrap_or_default()
    }

    /// Runs `attempt` once on the preferred endpoint within `budget`; on failure (or when the
    /// budget runs out) the next call goes elsewhere. For callers that report connection
    /// trouble themselves (session keep-alives).
    pub(crate) async fn call_once_within<T, F, Fut>(&self, budget: Duration, attempt: F) -> Result<T>
    where
        F: FnOnce(GrpcChannel) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let (addr, channel) = self.pick()?;
        let stale = self.token();
        match tokio::time::timeout(budget, attempt(channel.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(status)) => {
                // The next call carries a fresh token.
                let status = match self.renew_token(channel, &status, stale).await? {
                    Renewal::Failed(s) => s,
                    Renewal::Renewed | Renewal::NotCurable => status,
                };
                if !matches!(classify(&status), Failure::Final(_)) {
                    self.fail_over(&addr, leader_hint(&status));
                }
                Err(Error::from_status(&status))
            }
            Err(_) => {
                self.fail_over(&addr, None);
                Err(Error::Unavailable(format!("{addr} did not answer within {budget:?}")))
            }
        }
    }

    /// Runs `attempt` until it succeeds, fails finally, or the call deadline passes.
    /// `write` makes an exhausted call with an ambiguous attempt end as `Indeterminate`.
    pub(crate) async fn call<T, F, Fut>(&self, write: bool, attempt: F) -> Result<T>
    where
        F: Fn(GrpcChannel) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        self.call_waiting(write, Duration::ZERO, attempt).await
    }

    /// [`Connection::call`] for a request the server may hold for up to `server_wait` (a
    /// waiting lease acquire): every attempt, and the whole call, get that much more time.
    pub(crate) async fn call_waiting<T, F, Fut>(&self, write: bool, server_wait: Duration, attempt: F) -> Result<T>
    where
        F: Fn(GrpcChannel) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let attempt_timeout = self.config.attempt_timeout + server_wait;
        let deadline = tokio::time::Instant::now() + self.config.call_timeout.max(attempt_timeout);
        let mut backoff = Duration::from_millis(20);
        let mut maybe_applied = false;
        let mut refreshed = false;
        let mut last;
        loop {
            let (addr, channel) = self.pick()?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let timeout = attempt_timeout.min(remaining);
            let stale = self.token();
            let failure = match tokio::time::timeout(timeout, attempt(channel.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) => {
                    // No token yet, or it expired: authenticate and send again, once per call.
                    // Authenticating may itself fail like any attempt (no leader): that failure
                    // is this attempt's, retried elsewhere, never "authentication is required".
                    let status = match refreshed {
                        true => status,
                        false => match self.renew_token(channel, &status, stale.clone()).await? {
                            Renewal::Renewed => {
                                refreshed = true;
                                continue;
                            }
                            Renewal::NotCurable => status,
                            Renewal::Failed(s) => s,
                        },
                    };
                    let hint = leader_hint(&status);
                    let f = classify(&status);
                    if !matches!(f, Failure::Final(_)) {
                        self.fail_over(&addr, hint);
                    }
                    f
                }
                Err(_) => {
                    self.fail_over(&addr, None);
                    Failure::Unknown(format!("attempt at {addr} timed out after {timeout:?}"))
                }
            };
            match failure {
                Failure::Final(e) => return Err(e),
                Failure::NotApplied(m) => last = format!("{addr}: {m}"),
                Failure::Unknown(m) => {
                    maybe_applied = true;
                    last = format!("{addr}: {m}");
                }
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(if write && maybe_applied {
                    Error::Indeterminate(Indeterminate::new(last))
                } else {
                    Error::Unavailable(last)
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }
}

/// What [`Connection::renew_token`] did.
#[derive(Debug)]
pub(crate) enum Renewal {
    /// No credentials, or a refusal a fresh token does not cure.
    NotCurable,
    /// A fresh token is in place (this task's or another's): send again.
    Renewed,
    /// Authenticating failed for a reason other than the credentials (no leader, a member
    /// unreachable): the attempt failed with this status.
    Failed(Status),
}

fn leader_hint(s: &Status) -> Option<(Option<u64>, Option<String>)> {
    let md = s.metadata();
    let id = md.get(conclave_proto::LEADER_ID_METADATA).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let addr = md.get(conclave_proto::LEADER_HINT_METADATA).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (id.is_some() || addr.is_some()).then_some((id, addr))
}

/// Responses that carry a [`pb::ResponseHeader`] (the client learns the leader from it).
pub(crate) trait Headed {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! headed {
    ($($t:ty),* $(,)?) => {
        $(impl Headed for $t {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

headed!(
    pb::PutResponse,
    pb::RangeResponse,
    pb::DeleteRangeResponse,
    pb::TxnResponse,
    pb::CounterAddResponse,
    pb::CounterGetResponse,
    pb::CounterSetResponse,
    pb::CounterDeleteResponse,
    pb::SessionOpenResponse,
    pb::SessionCloseResponse,
    pb::SessionInfoResponse,
    pb::SessionListResponse,
    pb::KeepAliveResponse,
    pb::LeaseAcquireResponse,
    pb::LeaseReleaseResponse,
    pb::LeaseGetResponse,
    pb::MemberListResponse,
    pb::MemberAddResponse,
    pb::MemberPromoteResponse,
    pb::MemberRemoveResponse,
    pb::MoveLeaderResponse,
    pb::AuthAdminResponse,
    pb::UserListResponse,
    pb::UserGetResponse,
    pb::RoleListResponse,
    pb::RoleGetResponse,
);

impl Connection {
    /// One unary call with retries (see [`Connection::call`]); records the leader from the reply.
    pub(crate) async fn unary<Req, Resp, F, Fut>(&self, write: bool, req: Req, send: F) -> Result<Resp>
    where
        Req: Clone,
        Resp: Headed,
        F: Fn(GrpcChannel, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        self.unary_waiting(write, Duration::ZERO, req, send).await
    }

    /// [`Connection::unary`] with [`Connection::call_waiting`]'s longer deadlines.
    pub(crate) async fn unary_waiting<Req, Resp, F, Fut>(
        &self,
        write: bool,
        server_wait: Duration,
        req: Req,
        send: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        Resp: Headed,
        F: Fn(GrpcChannel, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let resp = self.call_waiting(write, server_wait, |ch| send(ch, req.clone())).await?.into_inner();
        self.observe(resp.header());
        Ok(resp)
    }

    /// A read. When `serializable`: one attempt at the home member, with the request built for
    /// the highest revision seen so far (its `min_revision`), then, if that fails (down,
    /// behind, not answering, or wanting a token: none yet, or it expired), [`Connection::unary`]
    /// the leader's way, which authenticates first when needed. Otherwise straight through the
    /// leader, built for revision 0.
    pub(crate) async fn read<Req, Resp, F, Fut>(
        &self,
        serializable: bool,
        request_for: impl FnOnce(u64) -> Req,
        send: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        Resp: Headed,
        F: Fn(GrpcChannel, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        if !serializable {
            return self.unary(false, request_for(0), send).await;
        }
        let req = request_for(self.seen_revision());
        if let Some(channel) = self.home_channel() {
            match tokio::time::timeout(self.config.attempt_timeout, send(channel, req.clone())).await {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    self.observe(resp.header());
                    return Ok(resp);
                }
                // No token yet, or it expired: not the member's fault; the leader's way renews it.
                Ok(Err(status)) if self.token.is_some() && TokenCell::curable(&status) => {}
                Ok(Err(status)) if matches!(classify(&status), Failure::Final(_)) => {
                    return Err(Error::from_status(&status));
                }
                _ => self.suspect(&self.home),
            }
        }
        self.unary(false, req, send).await
    }
}

#[cfg(test)]
mod tests {
    use conclave_proto::errors::{status, Outcome, Reason};
    use tonic::{Code, Status};

    use super::{classify, Failure};
    use crate::Error;

    #[test]
    fn the_message_text_decides_nothing() {
        // A leader's "outcome unknown" whose text happens to mention a refused connection.
        let s = status(
            Code::Unavailable,
            "forwarding to leader 3 failed: connection refused by a proxy after the request was sent",
            Reason::Unavailable,
            Outcome::Unknown,
        );
        assert!(matches!(classify(&s), Failure::Unknown(_)), "text must not make it 'not applied'");
        // "Not the leader" after the entry reached Raft: it may still commit.
        let s = status(Code::Unavailable, "node 1 is not the leader", Reason::NotLeader, Outcome::Unknown);
        assert!(matches!(classify(&s), Failure::Unknown(_)));
        let s = status(Code::Unavailable, "anything", Reason::NoLeader, Outcome::NotApplied);
        assert!(matches!(classify(&s), Failure::NotApplied(_)));
    }

    #[test]
    fn a_forgotten_retry_is_indeterminate_and_not_retried() {
        let s = status(Code::Unknown, "retry too old", Reason::RetryTooOld, Outcome::Unknown);
        assert!(matches!(classify(&s), Failure::Final(Error::Indeterminate(_))));
    }

    #[test]
    fn statuses_without_the_contract_are_judged_by_code() {
        assert!(matches!(classify(&Status::unavailable("connect refused")), Failure::Unknown(_)));
        assert!(matches!(classify(&Status::invalid_argument("bad")), Failure::Final(_)));
        assert!(matches!(classify(&Status::deadline_exceeded("late")), Failure::Unknown(_)));
    }
}
