//! Listeners of the client and peer ports: plain TCP, or TLS over TCP (rustls, through
//! `conclave-tls`, whose configuration re-reads its files when they change).
//!
//! With TLS, each accepted connection's handshake runs in its own task, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or hostile client cannot hold up the others; a refused
//! handshake (no or untrusted certificate) is logged with the remote address and the connection
//! dropped before any gRPC is read. TCP_NODELAY on every connection, set here only (tonic's
//! builder setting does not apply to a custom incoming stream, and the ZooKeeper port's
//! connections come from here too; without it Nagle + delayed ACKs add ~40 ms).
//!
//! TCP keep-alive on every accepted connection, of every port: after [`KEEPALIVE_IDLE`] of
//! silence the kernel probes the other end every [`KEEPALIVE_INTERVAL`] and closes the
//! connection after [`KEEPALIVE_RETRIES`] unanswered probes. A client or peer whose machine
//! lost power (no FIN, no RST) is thus let go within about a minute, with its watch streams,
//! ZooKeeper connection or peer-wire connection, instead of holding a task and a descriptor for
//! as long as the member runs. A live but idle connection answers the probes and stays.

mod coalesce;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use conclave_tls::{MaybeTlsStream, ServerTls};
use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub use self::coalesce::Coalesced;

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Silence on an accepted connection before the kernel starts keep-alive probes.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Time between keep-alive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Unanswered keep-alive probes after which the kernel closes the connection.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// The connections a port accepts (the ZooKeeper port serves them as they are; the gRPC servers
/// through [`grpc`]).
pub type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<MaybeTlsStream>> + Send>>;

/// The connections a gRPC server is fed: [`Incoming`]'s, their writes coalesced ([`Coalesced`]).
pub type GrpcIncoming = Pin<Box<dyn Stream<Item = std::io::Result<Coalesced<MaybeTlsStream>>> + Send>>;

/// `incoming`, for a gRPC server: each connection's short writes are sent together ([`Coalesced`]).
pub fn grpc(incoming: Incoming) -> GrpcIncoming {
    Box::pin(incoming.map(|r| r.map(Coalesced::new)))
}

/// Listens on `addr` (`port` names it in logs), with TLS when `tls` is set. Call inside the runtime.
///
/// # Errors
/// When `addr` cannot be bound.
pub fn incoming(addr: SocketAddr, tls: Option<ServerTls>, port: &'static str) -> std::io::Result<Incoming> {
    let listener = bind(addr, port)?;
    let (tx, rx) = mpsc::channel(64);
    match tls {
        Some(tls) => tokio::spawn(accept_loop(listener, tls, tx, port)),
        // While the server is behind (the queue full), accepting waits.
        None => tokio::spawn(async move {
            while let Some((tcp, _)) = accept_one(&listener, &tx, port).await {
                if tx.send(Ok(MaybeTlsStream::Plain(tcp))).await.is_err() {
                    return;
                }
            }
        }),
    };
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// What the peer port does with a connection that opened with the framed peer wire's first byte
/// (`raft::network::wire`): it takes the connection (and its remote address) over.
pub type WireHandler = Arc<dyn Fn(TcpStream, SocketAddr) + Send + Sync>;

/// Like [`incoming`] for the peer port: on a plain port, a connection whose first byte is the
/// framed peer wire's (`C`; HTTP/2's preface starts with `P`) goes to `on_wire` instead of
/// the gRPC server. With TLS every connection is gRPC's.
///
/// # Errors
/// When `addr` cannot be bound.
pub fn incoming_peer(addr: SocketAddr, tls: Option<ServerTls>, on_wire: WireHandler) -> std::io::Result<Incoming> {
    if tls.is_some() {
        return incoming(addr, tls, "peer");
    }
    let listener = bind(addr, "peer")?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(sniff_loop(listener, on_wire, tx));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// Accepts peer connections and tells the framed wire from HTTP/2 by the first byte.
async fn sniff_loop(listener: TcpListener, on_wire: WireHandler, tx: mpsc::Sender<std::io::Result<MaybeTlsStream>>) {
    let closed = tx.clone();
    accept_each(listener, &closed, "peer", move |tcp, remote| {
        let (on_wire, tx) = (on_wire.clone(), tx.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == crate::raft::network::wire::MAGIC[0] => on_wire(tcp, remote),
                Ok(Ok(1)) => {
                    let _ = tx.send(Ok(MaybeTlsStream::Plain(tcp))).await;
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(port = "peer", %remote, "no bytes within {HANDSHAKE_TIMEOUT:?}; closed"),
            }
        });
    })
    .await;
}

/// Accepts connections and hands each to `handle` until the server drops `tx`'s receiver.
async fn accept_each(
    listener: TcpListener,
    tx: &mpsc::Sender<std::io::Result<MaybeTlsStream>>,
    port: &'static str,
    handle: impl Fn(TcpStream, SocketAddr),
) {
    while let Some((tcp, remote)) = accept_one(&listener, tx, port).await {
        handle(tcp, remote);
    }
}

/// The next connection, TCP_NODELAY and keep-alive set ([`keep_alive`]); `None` once the
/// server dropped `tx`'s receiver.
async fn accept_one(
    listener: &TcpListener,
    tx: &mpsc::Sender<std::io::Result<MaybeTlsStream>>,
    port: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = tx.closed() => return None,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    if let Err(e) = keep_alive(&tcp) {
                        tracing::warn!(port, %remote, "cannot turn TCP keep-alive on: {e}");
                    }
                    return Some((tcp, remote));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(port, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Turns keep-alive probes on for `tcp` ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`],
/// [`KEEPALIVE_RETRIES`]).
fn keep_alive(tcp: &TcpStream) -> std::io::Result<()> {
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&probes)
}

/// A listener on `addr` (`port` names it in the error).
fn bind(addr: SocketAddr, port: &'static str) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_error(addr, port, e))?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// A bind failure that names the address and the port it was for (`client`, `peer`,
/// `zookeeper`, `metrics`), e.g. "cannot listen on 127.0.0.1:2379 (client port): Address
/// already in use".
pub fn bind_error(addr: SocketAddr, port: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("cannot listen on {addr} ({port} port): {e}"))
}

/// Accepts until the server drops its end.
async fn accept_loop(
    listener: TcpListener,
    tls: ServerTls,
    tx: mpsc::Sender<std::io::Result<MaybeTlsStream>>,
    port: &'static str,
) {
    let closed = tx.clone();
    accept_each(listener, &closed, port, move |tcp, remote| {
        let (tls, tx) = (tls.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::warn!(port, %remote, "TLS handshake refused: {e}"),
                Err(_) => tracing::warn!(port, %remote, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}"),
            }
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use conclave_tls::MaybeTlsStream;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES};

    /// An address nothing listens on (bound and released).
    fn free_addr() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    /// `tcp` probes a silent other end as the module says.
    fn assert_probes(tcp: &TcpStream) {
        let s = socket2::SockRef::from(tcp);
        assert!(s.keepalive().expect("SO_KEEPALIVE"), "keep-alive is off");
        assert_eq!(s.tcp_keepalive_time().expect("TCP_KEEPIDLE"), KEEPALIVE_IDLE);
        assert_eq!(s.tcp_keepalive_interval().expect("TCP_KEEPINTVL"), KEEPALIVE_INTERVAL);
        assert_eq!(s.tcp_keepalive_retries().expect("TCP_KEEPCNT"), KEEPALIVE_RETRIES);
        assert!(tcp.nodelay().expect("TCP_NODELAY"), "Nagle is on");
    }

    /// A plain port's connections (client and ZooKeeper ports) probe a silent client, so one
    /// whose machine lost power is let go.
    #[tokio::test]
    async fn a_plain_ports_connections_probe_a_silent_client() {
        let addr = free_addr();
        let mut incoming = super::incoming(addr, None, "client").expect("listen");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming.next().await.expect("a connection").expect("accepted");
        let MaybeTlsStream::Plain(tcp) = accepted else { panic!("a plain port gave a TLS stream") };
        assert_probes(&tcp);
    }

    /// The peer port's framed-wire connections probe a silent peer too.
    #[tokio::test]
    async fn peer_wire_connections_probe_a_silent_peer() {
        let addr = free_addr();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let on_wire: super::WireHandler = Arc::new(move |tcp, _| {
            let _ = tx.send(tcp);
        });
        let _incoming = super::incoming_peer(addr, None, on_wire).expect("listen");
        let mut peer = TcpStream::connect(addr).await.expect("connect");
        peer.write_all(&crate::raft::network::wire::MAGIC[..1]).await.expect("first byte");
        let tcp = rx.recv().await.expect("the wire handler got the connection");
        assert_probes(&tcp);
    }

    /// A port that is taken is reported with its address and what it was for, not as a bare
    /// "Address already in use".
    #[tokio::test]
    async fn a_taken_address_is_named_in_the_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let Err(e) = super::incoming(addr, None, "client") else { panic!("bound {addr} twice") };
        let text = e.to_string();
        assert!(text.contains(&format!("cannot listen on {addr} (client port)")), "{text}");
        assert!(text.contains("in use"), "{text}");
    }
}
