//! One HTTP/2 connection to a member: TCP connect (bound to a local address if configured),
//! TLS when configured, the HTTP/2 handshake, and a task that drives the connection and pings the peer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use tonic::Status;

use super::ChannelOptions;

/// HTTP/2 windows: what hyper (and so tonic's channel) uses by default, so a large range reply
/// streams without waiting for window updates.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// A live connection: new streams are opened through `sender` until `closed` is set.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) sender: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Link {
    /// Whether the connection has ended (peer gone, protocol error, keep-alive unanswered).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Connects to `addr` (`host:port`) and starts the task that drives the connection.
    ///
    /// # Errors
    /// `Unavailable` naming the address when it cannot be resolved, connected or greeted: nothing
    /// was sent, so a retry elsewhere is safe.
    pub(super) async fn connect(addr: &str, options: &ChannelOptions) -> Result<Self, Status> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| super::not_applied(format!("connect to {addr}: {what}: {e}"));
        let connecting = async {
            let target = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| failed("cannot resolve", &e))?
                .next()
                .ok_or_else(|| failed("cannot resolve", &"no address"))?;
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            let stream = conclave_tls::dial(target, host, options.local_address, options.tls.as_ref())
                .await
                .map_err(|e| failed(if options.tls.is_some() { "tcp or tls" } else { "tcp" }, &e))?;
            let (sender, mut connection) = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|e| failed("http/2 handshake", &e))?;
            let mut pings = connection.ping_pong();
            if options.tls.is_some() {
                // With TLS 1.3 a server that refuses this client's certificate (or its absence)
                // says so only after the client's side of the handshake is done: one ping round
                // trip surfaces that here, as a connect failure (nothing sent), not as a failed
                // request whose outcome is unknown.
                let ping = async { pings.as_mut()?.ping(h2::Ping::opaque()).await.ok() };
                tokio::select! {
                    ended = &mut connection => {
                        let why = ended.err().map_or_else(|| "connection closed".to_owned(), |e| e.to_string());
                        return Err(failed("tls (refused by the server)", &why));
                    }
                    pong = ping => {
                        pong.ok_or_else(|| failed("tls (refused by the server)", &"no answer to the first ping"))?;
                    }
                }
            }
            Ok((sender, connection, pings))
        };
        let (sender, mut connection, mut pings) = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| failed("timed out", &format_args!("{:?}", options.connect_timeout)))??;
        let closed = Arc::new(AtomicBool::new(false));
        let done = closed.clone();
        let (interval, timeout) = (options.keep_alive_interval, options.keep_alive_timeout);
        tokio::spawn(async move {
            // Ends when the connection does, or when a ping goes unanswered: then the
            // connection is dropped, which fails its open streams at once.
            let keep_alive = async {
                let Some(pings) = pings.as_mut() else { return std::future::pending().await };
                loop {
                    tokio::time::sleep(interval).await;
                    match tokio::time::timeout(timeout, pings.ping(h2::Ping::opaque())).await {
                        Ok(Ok(_)) => {}
                        _ => return,
                    }
                }
            };
            tokio::select! {
                _ = &mut connection => {}
                () = keep_alive => {}
            }
            done.store(true, Ordering::Release);
        });
        Ok(Self { sender, closed })
    }
}
