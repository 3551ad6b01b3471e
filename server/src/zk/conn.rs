//! One task per TCP connection. The first four bytes decide between a four-letter word and the
//! session handshake. Then requests are answered strictly in the order they arrive (clients
//! pipeline them), and watch events are written from committed history: before any reply at
//! revision R, every event up to R is sent, so a client sees an event before the data that
//! follows it. The connection ends when the client goes silent for its session timeout, when
//! its session ends, on a malformed frame, or when the cluster cannot serve it (the client then
//! reconnects, possibly to another member).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conclave_proto::zookeeper::{event, xid};
use conclave_tls::MaybeTlsStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::codec::{batchable, frame, ConnectRequest, Writer, MAX_FRAME};
use super::paths::CONFIG_NODE;
use super::session::{self, Connected};
use super::watches::{ChangeKind, Watches};
use super::{four_letter, ConnInfo, ZkContext};
use crate::state_machine::znodes::path_of;

/// Most pipelined writes proposed in one log entry.
const MAX_BATCH: usize = 64;

/// A connection after its handshake.
pub(super) struct Conn {
    pub(super) ctx: Arc<ZkContext>,
    pub(super) id: u64,
    pub(super) session_id: u64,
    /// This connection's owner token (`Command::ZkAttach`).
    pub(super) owner: u64,
    pub(super) timeout: Duration,
    /// Highest zxid sent to the client: reads are never served older than this.
    pub(super) last_zxid: u64,
    /// Events are sent up to this revision.
    pub(super) delivered: u64,
    pub(super) watches: Watches,
    /// Identities added with `auth` (scheme, id), reported by `whoAmI`.
    pub(super) auth: Vec<(String, String)>,
    pub(super) peer: SocketAddr,
    writer: BufWriter<WriteHalf<MaybeTlsStream>>,
    received: u64,
    sent: u64,
}

/// Runs one connection to its end.
pub(super) async fn run(stream: MaybeTlsStream, peer: SocketAddr, id: u64, ctx: Arc<ZkContext>) {
    ctx.conns().insert(id, ConnInfo { peer: peer.to_string(), ..ConnInfo::default() });
    if let Err(e) = serve(stream, peer, id, ctx.clone()).await {
        tracing::debug!(%peer, "zookeeper connection ended: {e}");
    }
    ctx.conns().remove(&id);
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin), len: i32) -> std::io::Result<Vec<u8>> {
    if len < 0 || len as usize > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame length {len} is outside 0..={MAX_FRAME} (jute.maxbuffer)")));
    }
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve(mut stream: MaybeTlsStream, peer: SocketAddr, id: u64, ctx: Arc<ZkContext>) -> std::io::Result<()> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if let Some(answer) = four_letter::answer(&head, &ctx) {
        stream.write_all(answer.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let buf = read_frame(&mut stream, i32::from_be_bytes(head)).await?;
    let req = ConnectRequest::decode(&buf).map_err(std::io::Error::other)?;
    let (resp, owner) = match session::connect(&ctx, &req).await {
        Connected::Attached(resp, owner) => (resp, owner),
        Connected::Expired(resp) => {
            stream.write_all(&frame(&resp.encode())).await?;
            return stream.shutdown().await;
        }
        Connected::Refused(why) => return Err(std::io::Error::other(format!("connect refused: {why}"))),
    };
    stream.write_all(&frame(&resp.encode())).await?;
    let session_id = resp.session_id as u64;
    if let Some(info) = ctx.conns().get_mut(&id) {
        info.session_id = session_id;
    }
    let (mut rd, wr) = tokio::io::split(stream);
    // The reader runs apart so a half-read frame is never cancelled; it ends with the socket
    // or when the connection drops the receiver.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(64);
    // When the last frame arrived (ms since `started`), seen even while a request is handled.
    let started = Instant::now();
    let last_frame = Arc::new(AtomicU64::new(0));
    let heard = last_frame.clone();
    let reader = tokio::spawn(async move {
        loop {
            let frame = async {
                let len = rd.read_i32().await?;
                read_frame(&mut rd, len).await
            }
            .await;
            heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            let failed = frame.is_err();
            if tx.send(frame).await.is_err() || failed {
                return;
            }
        }
    });
    let applied = ctx.node.subscribe_applied().borrow().revision;
    let mut conn = Conn {
        ctx,
        id,
        session_id,
        owner,
        timeout: Duration::from_millis(resp.timeout_ms as u64),
        last_zxid: applied.max(req.last_zxid_seen.max(0) as u64),
        delivered: applied,
        watches: Watches::default(),
        auth: Vec::new(),
        peer,
        writer: BufWriter::new(wr),
        received: 0,
        sent: 0,
    };
    let result = conn.run(&mut rx, started, &last_frame).await;
    reader.abort();
    result
}

impl Conn {
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<std::io::Result<Vec<u8>>>,
        started: Instant,
        last_frame: &AtomicU64,
    ) -> std::io::Result<()> {
        let mut applied = self.ctx.node.subscribe_applied();
        let mut ticker = tokio::time::interval((self.timeout / 3).max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut session_seen = false;
        let (renew_tx, mut renew_rx) = mpsc::channel::<bool>(1);
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    let frame = frame?;
                    self.received += 1;
                    // Writes the client pipelined behind this one share its log entry.
                    let mut frames = vec![frame];
                    let mut after = None;
                    while batchable(&frames[0]) && frames.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Ok(f)) if batchable(&f) => frames.push(f),
                            Ok(other) => {
                                after = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.received += frames.len() as u64 - 1;
                    // A moved session's first frame is answered SESSIONMOVED by `handle`.
                    let go_on = if frames.len() > 1 && !self.moved() {
                        self.handle_writes(&frames).await?;
                        true
                    } else {
                        self.handle(&frames[0]).await?
                    };
                    let go_on = match after {
                        Some(frame) if go_on => {
                            self.received += 1;
                            self.handle(&frame?).await?
                        }
                        _ => go_on,
                    };
                    if !go_on {
                        self.writer.flush().await?;
                        return Ok(());
                    }
                }
                changed = applied.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let revision = applied.borrow_and_update().revision;
                    self.deliver(revision).await?;
                    self.deliver_config().await?;
                    // A member that has not applied a new session's creation yet (it was
                    // proposed through the leader) must not take it for ended: only a session
                    // seen here and then gone has ended.
                    let (live, owner) = self
                        .ctx
                        .node
                        .view(|sm| (sm.sessions().get(self.session_id).is_some(), sm.znodes().owner(self.session_id)))
                        .unwrap_or((false, self.owner));
                    if live && owner != self.owner {
                        return Err(std::io::Error::other("the session moved to another connection"));
                    }
                    if live {
                        session_seen = true;
                    } else if session_seen {
                        return Err(std::io::Error::other("the session ended"));
                    }
                }
                _ = ticker.tick() => {
                    let silent = started.elapsed().saturating_sub(Duration::from_millis(last_frame.load(Ordering::Relaxed)));
                    if silent > self.timeout {
                        return Err(std::io::Error::other("no request or ping within the session timeout"));
                    }
                    // Every member keeps its clients' sessions alive on the leader, reads included.
                    let (node, id, tx) = (self.ctx.node.clone(), self.session_id, renew_tx.clone());
                    tokio::spawn(async move {
                        if let Ok(times) = node.session_times(&[id], true).await {
                            let _ = tx.try_send(times.first().is_some_and(|t| t.alive));
                        }
                    });
                }
                Some(alive) = renew_rx.recv() => {
                    if !alive {
                        return Err(std::io::Error::other("the session expired"));
                    }
                }
            }
            self.writer.flush().await?;
            self.report();
        }
    }

    /// Fires the `/zookeeper/config` watch once the ensemble's description differs from what
    /// the client was shown (a member added, removed, promoted, or its ZooKeeper address
    /// registered). Checked on every applied change only: each of those is an applied entry
    /// (membership entries included), and one applied between the client's read and its watch
    /// being set is still pending on the connection's receiver. Costs nothing without that watch.
    async fn deliver_config(&mut self) -> std::io::Result<()> {
        if self.watches.config.is_none() {
            return Ok(());
        }
        let (now, _) = self.config_node().map_err(|_| std::io::Error::other("cannot read /zookeeper/config"))?;
        if self.watches.config_changed(&now) {
            let zxid = self.delivered.max(self.last_zxid);
            self.send_event(zxid, event::NODE_DATA_CHANGED, CONFIG_NODE).await?;
        }
        Ok(())
    }

    fn report(&self) {
        if let Some(info) = self.ctx.conns().get_mut(&self.id) {
            info.received = self.received;
            info.sent = self.sent;
            info.watched = self.watches.paths().map(str::to_string).collect();
        }
    }

    /// Writes one reply (or event) record as a frame.
    pub(super) async fn send(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.sent += 1;
        self.writer.write_all(&frame(record)).await
    }

    /// Sends the events of every committed change up to `revision` that this connection's
    /// watches select. If that history was compacted away, the connection is closed: the
    /// client reconnects and re-sends its watches (`setWatches`), replayed from state.
    pub(super) async fn deliver(&mut self, revision: u64) -> std::io::Result<()> {
        if revision <= self.delivered {
            return Ok(());
        }
        let from = self.delivered + 1;
        self.delivered = revision;
        if self.watches.is_empty() {
            return Ok(());
        }
        let watches = &mut self.watches;
        let events = self.ctx.node.view(|sm| {
            if from < sm.compact_revision() {
                return None;
            }
            let mut out = Vec::new();
            for rev in sm.kv().changed_revisions_from(from).take_while(|r| *r <= revision).collect::<Vec<_>>() {
                for change in sm.kv().changes_matching(rev, |k| path_of(k).is_some()) {
                    let key =
                        change.current.as_ref().or(change.prev.as_ref()).map(|kv| kv.key.clone()).unwrap_or_default();
                    let Some(path) = path_of(&key) else { continue };
                    let kind = match (&change.prev, &change.current) {
                        (None, _) => ChangeKind::Created,
                        (Some(_), None) => ChangeKind::Deleted,
                        (Some(_), Some(_)) => ChangeKind::DataChanged,
                    };
                    let mut fired = Vec::new();
                    watches.fire(path, kind, &mut fired);
                    out.extend(fired.into_iter().map(|e| (rev, e)));
                }
            }
            Some(out)
        });
        let Some(events) = events.map_err(std::io::Error::other)? else {
            return Err(std::io::Error::other("watch history compacted past this connection"));
        };
        for (rev, (kind, path)) in events {
            self.send_event(rev, kind, &path).await?;
        }
        Ok(())
    }

    /// Writes one watch notification.
    pub(super) async fn send_event(&mut self, zxid: u64, kind: i32, path: &str) -> std::io::Result<()> {
        let mut w = Writer::default();
        w.reply_header(xid::NOTIFICATION, zxid as i64, 0).int(kind).int(event::STATE_SYNC_CONNECTED).string(path);
        self.send(&w.into_inner()).await
    }
}
