//! Listeners of the client and peer ports: plain TCP, or TLS over TCP (rustls, through
//! `conclave-tls`, whose configuration re-reads its files when they change).
//!
//! With TLS, each accepted connection's handshake runs in its own task, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or hostile client cannot hold up the others; a refused
//! handshake (no or untrusted certificate) is logged with the remote address and the connection
//! dropped before any gRPC is read. TCP_NODELAY on every connection (tonic's builder setting
//! does not apply to a custom incoming stream; without it Nagle + delayed ACKs add ~40 ms).

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
    let Some(tls) = tls else {
        let plain = tonic::transport::server::TcpIncoming::bind(addr).map_err(|e| bind_error(addr, port, e))?;
        return Ok(Box::pin(plain.with_nodelay(Some(true)).map(|r| r.map(MaybeTlsStream::Plain))));
    };
    let listener = bind(addr, port)?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, tx, port));
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

/// Accepts connections (TCP_NODELAY set) and hands each to `handle` until the server drops
/// `tx`'s receiver.
async fn accept_each(
    listener: TcpListener,
    tx: &mpsc::Sender<std::io::Result<MaybeTlsStream>>,
    port: &'static str,
    handle: impl Fn(TcpStream, SocketAddr),
) {
    loop {
        let (tcp, remote) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(port, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        handle(tcp, remote);
    }
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
