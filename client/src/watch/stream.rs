//! One shared watch stream: a task that carries a set of a client's watches over one gRPC
//! stream to its home member, routes each response to its watch by id, and, when the stream
//! breaks, reconnects (to another member if needed) and re-creates every watch from its own
//! last delivered revision + 1. Responses of a revision before a watch's next one are dropped,
//! so each watch sees every change once, in order, whichever member serves it.
//!
//! A refused create ends the gRPC stream (the server's rule) but not the other watches: the
//! refused watch is the first create not yet answered; an invalid one gets the error, and
//! over the member's `LIMIT_EXCEEDED` the unanswered ones move to another stream.
//!
//! Under `--auth` the member re-checks a live stream: when its caller may no longer read a
//! watch's range, it cancels that watch (a canceled response the client did not ask for) and
//! ends the stream with `PERMISSION_DENIED`, which goes to that watch only; the others resume.
//! When the stream's token expires (or the user's password or roles changed), the member ends
//! the stream with `UNAUTHENTICATED`: the client authenticates again and resumes every watch
//! from its last delivered revision + 1, so nothing is lost or repeated; only a refusal of the
//! credentials themselves ends the watches, with that error.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conclave_proto::errors::{reason_of, Reason};
use conclave_proto::v1 as pb;
use conclave_proto::v1::watch_client::WatchClient;
use pb::watch_request::Request;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::{start_revision, Command, WatchEvent, WatchState};
use crate::connection::{Connection, Renewal};
use crate::Error;

const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How one gRPC stream ended.
enum End {
    /// Every handle is gone: the task ends.
    Closed,
    /// No watches left: wait for the next one.
    Idle,
    /// Reconnect at once (a refused create was dealt with).
    Reconnect,
    /// Reconnect after a backoff (the stream broke).
    Retry(String),
}

type Requests = mpsc::UnboundedSender<pb::WatchRequest>;

/// Places a watch this stream cannot keep on another of the client's streams; gives it back
/// when the client is gone.
pub(super) type Elsewhere = Box<dyn Fn(WatchState) -> Result<(), WatchState> + Send + Sync>;

/// How full one stream is; shared by the hub (which places) and the stream (which removes).
pub(super) struct Load {
    watches: AtomicUsize,
    limit: AtomicUsize,
}

impl Load {
    /// Holding its first watch, at most `limit` (at least 1).
    pub(super) fn one_watch(limit: usize) -> Self {
        Self { watches: AtomicUsize::new(1), limit: AtomicUsize::new(limit.max(1)) }
    }

    /// One watch fewer.
    pub(super) fn release(&self) {
        self.watches.fetch_sub(1, Ordering::Relaxed);
    }

    /// The member serving the stream accepts at most `limit` watches on it.
    pub(super) fn limit_to(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// Counts one more watch if there is room.
    pub(super) fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.watches.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).is_ok()
    }
}

struct Stream {
    conn: Arc<Connection>,
    elsewhere: Elsewhere,
    load: Arc<Load>,
    watches: BTreeMap<i64, WatchState>,
    /// Ids of watches asking for a progress notification (a progress request answers every
    /// watch of the stream; the others do not get it unless they asked for idle ones).
    progress_wanted: std::collections::BTreeSet<i64>,
    /// The watch the member canceled on its own on the current gRPC stream: the status that
    /// ends the stream next is its refusal.
    ended_by_member: Option<i64>,
}

/// Runs one shared stream until every handle to it is gone.
pub(super) async fn run(
    conn: Arc<Connection>,
    elsewhere: Elsewhere,
    mut commands: mpsc::UnboundedReceiver<Command>,
    load: Arc<Load>,
) {
    let mut s = Stream {
        conn,
        elsewhere,
        load,
        watches: BTreeMap::new(),
        progress_wanted: Default::default(),
        ended_by_member: None,
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        if s.watches.is_empty() {
            match commands.recv().await {
                None => return,
                Some(c) => s.command(c, None),
            }
            continue;
        }
        match s.stream_once(&mut commands, &mut backoff).await {
            End::Closed => return,
            End::Idle | End::Reconnect => {}
            End::Retry(why) => {
                tracing::debug!("watch stream broke ({why}); resuming {} watches", s.watches.len());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn create(w: &WatchState, seen: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        request: Some(Request::Create(pb::WatchCreateRequest {
            range: Some(w.range.clone()),
            start_revision: start_revision(w.next, seen),
            prev_kv: w.opts.prev_kv,
            progress_notify: w.opts.progress_notify,
            watch_id: w.id,
        })),
    }
}

impl Stream {
    fn remove(&mut self, id: i64) -> Option<WatchState> {
        let w = self.watches.remove(&id)?;
        self.progress_wanted.remove(&id);
        self.load.release();
        Some(w)
    }

    /// Applies a watcher's command; with a live gRPC stream, sends what the server must know
    /// (`pending`: creates sent and not answered yet).
    fn command(&mut self, c: Command, live: Option<(&Requests, &mut VecDeque<i64>)>) {
        match c {
            Command::Add(w) if w.tx.is_closed() => self.load.release(),
            Command::Add(w) => {
                if let Some((requests, pending)) = live {
                    let _ = requests.send(create(&w, self.conn.seen_revision()));
                    pending.push_back(w.id);
                }
                self.watches.insert(w.id, w);
            }
            Command::Cancel(id) => {
                if let (Some(_), Some((requests, _))) = (self.remove(id), live) {
                    let cancel = pb::WatchCancelRequest { watch_id: id };
                    let _ = requests.send(pb::WatchRequest { request: Some(Request::Cancel(cancel)) });
                }
            }
            Command::Progress(id) => {
                if let (true, Some((requests, _))) = (self.watches.contains_key(&id), live) {
                    self.progress_wanted.insert(id);
                    let _ = requests.send(pb::WatchRequest { request: Some(Request::Progress(Default::default())) });
                }
            }
        }
    }

    async fn stream_once(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>, backoff: &mut Duration) -> End {
        let (addr, channel) = match self.conn.pick_home() {
            Ok(p) => p,
            Err(e) => return self.fail_all(e).await,
        };
        let (requests, rx) = mpsc::unbounded_channel();
        let mut pending = VecDeque::new();
        self.ended_by_member = None;
        let seen = self.conn.seen_revision();
        for w in self.watches.values() {
            let _ = requests.send(create(w, seen));
            pending.push_back(w.id);
        }
        // A progress asked for before this stream existed is asked again on it.
        if !self.progress_wanted.is_empty() {
            let _ = requests.send(pb::WatchRequest { request: Some(Request::Progress(Default::default())) });
        }
        let requests_stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let stale = self.conn.token();
        let mut stream = match WatchClient::new(channel.clone()).watch(requests_stream).await {
            Ok(s) => s.into_inner(),
            // Under `--auth`, a refused or expired token is renewed once before failing over;
            // bad credentials end every watch of the stream.
            Err(s) => {
                return match self.conn.renew_token(channel, &s, stale).await {
                    Ok(Renewal::Renewed) => End::Retry(s.to_string()),
                    Err(e) => self.fail_all(e).await,
                    Ok(Renewal::NotCurable) if s.code() == Code::Unauthenticated => {
                        self.fail_all(Error::from_status(&s)).await
                    }
                    Ok(Renewal::NotCurable) => {
                        self.conn.fail_over(&addr, None);
                        End::Retry(s.to_string())
                    }
                    Ok(Renewal::Failed(f)) => {
                        self.conn.fail_over(&addr, None);
                        End::Retry(f.to_string())
                    }
                };
            }
        };
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    None => return End::Closed,
                    Some(c) => {
                        self.command(c, Some((&requests, &mut pending)));
                        if self.watches.is_empty() {
                            return End::Idle;
                        }
                    }
                },
                m = stream.message() => match m {
                    Ok(Some(resp)) => {
                        *backoff = MIN_BACKOFF;
                        self.response(resp, &requests, &mut pending).await;
                        if self.watches.is_empty() {
                            return End::Idle;
                        }
                    }
                    Ok(None) => {
                        self.conn.fail_over(&addr, None);
                        return End::Retry("stream closed".into());
                    }
                    Err(s) if matches!(s.code(), Code::InvalidArgument | Code::ResourceExhausted | Code::PermissionDenied) => {
                        return self.refused(&s, &pending).await;
                    }
                    // The stream's identity ended (its token expired, say): authenticate again
                    // and resume every watch at once, on the same member.
                    Err(s) if s.code() == Code::Unauthenticated => {
                        return match self.conn.renew_token(channel, &s, stale).await {
                            Ok(Renewal::Renewed) => End::Reconnect,
                            Ok(Renewal::NotCurable) => self.fail_all(Error::from_status(&s)).await,
                            Ok(Renewal::Failed(f)) => {
                                self.conn.fail_over(&addr, None);
                                End::Retry(f.to_string())
                            }
                            Err(e) => self.fail_all(e).await,
                        };
                    }
                    Err(s) => {
                        self.conn.fail_over(&addr, None);
                        return End::Retry(s.to_string());
                    }
                },
            }
        }
    }

    /// Ends every watch of this stream with `e`.
    async fn fail_all(&mut self, e: Error) -> End {
        for (_, w) in std::mem::take(&mut self.watches) {
            self.load.release();
            let _ = w.tx.send(Err(e.clone())).await;
        }
        End::Idle
    }

    /// Routes one response to its watch.
    async fn response(&mut self, resp: pb::WatchResponse, requests: &Requests, pending: &mut VecDeque<i64>) {
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let id = resp.watch_id;
        if resp.created {
            if pending.front() == Some(&id) {
                pending.pop_front();
            } else {
                pending.retain(|p| *p != id);
            }
        }
        let Some(w) = self.watches.get_mut(&id) else {
            return; // canceled meanwhile
        };
        let event = if resp.created {
            if w.next == 0 {
                w.next = revision + 1;
            }
            return;
        } else if resp.canceled {
            if resp.compact_revision > 0 {
                if let Some(w) = self.remove(id) {
                    let _ = w.tx.send(Ok(WatchEvent::Compacted { oldest: resp.compact_revision })).await;
                }
            } else {
                // Not ours (ours removed the watch already): the member ended it, and says why
                // in the status that ends the stream.
                self.ended_by_member = Some(id);
            }
            return;
        } else if resp.progress {
            if !self.progress_wanted.remove(&id) && !w.opts.progress_notify {
                return;
            }
            WatchEvent::Progress { revision }
        } else if !resp.events.is_empty() {
            if revision < w.next {
                return; // never deliver a revision twice
            }
            w.next = revision + 1;
            WatchEvent::Changes { revision, events: resp.events }
        } else {
            return;
        };
        if w.tx.send(Ok(event)).await.is_err() {
            self.command(Command::Cancel(id), Some((requests, pending)));
        }
    }

    /// The member refused a create (the first one not answered yet), or a watch it canceled on
    /// its own, and ended the stream.
    async fn refused(&mut self, s: &Status, pending: &VecDeque<i64>) -> End {
        let unanswered: Vec<i64> = pending.iter().copied().filter(|id| self.watches.contains_key(id)).collect();
        let accepted = self.watches.len() - unanswered.len();
        if reason_of(s) == Some(Reason::LimitExceeded) && accepted > 0 {
            // The member's limit: keep what it accepted, place the rest on other streams.
            self.load.limit_to(accepted);
            for id in unanswered {
                if let Some(w) = self.remove(id) {
                    if let Err(w) = (self.elsewhere)(w) {
                        drop(w.tx.send(Err(Error::from_status(s))).await);
                    }
                }
            }
            return End::Reconnect;
        }
        let refused = match self.ended_by_member.take().or(pending.front().copied()) {
            Some(id) => vec![id],
            None => self.watches.keys().copied().collect(),
        };
        for id in refused {
            if let Some(w) = self.remove(id) {
                let _ = w.tx.send(Err(Error::from_status(s))).await;
            }
        }
        if self.watches.is_empty() {
            End::Idle
        } else {
            End::Reconnect
        }
    }
}
