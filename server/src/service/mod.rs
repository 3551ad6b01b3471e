//! The public gRPC services (`conclave.v1`), one per file, with thin handlers: validate, call
//! the [`Node`] facade (propose, read at a consistency level, sessions, applied revisions),
//! convert, fill the header. Errors are `crate::error::Error`s, turned into statuses in one
//! place (`error.rs`). All services are registered in [`routes`].

mod auth;
mod cluster;
mod convert;
mod counter;
mod kv;
mod lease;
mod maintenance;
mod session;
pub mod validate;
mod watch;

use std::future::Future;
use std::sync::Arc;

use conclave_proto::v1 as pb;
use tonic::service::Routes;

use crate::auth::{Authorizer, Caller, Identity};
use crate::error::{Error, Result};
use crate::limits::{GRPC_MAX_DECODE_BYTES, GRPC_MAX_ENCODE_BYTES};
use crate::log_entry::{Command, Proposal, UserCommand};
use crate::node::{Consistency, Node};
use crate::state_machine::auth::ROOT;
use crate::state_machine::response::{Outcome, OutcomeBody};
use crate::state_machine::StateMachine;

pub use watch::WatchLimits;

/// Per-node limits and tunables of the public API.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Shortest session TTL accepted (twice the maximum election timeout, at least 2 s).
    pub min_session_ttl_ms: u64,
    /// Watch limits.
    pub watch: WatchLimits,
}

/// What every handler needs.
#[derive(Clone)]
pub struct Api {
    node: Arc<Node>,
    auth: Arc<Authorizer>,
    limits: ApiLimits,
    /// The member's shared watch fan-out.
    feed: Arc<watch::Feed>,
}

/// A state-machine outcome of the wrong kind for the request: a bug.
fn unexpected(body: &OutcomeBody) -> tonic::Status {
    Error::Internal(format!("unexpected outcome {body:?}")).into()
}

impl Api {
    /// Handlers over `node`.
    pub fn new(node: Arc<Node>, auth: Arc<Authorizer>, limits: ApiLimits) -> Self {
        Self { node, auth, limits, feed: Arc::default() }
    }

    /// Who sends `req` (`Caller::Anyone` without `--auth`).
    ///
    /// # Errors
    /// `Unauthenticated` under `--auth` without a valid token.
    fn caller<'a, T>(&'a self, req: &'a tonic::Request<T>) -> impl Future<Output = Result<Caller>> + Send + 'a {
        let identity = self.identity(req);
        async move { identity.await.map(|i| i.caller) }
    }

    /// [`Api::caller`], with what a stream re-checks while it lives (token expiry, user epoch).
    /// The future borrows the request's metadata only (a streaming request body need not be
    /// `Sync`).
    ///
    /// # Errors
    /// `Unauthenticated` under `--auth` without a valid token.
    fn identity<'a, T>(&'a self, req: &'a tonic::Request<T>) -> impl Future<Output = Result<Identity>> + Send + 'a {
        let conn = req.extensions().get::<conclave_tls::identity::ConnInfo>();
        self.auth.identify(req.metadata(), conn.and_then(|c| c.client_name.as_deref()))
    }

    /// `caller`, who must be root (under `--auth`); `what` names the operation.
    fn root<'a, T>(
        &'a self,
        req: &'a tonic::Request<T>,
        what: &'a str,
    ) -> impl Future<Output = Result<Caller>> + Send + 'a {
        let caller = self.caller(req);
        async move {
            let caller = caller.await?;
            self.auth.require_root(&caller, what)?;
            Ok(caller)
        }
    }

    /// The response header for a reply at `revision`.
    fn header(&self, revision: u64) -> pb::ResponseHeader {
        let s = self.node.status();
        pb::ResponseHeader {
            revision,
            node_id: s.node_id,
            leader_id: s.leader_id.unwrap_or(0),
            term: s.term,
            applied_index: s.applied_index,
        }
    }

    /// The revision this node has applied (for headers of local answers).
    fn applied_revision(&self) -> u64 {
        self.node.subscribe_applied().borrow().revision
    }

    /// Proposes a validated write (through the leader) and returns its outcome, once `caller`
    /// has every permission it needs and owns every session it names (`auth::access`).
    async fn write(
        &self,
        caller: &Caller,
        command: Command,
        request_id: Option<&pb::RequestId>,
        size: usize,
    ) -> Result<Outcome> {
        self.auth.require_command(caller, &command).await?;
        self.auth.require_sessions_of(caller, &command).await?;
        validate::request_size(size)?;
        let (command, size) = as_caller(caller, command, size);
        let proposal = Proposal { request_id: validate::request_id(request_id)?, command };
        self.node.propose(proposal, size).await
    }

    /// Runs `f` against the state machine: after a linearizable barrier, or, when
    /// `serializable`, once this node has applied `min_revision` (session consistency).
    async fn read<T>(
        &self,
        serializable: bool,
        min_revision: u64,
        f: impl FnOnce(&StateMachine) -> Result<T>,
    ) -> Result<T> {
        let c = if serializable { Consistency::Serializable { min_revision } } else { Consistency::Linearizable };
        self.node.read(c, f).await
    }
}

/// `command` as `caller` sends it: a user's (not root's) as `Command::AsUser`, which apply
/// checks again, and its size with the user's name.
fn as_caller(caller: &Caller, command: Command, size: usize) -> (Command, usize) {
    match caller {
        Caller::User(user) if user != ROOT => {
            (Command::AsUser { user: user.clone(), command: UserCommand(Box::new(command)) }, size + user.len())
        }
        _ => (command, size),
    }
}

/// Every public service, with message-size limits set.
pub fn routes(api: Api) -> Routes {
    use pb::cluster_server::ClusterServer;
    use pb::counter_server::CounterServer;
    use pb::kv_server::KvServer;
    use pb::lease_server::LeaseServer;
    use pb::maintenance_server::MaintenanceServer;
    use pb::session_server::SessionServer;
    use pb::watch_server::WatchServer;
    // Every service decodes at most GRPC_MAX_DECODE_BYTES and encodes at most
    // GRPC_MAX_ENCODE_BYTES per message (tonic answers RESOURCE_EXHAUSTED beyond).
    macro_rules! bounded {
        ($server:ident) => {
            $server::new(api.clone())
                .max_decoding_message_size(GRPC_MAX_DECODE_BYTES)
                .max_encoding_message_size(GRPC_MAX_ENCODE_BYTES)
        };
    }
    use pb::auth_server::AuthServer;
    Routes::new(bounded!(KvServer))
        .add_service(bounded!(AuthServer))
        .add_service(bounded!(CounterServer))
        .add_service(bounded!(SessionServer))
        .add_service(bounded!(LeaseServer))
        .add_service(bounded!(WatchServer))
        .add_service(bounded!(MaintenanceServer))
        .add_service(bounded!(ClusterServer))
}
