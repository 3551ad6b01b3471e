//! The calling end of the framed peer wire ([`super::wire`]): one connection per peer address,
//! calls multiplexed on it by id.
//!
//! - A call's frame is queued for the connection's writer task, which writes whatever is queued
//!   in one `write`; a reader task hands each answer to its caller. A caller that gives up (its
//!   timeout, openraft cancelling it) only removes its entry: frames are never cut short.
//! - Keep-alive: once a frame has been sent and nothing read since for [`KeepAlive::interval`],
//!   the connection sends a ping (also while calls wait on a quiet connection); after
//!   [`KeepAlive::timeout`] without reading anything it is closed, as the HTTP/2 channel's pings
//!   do (a peer cut off by a partition or frozen by SIGSTOP). This holds even when every caller
//!   gives up sooner (openraft's heartbeats do, every 50 ms): otherwise a connection through a
//!   healed partition could wait for TCP's backed-off retransmission for many seconds.
//! - Failures: a connection that cannot be made fails the call with `UNAVAILABLE` and outcome
//!   `NOT_APPLIED` (nothing was sent); one lost with calls in flight fails them with
//!   `UNAVAILABLE` (outcome unknown: the peer may have acted). Either way the channel stops
//!   using the wire ([`WireChannel::supported`] is false) until the peer advertises it again in
//!   a gRPC reply, so a peer that went back to an older build is reached over gRPC.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use conclave_proto::internal::v1::RaftMessage;
use tokio::io::{AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::wire::{self, Header, Method};
use conclave_tls::MaybeTlsStream;

/// When an idle-but-waiting connection pings, and when it gives up.
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    /// Nothing read for this long while calls wait: send a ping.
    pub interval: Duration,
    /// Nothing read for this long while calls wait: close the connection.
    pub timeout: Duration,
}

impl Default for KeepAlive {
    /// The peer HTTP/2 channel's: a ping after 1 s, closed after 3 s.
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), timeout: Duration::from_secs(3) }
    }
}

/// Frames queued per connection before callers wait.
const QUEUE: usize = 4096;
/// Most bytes the writer gathers into one write.
const WRITE_GATHER: usize = 1 << 20;
/// How long connecting (resolve and TCP) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

type Answer = Result<tonic::Response<RaftMessage>, Status>;

/// A framed-wire channel to one peer address. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct WireChannel {
    shared: Arc<Shared>,
}

struct Shared {
    addr: String,
    local_ip: Option<IpAddr>,
    keep_alive: KeepAlive,
    /// The peer advertised the wire and no connection to it has failed since.
    supported: AtomicBool,
    conn: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
}

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` when a frame was last read.
    heard_ms: AtomicU64,
    /// Milliseconds after `started` (plus one) when the first frame expecting an answer was
    /// sent since the last frame read; 0: none.
    expect_ms: AtomicU64,
}

impl WireChannel {
    /// A channel to `addr` (`host:port`) whose connections originate from `local_ip`; nothing
    /// is connected until the first call, and calls are made only once [`Self::mark_supported`].
    pub fn new(addr: &str, local_ip: Option<IpAddr>, keep_alive: KeepAlive) -> Self {
        let shared = Shared {
            addr: addr.strip_prefix("http://").unwrap_or(addr).to_owned(),
            local_ip,
            keep_alive,
            supported: AtomicBool::new(false),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Whether calls should go over this wire (the peer advertised it, nothing failed since).
    pub fn supported(&self) -> bool {
        self.shared.supported.load(Ordering::Relaxed)
    }

    /// The peer advertised the wire.
    pub fn mark_supported(&self) {
        self.shared.supported.store(true, Ordering::Relaxed);
    }

    /// One call.
    ///
    /// # Errors
    /// The peer's status for the call, or `UNAVAILABLE` when the connection could not be made
    /// (outcome `NOT_APPLIED`) or was lost before the answer (outcome unknown).
    pub async fn unary(&self, method: Method, request: tonic::Request<RaftMessage>) -> Answer {
        let conn = self.conn().await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (metadata, _, msg) = request.into_parts();
        let header = Header::Request { id, method, metadata: wire::from_metadata(&metadata), format: msg.format };
        let bytes = wire::frame(&header, &msg.payload).map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        let _forget = Forget { conn: &conn, id };
        conn.expect();
        if conn.tx.send(bytes).await.is_err() || conn.closed.load(Ordering::Relaxed) {
            return Err(self.lost("the connection closed before the call was answered"));
        }
        match rx.await {
            Ok(answer) => answer,
            Err(_) => Err(self.lost("the connection closed before the call was answered")),
        }
    }

    fn lost(&self, why: &str) -> Status {
        Status::unavailable(format!("peer wire to {}: {why}", self.shared.addr))
    }

    /// The live connection, connecting first if there is none.
    async fn conn(&self) -> Result<Arc<Conn>, Status> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _one = self.shared.connecting.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.not_connected(&e)),
            Err(_) => return Err(self.not_connected(&format!("no connection within {CONNECT_TIMEOUT:?}"))),
        };
        *self.shared.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    fn not_connected(&self, e: &dyn std::fmt::Display) -> Status {
        self.shared.supported.store(false, Ordering::Relaxed);
        conclave_proto::errors::status(
            tonic::Code::Unavailable,
            format!("peer wire: connect to {}: {e}", self.shared.addr),
            conclave_proto::errors::Reason::Unavailable,
            conclave_proto::errors::Outcome::NotApplied,
        )
    }

    fn live(&self) -> Option<Arc<Conn>> {
        let conn = self.shared.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_ref().filter(|c| !c.closed.load(Ordering::Relaxed)).cloned()
    }

    async fn connect(&self) -> std::io::Result<Arc<Conn>> {
        let target = tokio::net::lookup_host(&self.shared.addr)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
        let host = self.shared.addr.rsplit_once(':').map_or(self.shared.addr.as_str(), |(h, _)| h);
        let mut stream = conclave_tls::dial(target, host, self.shared.local_ip, None).await?;
        stream.write_all(wire::MAGIC).await?;
        let (read, write) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(QUEUE);
        let conn = Arc::new(Conn {
            tx,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            started: Instant::now(),
            heard_ms: AtomicU64::new(0),
            expect_ms: AtomicU64::new(0),
        });
        let writer = tokio::spawn(write_loop(write, rx));
        let reader = tokio::spawn(read_loop(read, conn.clone()));
        tokio::spawn(watch(self.clone(), conn.clone(), writer, reader));
        Ok(conn)
    }

    /// Ends `conn`: its waiting calls fail, and the next call goes over gRPC.
    fn close(&self, conn: &Conn, why: &str) {
        if conn.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.shared.supported.store(false, Ordering::Relaxed);
        let waiting: Vec<_> = conn.pending.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
        if !waiting.is_empty() {
            tracing::info!(peer = %self.shared.addr, calls = waiting.len(), "peer wire connection ended: {why}");
        }
        for (_, tx) in waiting {
            let _ = tx.send(Err(self.lost(why)));
        }
    }
}

/// Removes a call's entry when its caller is done with it (answered or gone).
struct Forget<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn heard(&self) {
        self.heard_ms.store(self.now_ms(), Ordering::Relaxed);
        self.expect_ms.store(0, Ordering::Relaxed);
    }

    /// A frame that the peer must answer is going out (keeps the earliest such time).
    fn expect(&self) {
        let _ = self.expect_ms.compare_exchange(0, self.now_ms() + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How long an answer has been owed, if one is.
    fn owed_for(&self) -> Option<Duration> {
        match self.expect_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.now_ms().saturating_sub(since - 1))),
        }
    }

    fn silent_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.heard_ms.load(Ordering::Relaxed)))
    }

    fn ping(&self) {
        if let Ok(ping) = wire::frame(&Header::Ping, &[]) {
            if self.tx.try_send(ping).is_ok() {
                self.expect();
            }
        }
    }

    fn waiting(&self) -> bool {
        !self.pending.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

/// Writes queued frames, gathering what is queued into one write. Returns when the queue
/// closes or a write fails.
pub(crate) async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(mut buf) = rx.recv().await {
        while buf.len() < WRITE_GATHER {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        w.write_all(&buf).await?;
    }
    Ok(())
}

/// Hands answers to their callers; returns why the connection ended.
async fn read_loop(r: ReadHalf<MaybeTlsStream>, conn: Arc<Conn>) -> String {
    let mut r = wire::reader(r);
    loop {
        match wire::read_frame(&mut r).await {
            Ok(Some((Header::Response { id, status, metadata, format }, payload))) => {
                conn.heard();
                let answer = match status {
                    Some(s) => Err(wire::to_status(s)),
                    None => {
                        let mut reply = tonic::Response::new(RaftMessage { format, payload });
                        *reply.metadata_mut() = wire::to_metadata(metadata);
                        Ok(reply)
                    }
                };
                let waiter = conn.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                if let Some(tx) = waiter {
                    let _ = tx.send(answer);
                }
            }
            Ok(Some((Header::Pong, _))) => conn.heard(),
            Ok(Some((Header::Request { .. } | Header::Ping, _))) => {
                return "the peer sent a request on a calling connection".into()
            }
            Ok(None) => return "closed by the peer".into(),
            Err(e) => return e.to_string(),
        }
    }
}

/// Ends the connection when its reader or writer ends, or when the peer stays silent while
/// calls wait (see [`KeepAlive`]).
async fn watch(
    channel: WireChannel,
    conn: Arc<Conn>,
    mut writer: tokio::task::JoinHandle<std::io::Result<()>>,
    mut reader: tokio::task::JoinHandle<String>,
) {
    let keep_alive = channel.shared.keep_alive;
    let mut tick = tokio::time::interval(keep_alive.interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            why = &mut reader => break why.unwrap_or_else(|e| format!("reader task: {e}")),
            written = &mut writer => break match written {
                Ok(Ok(())) => "the channel was dropped".to_owned(),
                Ok(Err(e)) => format!("write failed: {e}"),
                Err(e) => format!("writer task: {e}"),
            },
            _ = tick.tick() => match conn.owed_for() {
                Some(owed) if owed >= keep_alive.timeout => {
                    break format!("no answer from the peer for {owed:?} (keep-alive)");
                }
                Some(owed) if owed >= keep_alive.interval => conn.ping(),
                Some(_) => {}
                None if conn.waiting() && conn.silent_for() >= keep_alive.interval => conn.ping(),
                None => {}
            },
        }
    };
    reader.abort();
    writer.abort();
    channel.close(&conn, &why);
}

#[cfg(test)]
mod tests;
