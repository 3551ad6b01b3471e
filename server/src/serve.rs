//! A running node: opens storage, starts Raft, serves the peer protocol, decides between
//! bootstrapping a new cluster and rejoining a running one (`rejoin`), serves the client gRPC
//! endpoints, and registers its client address. [`run`] is what the binary, tests and benches call.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use conclave_tls::{ClientTls, ServerTls};
use openraft::{Config as RaftConfig, SnapshotPolicy};
use tonic::transport::Server;

use crate::auth::Authorizer;
use crate::config::{choose_log_engine, Config, LogEngineKind};
use crate::error::Error;
use crate::listener;
use crate::log_entry::{Command, Proposal};
use crate::node::peer_service::PeerService;
use crate::node::rejoin::{self, StartMode};
use crate::node::Node;
use crate::ops;
use crate::raft::bootstrap_settings;
use crate::raft::cluster_id::{self, ClusterId};
use crate::raft::network::{PeerNetwork, MAX_PEER_MESSAGE};
use crate::raft::prompt_election::PromptElection;
use crate::raft::read_lease::ReadLease;
use crate::raft::router::Router;
use crate::raft::voting_gate::VotingGate;
use crate::raft::{PeerNode, Raft};
use crate::service::{routes, Api, ApiLimits, WatchLimits};
use crate::sessions::SessionTracker;
use crate::state_machine::SmConfig;
use crate::storage::engine::{LogEngine, SledEngine};
use crate::storage::file_engine::FileEngine;
use crate::storage::log_store::LogStore;
use crate::storage::sm_store::SmStore;
use crate::storage::snapshot_file::SnapshotDir;

/// Runs a node until `shutdown` resolves.
///
/// # Errors
/// When storage cannot be opened, the addresses cannot be bound, or Raft fails to start.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Durable: a data dir this node creates must not vanish on a power loss.
    crate::storage::file_engine::create_dir_durable(&config.data_dir)?;
    let kind = choose_log_engine(&config.data_dir, config.log_engine).map_err(anyhow::Error::msg)?;
    let engine_dir = config.data_dir.join(kind.dir_name());
    let engine: Arc<dyn LogEngine> = match kind {
        LogEngineKind::File => Arc::new(FileEngine::open(&engine_dir)?),
        LogEngineKind::Sled => Arc::new(SledEngine::open(&engine_dir)?),
    };
    tracing::info!(engine = ?kind, dir = %engine_dir.display(), "raft log storage");
    let log_store = LogStore::new(engine, config.node_id);
    let probe_log = log_store.clone();
    let sm_store = SmStore::open(SnapshotDir::open(&config.data_dir.join("snapshots"))?)
        .map_err(anyhow::Error::msg)?
        .with_durability(log_store.durability());
    let shared = sm_store.shared();

    let election = config.election_timeout.as_millis() as u64;
    let raft_config = RaftConfig {
        cluster_name: "conclave".into(),
        heartbeat_interval: config.heartbeat.as_millis() as u64,
        election_timeout_min: election,
        election_timeout_max: election * 2,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 64,
        // Triggered by `raft::snapshots`, at a phase of each member's own.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
        replication_lag_threshold: config.snapshot_logs,
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        ..Default::default()
    }
    .validate()?;

    let cluster_id = ClusterId::open(&config.data_dir).map_err(anyhow::Error::msg)?;
    // TLS files load now (a bad file stops start-up with its name) and reload when they change.
    let client_tls = config.tls.client.clone().map(ServerTls::new).transpose()?;
    // How `--join` dials the members' client ports (checked by `Config::validate`).
    let join_tls = match config.join.is_empty() {
        true => None,
        false => config.tls.join_dialing().map_err(anyhow::Error::msg)?.map(ClientTls::new).transpose()?,
    };
    let (peer_server_tls, peer_dial_tls) = match &config.tls.peer {
        Some(files) => (Some(ServerTls::new(files.server())?), Some(ClientTls::new(files.client())?)),
        None => (None, None),
    };
    // openraft's leader lease (a voter's refusal to vote after hearing from its leader) is the
    // maximum election timeout.
    let lease = Arc::new(ReadLease::new(Duration::from_millis(raft_config.election_timeout_max), config.read_lease));
    let network = PeerNetwork::new(config.node_id, Some(config.peer_addr.ip()), cluster_id.clone(), peer_dial_tls)
        .with_durability(log_store.durability())
        .with_read_lease(lease.clone())
        .with_wire(config.peer_wire);
    let raft = Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log_store, sm_store).await?;
    crate::raft::snapshots::spawn(raft.clone(), config.node_id, config.snapshot_logs, shared.subscribe_applied());
    // A node without Raft state (or mid-rejoin) neither votes nor campaigns until it knows
    // whether it founds a new cluster or lost its data (`rejoin`).
    let gate = Arc::new(VotingGate::default());
    let undecided = rejoin::pending(&config.data_dir) || !raft.is_initialized().await?;
    if undecided {
        gate.set_open(false);
        raft.runtime_config().elect(false);
    } else if cluster_id.get().is_none() && config.join.is_empty() {
        // A data dir from before cluster ids: the founding members' id.
        cluster_id.record(founding_cluster_id(&config))?;
    }
    match cluster_id.get() {
        Some(id) => tracing::info!(cluster_id = %cluster_id::format(id), "cluster id"),
        None => tracing::info!("no cluster id yet: adopted from the leader once this member is replicated to"),
    }
    // openraft's leader lease is the maximum election timeout.
    let election = PromptElection::new(
        config.node_id,
        raft.clone(),
        probe_log,
        network.clone(),
        config.election_timeout * 2,
        gate.clone(),
    );
    let election_task = election.spawn();

    let router = Arc::new(Router::new(
        config.node_id,
        raft.clone(),
        network.clone(),
        shared,
        config.election_timeout * 4,
        config.batches_in_flight,
        lease,
    ));
    let sessions = SessionTracker::new(router.clone());
    let expiry = sessions.spawn_expiry_loop(Duration::from_millis(50));
    let node = Node::new(router.clone(), sessions);
    let limits = ApiLimits {
        // A follower campaigns at most 2 x the maximum election timeout (= 4 x the minimum)
        // after the last heartbeat: a session must outlive that.
        min_session_ttl_ms: (config.election_timeout.as_millis() as u64 * 4).max(2_000),
        watch: WatchLimits {
            max_watches_per_stream: config.max_watches_per_stream,
            progress_interval: config.watch_progress_interval,
        },
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let authorizer = Authorizer::new(config.auth.clone(), node.clone());
    if let Some(file) = &config.auth.root_password_file {
        let password = crate::auth::bootstrap::read_password_file(file).map_err(anyhow::Error::msg)?;
        tokio::spawn(crate::auth::bootstrap::create_root(authorizer.clone(), password));
    }

    let peer_server = {
        let service = Arc::new(PeerService::new(node.clone(), election.clone(), gate.clone(), cluster_id.clone()));
        let svc = conclave_proto::internal::v1::raft_peer_server::RaftPeerServer::from_arc(service.clone())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let mut stop = stop_rx.clone();
        let on_wire: listener::WireHandler = {
            let stop = stop_rx.clone();
            Arc::new(move |tcp, remote| {
                let (service, mut stop) = (service.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = crate::node::peer_wire::serve(tcp, remote, service) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
            })
        };
        let incoming = listener::grpc(listener::incoming_peer(config.peer_addr, peer_server_tls, on_wire)?);
        tokio::spawn(Server::builder().add_service(svc).serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    // Registration marks this node as having taken part (see `rejoin`): only once it has decided.
    let start_up = {
        let (node, config, peers, router) = (node.clone(), config.clone(), network.clone(), router.clone());
        tokio::spawn(async move {
            if undecided {
                start_up(node, &config, peers, gate, cluster_id, join_tls).await;
            }
            register_client_addr(router.clone(), config.advertise_client_addr.clone()).await;
            if let Some(zk_addr) = config.zk_addr {
                let advertised = crate::zk::advertised_addr(zk_addr, &config.advertise_client_addr);
                register_zk_addr(router.clone(), advertised).await;
            }
            bootstrap_settings::reconcile(router, SmConfig { history_revisions: config.history_revisions }).await;
        })
    };
    // Probes and metrics (`ops`): the readiness rule drives grpc.health.v1 and /readyz.
    let lease = config.election_timeout * 2;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for service in ops::health::HEALTH_SERVICES {
        health_reporter.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
    }
    let readiness = ops::health::spawn(node.clone(), lease, health_reporter);
    let leader_changes = ops::spawn_leader_changes(node.clone());
    let metrics_server = match config.metrics_addr {
        Some(addr) => {
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| listener::bind_error(addr, "metrics", e))?;
            tracing::info!(%addr, "serving /livez, /readyz and /metrics");
            let state = ops::http::HttpState { node: node.clone(), readiness: readiness.clone(), lease };
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(ops::http::serve(listener, state, async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    // The client port stops first and on its own signal: it drains while Raft still runs.
    let (client_stop_tx, mut client_stop) = tokio::sync::watch::channel(false);
    let client_server = {
        let incoming = listener::grpc(listener::incoming(config.client_addr, client_tls.clone(), "client")?);
        tokio::spawn(
            Server::builder()
                .layer(ops::rpc_layer::RpcMetricsLayer)
                .add_routes(routes(Api::new(node.clone(), authorizer, limits)).add_service(health_service))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = client_stop.wait_for(|s| *s).await;
                }),
        )
    };
    let zk_reaper = tokio::spawn(crate::zk::reaper::run(node.clone(), config.zk_container_check, config.zk_reap_rules));
    let zk_server = match config.zk_addr {
        Some(addr) => {
            // The ZooKeeper port takes the client port's TLS options (certificate, key, and
            // client certificates required when --client-ca is given).
            let incoming = listener::incoming(addr, client_tls.clone(), "zookeeper")?;
            tracing::info!(%addr, tls = client_tls.is_some(), "serving the ZooKeeper protocol");
            let settings = crate::zk::ZkSettings {
                tick_ms: config.zk_tick_ms,
                min_session_ttl_ms: limits.min_session_ttl_ms,
                super_digest: config.zk_super_digest.clone(),
                max_response_bytes: config.zk_max_response_bytes,
            };
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(crate::zk::serve(incoming, node.clone(), settings, async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    tracing::info!(
        node_id = config.node_id,
        client = %config.client_addr,
        peer = %config.peer_addr,
        client_tls = config.tls.client.is_some(),
        client_mtls = config.tls.client.as_ref().is_some_and(|c| c.client_ca.is_some()),
        peer_mtls = config.tls.peer.is_some(),
        "conclave serving"
    );

    shutdown.await;
    tracing::info!("shutting down");
    hand_off_leadership(&node).await;
    // Drain: GOAWAY to every client connection, so clients send new requests elsewhere; what
    // is in flight finishes (writes go to the new leader). Streams (watches, keep-alives) do not
    // end by themselves: they are cut after DRAIN, and clients resume them on another member.
    let _ = client_stop_tx.send(true);
    let mut client_server = client_server;
    if tokio::time::timeout(DRAIN, &mut client_server).await.is_err() {
        tracing::info!("client connections still open after {DRAIN:?}: closing them");
        client_server.abort();
    }
    start_up.abort();
    expiry.abort();
    zk_reaper.abort();
    election_task.abort();
    leader_changes.abort();
    let _ = stop_tx.send(true);
    // Each step is bounded: a stop must end (Kubernetes kills after its grace period anyway).
    stop_step("raft", raft.shutdown()).await;
    stop_step("peer port", peer_server).await;
    if let Some(m) = metrics_server {
        stop_step("metrics port", m).await;
    }
    if let Some(z) = zk_server {
        stop_step("ZooKeeper port", z).await;
    }
    drop(readiness);
    Ok(())
}

/// How long a stopping member keeps serving its open client connections after telling them to
/// go elsewhere (GOAWAY).
const DRAIN: Duration = Duration::from_secs(1);

/// How long one step of a stop may take before it is given up.
const STOP_STEP: Duration = Duration::from_secs(5);

async fn stop_step<F: Future>(what: &str, step: F) {
    if tokio::time::timeout(STOP_STEP, step).await.is_err() {
        tracing::warn!("stopping: the {what} did not stop within {STOP_STEP:?}; going on without it");
    }
}

/// A stopping leader hands leadership to the most up-to-date voter first (`raft::transfer`), so
/// the cluster does not wait an election timeout for a new leader and no write fails. A
/// follower, or a leader that is the only voter, has nothing to hand off.
async fn hand_off_leadership(node: &Node) {
    let leads_others = {
        let metrics = node.router().raft().metrics();
        let m = metrics.borrow();
        m.state == openraft::ServerState::Leader && m.membership_config.membership().voter_ids().count() > 1
    };
    if !leads_others {
        return;
    }
    let started = std::time::Instant::now();
    // A second attempt when the first did not complete (a slow target, an election meanwhile);
    // each is bounded (see `Node::move_leader`).
    for attempt in 1..=2 {
        match node.move_leader(None).await {
            Ok(to) => {
                tracing::info!(to, elapsed = ?started.elapsed(), "handed leadership off before stopping");
                return;
            }
            Err(Error::NotLeader { .. }) => return,
            Err(e) if attempt == 1 => tracing::info!("leadership hand-off not done yet ({e}); trying once more"),
            Err(e) => tracing::warn!("stopping without handing leadership off: {e}"),
        }
    }
}

/// Decides what a node without Raft state is (see `rejoin`): bootstraps a new cluster with the
/// initial membership, or runs the rejoin flow. A node restarted mid-rejoin resumes the flow.
/// Returns when the node may register: bootstrapped, or rejoined (a voter again).
async fn start_up(
    node: Arc<Node>,
    config: &Config,
    peers: PeerNetwork,
    gate: Arc<VotingGate>,
    cluster_id: ClusterId,
    join_tls: Option<ClientTls>,
) {
    let raft = node.router().raft().clone();
    let mut ask_leader = true;
    let mut peer_addrs: Vec<String> =
        config.initial_cluster.iter().filter(|(id, _)| **id != config.node_id).map(|(_, a)| a.clone()).collect();
    let mode = if rejoin::pending(&config.data_dir) {
        ask_leader = rejoin::asks_leader(&config.data_dir);
        StartMode::Rejoin
    } else if !config.join.is_empty() {
        // Added with `member add`: a learner waits for its promotion; listed as a voter, it
        // joined before and lost its data, so it rejoins.
        let own_peer_addr = config.initial_cluster.get(&config.node_id).cloned().unwrap_or_default();
        let (standing, peers) =
            rejoin::join_standing(config.node_id, &own_peer_addr, &config.join, join_tls.clone()).await;
        ask_leader = standing == rejoin::JoinStanding::Voter;
        peer_addrs = peers;
        StartMode::Rejoin
    } else {
        rejoin::decide(config.node_id, &config.initial_cluster, &peers).await
    };
    match mode {
        StartMode::Bootstrap => {
            let members: BTreeMap<u64, PeerNode> =
                config.initial_cluster.iter().map(|(id, addr)| (*id, PeerNode { peer_addr: addr.clone() })).collect();
            if let Err(e) = cluster_id.record(founding_cluster_id(config)) {
                tracing::error!(
                    "cannot record the cluster id in {}: {e}; not bootstrapping",
                    config.data_dir.display()
                );
                return;
            }
            tracing::info!(?members, "initializing a new cluster");
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!("initialize: {e} (another member may have initialized first)");
            }
            gate.set_open(true);
            raft.runtime_config().elect(true);
        }
        StartMode::Rejoin => {
            if let Err(e) = rejoin::begin(&config.data_dir, &gate, !ask_leader) {
                tracing::error!(
                    "cannot start the rejoin (marker in {}): {e}; staying out of elections",
                    config.data_dir.display()
                );
                return;
            }
            rejoin::run(node, config.data_dir.clone(), gate, ask_leader, peer_addrs).await;
        }
    }
}

/// The cluster id the founding members derive (see `raft::cluster_id`).
fn founding_cluster_id(config: &Config) -> u64 {
    cluster_id::derive(&config.initial_cluster, &config.initial_cluster_token, "")
}

/// Makes sure the replicated membership metadata holds this node's client address, so any
/// member can tell clients where every other member (and the leader) serves. Retries until done.
async fn register_client_addr(router: Arc<Router>, client_addr: String) {
    let command = Command::RegisterNode { node_id: router.node_id(), client_addr: client_addr.clone() };
    let done = |r: &Router| r.client_addr_of(r.node_id()).as_deref() == Some(client_addr.as_str());
    register(&router, "client address", command, done).await;
}

/// Makes sure the replicated metadata holds this node's ZooKeeper address (`/zookeeper/config`
/// lists every member's). Retries until done.
async fn register_zk_addr(router: Arc<Router>, zk_addr: String) {
    let command = Command::RegisterZkAddr { node_id: router.node_id(), zk_addr: zk_addr.clone() };
    let done = |r: &Router| {
        r.shared().sm.read().ok().and_then(|sm| sm.znodes().zk_addrs().get(&r.node_id()).cloned()).as_deref()
            == Some(zk_addr.as_str())
    };
    register(&router, "ZooKeeper address", command, done).await;
}

/// Proposes `command` (membership metadata) until `done` sees it applied here.
async fn register(router: &Router, what: &str, command: Command, done: impl Fn(&Router) -> bool) {
    let mut delay = Duration::from_millis(50);
    while !done(router) {
        let proposal = Proposal { request_id: None, command: command.clone() };
        if let Err(e) = router.propose(proposal, 64).await {
            tracing::debug!("{what} registration not done yet: {e}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
