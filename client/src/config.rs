//! What a client is configured with: endpoints, deadlines, discovery, TLS and credentials.

use std::time::Duration;

use crate::grpc_channel::ChannelOptions;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Endpoints (`host:port`) to start from; more are discovered.
    pub endpoints: Vec<String>,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// Deadline of a whole call, retries included.
    pub call_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Learn the other members and follow the leader (default). When false, the client talks
    /// only to the configured endpoints (tests that pin a member; the member forwards).
    pub discover: bool,
    /// Local address outgoing connections bind to (fault injection per client address).
    pub local_address: Option<std::net::IpAddr>,
    /// TLS to the members (their CA, and a client certificate for members that require one);
    /// `None`: plain TCP. Build it with [`crate::ClientTls::new`]; it re-reads its files when
    /// they change.
    pub tls: Option<crate::ClientTls>,
    /// Most watches this client puts on one shared Watch stream (default 1,000; a member
    /// refusing more with `LIMIT_EXCEEDED`, see its `--max-watches-per-stream`, lowers it for
    /// that stream, and the refused watches move to another one).
    pub watches_per_stream: usize,
    /// User name and password for members started with `--auth` (`None`: send no token). The
    /// client authenticates when a member asks, attaches the token to every request and
    /// renews it when it expires.
    pub credentials: Option<crate::Credentials>,
}

impl ClientConfig {
    /// How this client's channels connect: its connect timeout, local address and TLS, a ping
    /// every second answered within 2 s.
    pub(crate) fn channel_options(&self) -> ChannelOptions {
        ChannelOptions {
            connect_timeout: self.connect_timeout,
            local_address: self.local_address,
            tls: self.tls.clone(),
            ..ChannelOptions::default()
        }
    }

    /// Defaults for `endpoints`: 2 s per attempt, 10 s per call, 500 ms connect, 1,000 watches
    /// per stream.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            attempt_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_millis(500),
            discover: true,
            local_address: None,
            tls: None,
            watches_per_stream: 1_000,
            credentials: None,
        }
    }
}
