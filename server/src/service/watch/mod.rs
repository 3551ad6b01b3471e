//! The `Watch` service: streams of key changes, served from this node's applied history.
//!
//! Each stream is one task that owns its watches. A watch is a position (`next`) in the
//! revision history. When the applied revision moves, the member's shared fan-out
//! ([`feed`]) reads the new revisions' changes once, for every stream, into a bounded window;
//! each stream then picks the changes its watches select, one response per revision, in order.
//! A watch whose position is before the window (created from an old revision, or fallen behind)
//! reads the state machine's retained history (`StateMachine::read_history`) until it reaches
//! the window. Both sources hold only applied (hence committed) revisions, and each watch only
//! moves forward, so nothing is delivered before it is committed, nothing twice, nothing out of
//! order, across leader changes and this node's restarts.
//!
//! Resource policy: a stream buffers at most [`STREAM_BUFFER`] responses and prepares at most
//! [`CHUNK_REVISIONS`] per watch at a time; a slow reader makes only its own task wait, and the
//! shared window is bounded on its own ([`feed::WINDOW_REVISIONS`], [`feed::WINDOW_BYTES`]):
//! a reader that falls out of it continues from history. A watch that falls behind the
//! compaction point (and out of the window) is canceled with `compact_revision` set; the client
//! re-reads and resumes. Invalid requests end the stream with INVALID_ARGUMENT; more than
//! `max_watches_per_stream` watches end it with RESOURCE_EXHAUSTED.
//!
//! Under `--auth` ([`guard`]), a watch delivers only while the stream's caller may still read
//! its range: a watch whose permission is gone is canceled (its id, the refusal as reason) and
//! the stream ends with PERMISSION_DENIED, the way a forbidden create ends it (the client
//! re-creates its other watches); an identity that ended (token expired, user deleted, password
//! or roles changed) ends the stream with UNAUTHENTICATED (the client renews and resumes).
//!
//! A node that has lost its leader (no leader for 8 election timeouts in a row,
//! `raft/leader_presence.rs`) ends its streams, and refuses new ones, with UNAVAILABLE: its
//! history no longer moves, so its watchers must resume elsewhere.

mod feed;
mod guard;
mod window;

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_proto::v1 as pb;
use conclave_proto::v1::watch_server::Watch;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use self::feed::Feed;
use self::feed::SharedEvent;
use self::guard::{Ended, Guard};
use self::window::WindowRead;
use super::{validate, Api};
use crate::auth::Caller;
use crate::error::{Error, UnavailableReason};
use crate::log_entry::auth::PermType;
use crate::log_entry::KeySelector;
use crate::state_machine::history::HistoryRead;

/// Responses buffered per stream.
pub const STREAM_BUFFER: usize = 16;
/// Revisions read per watch at a time (from the window, or from history per lock acquisition).
pub const CHUNK_REVISIONS: usize = 64;

/// Watch limits and tunables.
#[derive(Clone, Copy, Debug)]
pub struct WatchLimits {
    /// Most watches on one stream.
    pub max_watches_per_stream: usize,
    /// Idle time before a progress notification (watches created with progress_notify).
    pub progress_interval: Duration,
}

struct Watcher {
    selector: KeySelector,
    /// Next revision to deliver.
    next: u64,
    prev_kv: bool,
    progress_notify: bool,
    last_sent: Instant,
    _active: crate::ops::metrics::WatcherGuard,
}

/// One result of reading changes for a watcher.
enum Pull {
    /// Responses to send, in order (the watcher's position was advanced past them), and whether
    /// more may be ready at once.
    Events { responses: Vec<pb::WatchResponse>, more: bool },
    /// The watcher's next revision was compacted: the oldest available revision.
    Compacted(u64),
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// The response of watch `watch_id` at `revision`, with `header` (the node's status) as base.
fn response(header: &pb::ResponseHeader, watch_id: i64, revision: u64) -> pb::WatchResponse {
    pb::WatchResponse { header: Some(pb::ResponseHeader { revision, ..*header }), watch_id, ..Default::default() }
}

struct StreamTask {
    api: Api,
    /// Who opened the stream.
    caller: Caller,
    /// Re-checks the caller while the stream lives (`--auth`).
    guard: Option<Guard>,
    out: Out,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

impl StreamTask {
    fn response(&self, watch_id: i64, revision: u64) -> pb::WatchResponse {
        pb::WatchResponse { header: Some(self.api.header(revision)), watch_id, ..Default::default() }
    }

    async fn send(&self, r: Result<pb::WatchResponse, Status>) -> Result<(), ()> {
        if self.out.capacity() == 0 {
            crate::ops::metrics::slow_watcher();
        }
        self.out.send(r).await.map_err(|_| ())
    }

    /// Reads the next changes for one watcher: from the shared window when its position is in
    /// it, else the next chunk of history (under the state-machine read lock).
    fn pull(&mut self, id: i64, header: &pb::ResponseHeader) -> Option<Pull> {
        let w = self.watchers.get_mut(&id)?;
        let (revisions, more) = match self.api.feed.read(w.next, CHUNK_REVISIONS) {
            WindowRead::Revisions { revisions, next } => {
                w.next = next;
                let more = revisions.len() == CHUNK_REVISIONS;
                let revisions = revisions
                    .iter()
                    .map(|(rev, events)| {
                        let events = events
                            .iter()
                            .filter(|e| e.selected_by(&w.selector))
                            .map(|e| e.to_event(w.prev_kv))
                            .collect::<Vec<_>>();
                        (*rev, events)
                    })
                    .collect::<Vec<_>>();
                (revisions, more)
            }
            WindowRead::Behind => {
                match self.api.node.view(|sm| sm.read_history(&w.selector, w.next, CHUNK_REVISIONS)).ok()? {
                    HistoryRead::Compacted(oldest) => return Some(Pull::Compacted(oldest)),
                    HistoryRead::Changes { revisions, next } => {
                        w.next = next;
                        let revisions = revisions
                            .into_iter()
                            .map(|(rev, changes)| {
                                let events = changes
                                    .into_iter()
                                    .filter_map(|c| SharedEvent::new(c, rev))
                                    .map(|e| e.to_event(w.prev_kv))
                                    .collect::<Vec<_>>();
                                (rev, events)
                            })
                            .collect::<Vec<_>>();
                        (revisions, w.next <= self.api.applied_revision())
                    }
                }
            }
        };
        let responses = revisions
            .into_iter()
            .filter(|(_, events)| !events.is_empty())
            .map(|(rev, events)| pb::WatchResponse { events, ..response(header, id, rev) })
            .collect();
        Some(Pull::Events { responses, more })
    }

    /// Delivers everything applied so far to one watcher.
    async fn deliver(&mut self, id: i64, header: &pb::ResponseHeader) -> Result<(), ()> {
        loop {
            match self.pull(id, header) {
                None => return Ok(()),
                Some(Pull::Compacted(oldest)) => {
                    self.watchers.remove(&id);
                    let reason =
                        format!("required revision has been compacted; the oldest available revision is {oldest}");
                    let r = pb::WatchResponse {
                        canceled: true,
                        cancel_reason: reason,
                        compact_revision: oldest,
                        ..response(header, id, oldest)
                    };
                    return self.send(Ok(r)).await;
                }
                Some(Pull::Events { responses, more }) => {
                    let sent = !responses.is_empty();
                    if sent {
                        self.authorized().await?;
                    }
                    for r in responses {
                        self.send(Ok(r)).await?;
                    }
                    if let Some(w) = self.watchers.get_mut(&id).filter(|_| sent) {
                        w.last_sent = Instant::now();
                    }
                    if !more {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Brings the shared window up to the applied revision, then delivers to every watcher.
    async fn deliver_all(&mut self) -> Result<(), ()> {
        self.api.feed.catch_up(&self.api.node, self.api.applied_revision());
        self.authorized().await?;
        let header = self.api.header(0);
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.deliver(id, &header).await?;
        }
        Ok(())
    }

    async fn progress(&mut self, only_idle: bool) -> Result<(), ()> {
        self.deliver_all().await?;
        let now = Instant::now();
        let interval = self.api.limits.watch.progress_interval;
        let due: Vec<(i64, u64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| !only_idle || (w.progress_notify && now.duration_since(w.last_sent) >= interval))
            .map(|(id, w)| (*id, w.next.saturating_sub(1)))
            .collect();
        for (id, revision) in due {
            self.send(Ok(pb::WatchResponse { progress: true, ..self.response(id, revision) })).await?;
            if let Some(w) = self.watchers.get_mut(&id) {
                w.last_sent = now;
            }
        }
        Ok(())
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), ()> {
        let selector = match validate::selector(c.range.as_ref()) {
            Ok(s) => s,
            Err(e) => return self.fail(Error::InvalidArgument(format!("watch: {e}"))).await,
        };
        // The caller was authenticated when the stream opened; each watch needs read permission.
        if let Err(e) = self.api.auth.require(&self.caller, PermType::Read, &selector).await {
            return self.fail(e).await;
        }
        if self.watchers.len() >= self.api.limits.watch.max_watches_per_stream {
            let msg = format!("this stream already has {} watches, the limit", self.watchers.len());
            return self.fail(Error::LimitExceeded(msg)).await;
        }
        let id = if c.watch_id != 0 {
            if c.watch_id < 0 || self.watchers.contains_key(&c.watch_id) {
                let msg = format!("watch id {} is negative or already in use on this stream", c.watch_id);
                return self.fail(Error::InvalidArgument(msg)).await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let current = self.api.applied_revision();
        let next = if c.start_revision == 0 { current + 1 } else { c.start_revision };
        let watcher = Watcher {
            selector,
            next,
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            last_sent: Instant::now(),
            _active: crate::ops::metrics::watcher_opened(),
        };
        self.watchers.insert(id, watcher);
        self.send(Ok(pb::WatchResponse { created: true, ..self.response(id, current) })).await?;
        self.api.feed.catch_up(&self.api.node, current);
        self.deliver(id, &self.api.header(0)).await
    }

    async fn handle(&mut self, req: pb::WatchRequest) -> Result<(), ()> {
        use pb::watch_request::Request as R;
        match req.request {
            Some(R::Create(c)) => self.create(c).await,
            Some(R::Cancel(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let revision = self.api.applied_revision();
                    let reason = "canceled by the client".to_owned();
                    self.send(Ok(pb::WatchResponse {
                        canceled: true,
                        cancel_reason: reason,
                        ..self.response(c.watch_id, revision)
                    }))
                    .await
                } else {
                    Ok(())
                }
            }
            Some(R::Progress(_)) => self.progress(false).await,
            None => self.fail(Error::InvalidArgument("empty watch request".into())).await,
        }
    }

    /// Ends the stream because this node has lost its leader (its history stopped moving).
    async fn leader_lost(&mut self) -> Result<(), ()> {
        let msg = format!(
            "node {} has had no leader for a while: its changes stopped; reconnect to another member and resume",
            self.api.node.node_id()
        );
        self.fail(Error::unavailable(UnavailableReason::Unreachable, msg)).await
    }

    /// Re-checks the stream's authorization ([`guard`]). When the identity ended, ends the
    /// stream with the refusal (`UNAUTHENTICATED`); when one watch's range is no longer
    /// readable, ends that watch with a canceled response (its id, the refusal as reason), then
    /// the stream with `PERMISSION_DENIED`, as a refused create does: the client re-creates its
    /// other watches, each from its own position.
    async fn authorized(&mut self) -> Result<(), ()> {
        let Some(guard) = self.guard.as_mut() else { return Ok(()) };
        let watches = self.watchers.iter().map(|(id, w)| (*id, &w.selector));
        match guard.check(&self.api.auth, watches) {
            Ok(()) => Ok(()),
            Err(Ended::Identity(e)) => self.fail(e).await,
            Err(Ended::Watch(id, e)) => {
                self.watchers.remove(&id);
                let revision = self.api.applied_revision();
                let cancel_reason = e.to_string();
                self.send(Ok(pb::WatchResponse { canceled: true, cancel_reason, ..self.response(id, revision) }))
                    .await?;
                self.fail(e).await
            }
        }
    }

    /// Ends the stream with `e`.
    async fn fail(&self, e: Error) -> Result<(), ()> {
        self.send(Err(e.into())).await.and(Err(()))
    }

    async fn run(mut self, mut incoming: Streaming<pb::WatchRequest>) {
        let mut leader_lost = self.api.node.leader_lost();
        if *leader_lost.borrow_and_update() {
            let _ = self.leader_lost().await;
            return;
        }
        let mut applied = self.api.node.subscribe_applied();
        let mut tick = tokio::time::interval(self.api.limits.watch.progress_interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => self.handle(req).await,
                    Ok(None) | Err(_) => Err(()),
                },
                changed = applied.changed() => match changed {
                    Ok(()) => self.deliver_all().await,
                    Err(_) => Err(()),
                },
                _ = tick.tick() => self.progress(true).await,
                _ = expiry(self.guard.as_ref().and_then(Guard::deadline)) => self.authorized().await,
                changed = leader_lost.changed() => match changed {
                    Ok(()) if *leader_lost.borrow_and_update() => self.leader_lost().await,
                    Ok(()) => Ok(()),
                    Err(_) => Err(()),
                },
                _ = self.out.closed() => Err(()),
            };
            if step.is_err() {
                return;
            }
        }
    }
}

/// Completes at `deadline`; never without one.
async fn expiry(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[tonic::async_trait]
impl Watch for Api {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let identity = self.identity(&req).await?;
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        let caller = identity.caller.clone();
        let guard = Guard::new(identity);
        let task = StreamTask { api: self.clone(), caller, guard, out, watchers: BTreeMap::new(), next_id: 1 };
        tokio::spawn(task.run(req.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
