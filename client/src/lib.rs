//! Rust client for Conclave.
//!
//! [`Client`] talks to a cluster given any of its members: it discovers the others, follows the
//! leader, retries safe operations transparently and gives every write a request id so a retry
//! is never applied twice. When a write's outcome cannot be known it returns
//! [`Error::Indeterminate`], never a guess.
//!
//! ```no_run
//! # async fn demo() -> conclave_client::Result<()> {
//! let client = conclave_client::Client::connect(vec!["127.0.0.1:7379".into()]).await?;
//! client.put("greeting", "hello").await?;
//! let previous = client.counter_add("checkpoint-id", 1).await?;
//! # Ok(()) }
//! ```

pub mod auth;
mod cluster;
mod config;
mod connection;
mod counter;
pub mod error;
pub mod grpc_channel;
pub mod health;
mod kv;
mod lease;
pub mod maintenance;
pub mod recipes;
mod request_id;
pub mod session;
mod token;
pub mod watch;

use std::sync::Arc;

pub use auth::Credentials;
pub use conclave_proto::errors::{Outcome, Reason};
pub use conclave_proto::v1 as proto;
pub use conclave_tls::{ClientFiles, ClientTls};
pub use config::ClientConfig;
pub use error::{Error, Indeterminate, Result, WriteId};
pub use grpc_channel::{ChannelOptions, GrpcChannel};
pub use health::{EndpointHealth, EndpointStatus};
pub use kv::{GetOptions, KeyValue, RangeResult};
pub use lease::fence;
pub use maintenance::{EndpointHash, SnapshotSaved};
pub use session::{Session, SessionState};
pub use watch::{WatchEvent, WatchOptions, Watcher};

use connection::Connection;
use request_id::RequestIds;

/// A connection to a Conclave cluster. Cheap to clone; clones share connections and ids.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Connection>,
    ids: Arc<RequestIds>,
    /// This client's shared watch streams.
    watches: Arc<watch::Hub>,
    /// This client's sessions' keep-alives, coalesced into shared requests.
    keep_alives: Arc<session::KeepAlives>,
}

impl Client {
    /// Connects with default settings and learns the members.
    ///
    /// # Errors
    /// `InvalidArgument` for malformed endpoints. An unreachable cluster is not an error here;
    /// calls will retry until their deadline.
    pub async fn connect(endpoints: Vec<String>) -> Result<Self> {
        Self::with_config(ClientConfig::new(endpoints)).await
    }

    /// Connects with explicit settings.
    ///
    /// # Errors
    /// `InvalidArgument` for malformed endpoints.
    pub async fn with_config(config: ClientConfig) -> Result<Self> {
        let watches = watch::Hub::new(config.watches_per_stream);
        let client = Self {
            conn: Arc::new(Connection::new(config)?),
            ids: Arc::new(RequestIds::new()),
            watches,
            keep_alives: Arc::default(),
        };
        // Member discovery in the background: connecting never waits for an unreachable cluster.
        let discover = client.clone();
        tokio::spawn(async move {
            let _ = discover.refresh_members().await;
        });
        Ok(client)
    }

    /// A fresh identity for one write, to pass to a `*_as` method (e.g. [`Client::counter_add_as`]):
    /// every send of that write with this id is applied at most once. Methods without `_as`
    /// allocate one per call and attach it to [`Error::Indeterminate`].
    pub fn new_write_id(&self) -> WriteId {
        WriteId::new(self.ids.begin())
    }

    /// One write with retries (see `Connection::call`), tagged with `id`: an `Indeterminate`
    /// outcome carries it, so the caller can send the same write again.
    pub(crate) async fn write<Req, Resp, F, Fut>(
        &self,
        id: Option<&WriteId>,
        server_wait: std::time::Duration,
        req: Req,
        send: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        Resp: connection::Headed,
        F: Fn(grpc_channel::GrpcChannel, Req) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let result = self.conn.unary_waiting(true, server_wait, req, send).await;
        result.map_err(|e| match id {
            Some(id) => e.with_write_id(id),
            None => e,
        })
    }

    /// The write id a request-shaped call uses: the caller's (a resend) or a fresh one.
    pub(crate) fn write_id_for(&self, given: &mut Option<proto::RequestId>) -> Option<WriteId> {
        if given.is_some() {
            return None;
        }
        let id = self.new_write_id();
        *given = Some(id.request_id());
        Some(id)
    }

    /// This client's id (part of every request id).
    pub fn client_id(&self) -> u64 {
        self.ids.client_id()
    }

    /// The endpoints known so far (configured and discovered).
    pub fn endpoints(&self) -> Vec<String> {
        self.conn.endpoints()
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        self.conn.config()
    }
}
