//! A gRPC channel to one member over one HTTP/2 connection, driven with the `h2` crate.
//!
//! Why not tonic's `Channel`: it passes every request through a buffer task and hyper's
//! dispatch task before the connection task sees it, and hyper sends a request's HEADERS and
//! its DATA in separate writes (it waits for the new stream to open before sending the body),
//! so a unary call cost the client two `writev` and the server up to two reads. Here the caller's
//! task opens the stream and queues the whole message at once, so a unary request goes out as
//! HEADERS + DATA(END_STREAM) in one write, as gRPC's Go and C++ clients send it. Measured on
//! the 2-core benchmark machine, 3 members, 64 clients: see `docs/design.md`.
//!
//! Guarantees: the connection is made lazily and remade after it ends; every member address
//! has its own channel (clones share the connection). A failure before the request was written
//! is `UNAVAILABLE` (with "connect" or "refused" in the message: nothing reached the server); a
//! failure after it is `UNKNOWN` with "outcome unknown" (a write may have been applied). A
//! connection whose keep-alive ping goes unanswered within the timeout is dropped, failing its
//! open calls at once. Streaming calls work too: what the request body has ready goes out with
//! the headers, the rest is streamed by a task until the body ends or the server resets.

mod body;
mod link;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::{Authority, Scheme};
use http::Uri;
use tonic::body::Body;
use tonic::Status;

pub use body::ResponseBody;
use link::Link;

/// How a [`GrpcChannel`] connects.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// Limit on TCP connect plus the HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// Local address outgoing connections bind to (fault injection per client address).
    pub local_address: Option<IpAddr>,
    /// Interval of HTTP/2 pings on a connection.
    pub keep_alive_interval: Duration,
    /// A ping unanswered this long ends the connection.
    pub keep_alive_timeout: Duration,
    /// TLS (server verified against a CA, optionally a client certificate); `None`: plain TCP.
    pub tls: Option<conclave_tls::ClientTls>,
    /// The authentication token to attach to every request (`x-conclave-token`), if any.
    pub token: Option<Arc<crate::token::TokenCell>>,
}

impl Default for ChannelOptions {
    /// 500 ms to connect, a ping every second, 2 s to answer it.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            local_address: None,
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(2),
            tls: None,
            token: None,
        }
    }
}

/// A lazily connected gRPC channel to one address (see the module docs). Cheap to clone; clones
/// share the connection. Use it wherever a tonic-generated client takes a channel.
#[derive(Clone)]
pub struct GrpcChannel {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port`.
    addr: String,
    authority: Authority,
    options: ChannelOptions,
    link: Mutex<Option<Link>>,
    /// Held while connecting, so concurrent calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcChannel").field("addr", &self.shared.addr).finish_non_exhaustive()
    }
}

impl GrpcChannel {
    /// A channel to `addr` (`host:port`, optionally prefixed with `http://`); nothing is
    /// connected until the first call.
    ///
    /// # Errors
    /// A message saying why `addr` is not a valid `host:port`.
    pub fn new(addr: &str, options: ChannelOptions) -> Result<Self, String> {
        let addr = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/').to_owned();
        let authority: Authority = addr.parse().map_err(|e| format!("endpoint {addr:?}: {e}"))?;
        if authority.port_u16().is_none() {
            return Err(format!("endpoint {addr:?}: a port is required (host:port)"));
        }
        let shared =
            Shared { addr, authority, options, link: Mutex::new(None), connecting: tokio::sync::Mutex::new(()) };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The live connection's request handle, connecting first if there is none.
    async fn sender(&self) -> Result<SendRequest<Bytes>, Status> {
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let _one = self.shared.connecting.lock().await;
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let link = Link::connect(&self.shared.addr, &self.shared.options).await?;
        let sender = link.sender.clone();
        *self.shared.link.lock().unwrap_or_else(PoisonError::into_inner) = Some(link);
        Ok(sender)
    }

    fn live(&self) -> Option<SendRequest<Bytes>> {
        let link = self.shared.link.lock().unwrap_or_else(PoisonError::into_inner);
        link.as_ref().filter(|l| !l.is_closed()).map(|l| l.sender.clone())
    }

    /// Drops the connection (after it failed a call), so the next call makes a new one.
    fn forget(&self) {
        *self.shared.link.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A failure before anything of the request was written: safe to retry anywhere.
    fn not_sent(&self, e: &h2::Error) -> Status {
        self.forget();
        not_applied(format!("connection to {} failed before the request was sent: {e}", self.shared.addr))
    }

    async fn send(self, request: http::Request<Body>) -> Result<http::Response<ResponseBody>, Status> {
        let (mut parts, mut body) = request.into_parts();
        let mut uri = parts.uri.into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.shared.authority.clone());
        parts.uri = Uri::from_parts(uri).map_err(|e| Status::internal(format!("request uri: {e}")))?;
        if let Some(token) = self.shared.options.token.as_ref().and_then(|t| t.current()) {
            if let Ok(v) = http::HeaderValue::from_str(&token) {
                parts.headers.entry(conclave_proto::TOKEN_METADATA).or_insert(v);
            }
        }
        let ready = body::take_ready(&mut body)?;

        let sender = self.sender().await?;
        let mut sender = sender.ready().await.map_err(|e| self.not_sent(&e))?;
        let headers_only = ready.ended && ready.chunks.is_empty();
        let (response, mut stream) =
            sender.send_request(http::Request::from_parts(parts, ()), headers_only).map_err(|e| self.not_sent(&e))?;
        let last = ready.chunks.len();
        for (i, chunk) in ready.chunks.into_iter().enumerate() {
            stream.send_data(chunk, ready.ended && i + 1 == last).map_err(|e| body::broken(&e))?;
        }
        if !ready.ended {
            tokio::spawn(body::pipe(body, stream));
        }
        let response = response.await.map_err(|e| {
            if e.is_io() || e.is_go_away() {
                self.forget();
            }
            if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                not_applied(format!("{} refused the stream (not processed): {e}", self.shared.addr))
            } else {
                body::broken(&e)
            }
        })?;
        let (parts, recv) = response.into_parts();
        Ok(http::Response::from_parts(parts, ResponseBody::new(recv)))
    }
}

impl tower::Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Readiness (stream limits, connecting) is awaited inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests;

/// The transport's "nothing was sent" failure: UNAVAILABLE, outcome NOT_APPLIED (retry anywhere).
pub(crate) fn not_applied(message: String) -> Status {
    conclave_proto::errors::status(
        tonic::Code::Unavailable,
        message,
        conclave_proto::errors::Reason::Unavailable,
        conclave_proto::errors::Outcome::NotApplied,
    )
}
