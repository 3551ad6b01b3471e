//! ZooKeeper's client protocol (jute over TCP, ZooKeeper 3.5-3.9 clients) served from the same
//! replicated state machine: `--zk-addr` on every member. Like the gRPC services, this front
//! end talks only to the [`Node`] facade: writes are proposed as `Command::Zk`, reads are
//! served from this member's applied state (never older than what the session has seen),
//! watches fire from committed history (`subscribe_applied`).
//!
//! Modules: `codec` (jute records), `session` (handshake), `conn` (one task per TCP
//! connection, requests answered in order), `handlers` (one arm per opcode), `requests`
//! (request decoding, reply encoding), `multi` (multi, multiRead, setWatches), `watches`,
//! `four_letter` (`ruok`, `srvr`, ... on the same port). The znode mapping and `Stat` rules are
//! in `state_machine::znodes`.

pub mod codec;
mod config_node;
mod conn;
mod digest;
mod four_letter;
mod handlers;
mod multi;
mod paths;
pub mod reaper;
mod requests;
pub mod session;
pub mod watches;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use crate::listener::Incoming;
use crate::node::Node;

/// The ZooKeeper server version this front end answers as (`envi`, `srvr`).
pub const ZK_VERSION: &str = "3.9.2-conclave";

/// Session timeout rules.
#[derive(Clone, Debug)]
pub struct ZkSettings {
    /// ZooKeeper's `tickTime`, ms: timeouts are negotiated into [2, 20] ticks.
    pub tick_ms: u64,
    /// Conclave's shortest session TTL (outlives a leader change); raises the minimum.
    pub min_session_ttl_ms: u64,
    /// `--zk-super-digest`: the digest identity (`super:BASE64`) that bypasses every ACL.
    pub super_digest: Option<String>,
    /// `--zk-max-response-bytes`: the largest reply this member sends (jute.maxbuffer).
    pub max_response_bytes: usize,
}

impl ZkSettings {
    /// The timeout granted for a requested one.
    pub fn negotiate(&self, requested_ms: i32) -> u64 {
        let min = (2 * self.tick_ms).max(self.min_session_ttl_ms);
        let max = (20 * self.tick_ms).max(min);
        (requested_ms.max(0) as u64).clamp(min, max)
    }
}

/// One connection as the four-letter words report it.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// Client address.
    pub peer: String,
    /// Its session (0 before the handshake).
    pub session_id: u64,
    /// Requests received.
    pub received: u64,
    /// Replies and events sent.
    pub sent: u64,
    /// Watched paths.
    pub watched: Vec<String>,
}

/// What every connection shares.
pub struct ZkContext {
    node: Arc<Node>,
    settings: ZkSettings,
    next_conn: AtomicU64,
    conns: Mutex<BTreeMap<u64, ConnInfo>>,
}

impl ZkContext {
    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ConnInfo>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves the ZooKeeper protocol on the connections of `incoming` (plain TCP, or TLS with the
/// client port's options: `crate::listener`) until `stop` resolves; each connection is one
/// task, ended with the listener.
pub async fn serve(
    mut incoming: Incoming,
    node: Arc<Node>,
    settings: ZkSettings,
    stop: impl std::future::Future<Output = ()>,
) {
    let ctx = Arc::new(ZkContext { node, settings, next_conn: AtomicU64::new(1), conns: Mutex::default() });
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    let Ok(peer) = stream.tcp().peer_addr() else { continue };
                    let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(conn::run(stream, peer, id, ctx.clone()));
                }
                Some(Err(e)) => tracing::warn!("zookeeper listener: accept failed: {e}"),
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}

/// The address other members and clients reach this member's ZooKeeper listener at: `zk_addr`
/// itself, or, when it binds every interface (`0.0.0.0`, `::`), the advertised client host with
/// the ZooKeeper port.
pub fn advertised_addr(zk_addr: SocketAddr, advertise_client_addr: &str) -> String {
    if !zk_addr.ip().is_unspecified() {
        return zk_addr.to_string();
    }
    let host = advertise_client_addr.rsplit_once(':').map_or(advertise_client_addr, |(h, _)| h);
    format!("{host}:{}", zk_addr.port())
}
