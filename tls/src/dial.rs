//! Dialing a Conclave port: TCP (optionally from a given local address), then TLS if configured.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpSocket;

use crate::{ClientTls, MaybeTlsStream};

/// Connects to `target` with TCP_NODELAY, binding the local end to `local` when given (so
/// per-address network faults can target a node's or client's traffic), then runs the TLS
/// handshake for `host` (the name or IP address the server's certificate must carry) when `tls`
/// is set.
///
/// # Errors
/// The TCP connect or the TLS handshake failed; the message says which.
pub async fn dial(
    target: SocketAddr,
    host: &str,
    local: Option<IpAddr>,
    tls: Option<&ClientTls>,
) -> std::io::Result<MaybeTlsStream> {
    let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let tcp = socket.connect(target).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(MaybeTlsStream::Plain(tcp)),
        Some(tls) => tls
            .connect(host, tcp)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}"))),
    }
}
