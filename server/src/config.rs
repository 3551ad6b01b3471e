//! Configuration: one struct, from flags or `CONCLAVE_*` environment variables, validated once
//! into typed values by [`ServeArgs::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod auth;
pub mod statefulset;
mod tls;
pub use auth::AuthArgs;
pub use tls::{PeerFiles, TlsArgs, TlsConfig};

/// `conclave`: a Raft-replicated coordination service.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run a node. With no flags: a single-node cluster in ./conclave-data on 127.0.0.1:7379.
    Serve(Box<ServeArgs>),
    /// Seed an empty data directory from a backup (`conclavectl snapshot save FILE`) as one
    /// member of a new cluster. Restore every member from the same FILE with the same
    /// --initial-cluster and its own --node-id, then start each with `conclave serve` and the
    /// same --initial-cluster. Revisions continue from the backup's.
    Restore(RestoreArgs),
}

/// Flags of `conclave restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The new member's data directory (absent or empty).
    #[arg(long, env = "CONCLAVE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The new member's id.
    #[arg(long, env = "CONCLAVE_NODE_ID")]
    pub node_id: u64,
    /// The new cluster's members `id=peer-addr,...`, the same for every member (and for
    /// `conclave serve` afterwards).
    #[arg(long, env = "CONCLAVE_INITIAL_CLUSTER")]
    pub initial_cluster: String,
    /// Token of the new cluster's id (as `serve --initial-cluster-token`); the backup's
    /// checksum is mixed in, so the restored cluster never accepts members of the original.
    #[arg(long, env = "CONCLAVE_INITIAL_CLUSTER_TOKEN", default_value = "conclave")]
    pub initial_cluster_token: String,
}

/// Flags of `conclave serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This node's id (unique in the cluster, never reused; a StatefulSet uses ordinal + 1).
    #[arg(long, env = "CONCLAVE_NODE_ID", default_value_t = 1)]
    pub node_id: u64,
    /// Directory for the Raft log, vote and snapshots.
    #[arg(long, env = "CONCLAVE_DATA_DIR", default_value = "./conclave-data")]
    pub data_dir: PathBuf,
    /// Address clients connect to (gRPC API).
    #[arg(long, env = "CONCLAVE_CLIENT_ADDR", default_value = "127.0.0.1:7379")]
    pub client_addr: SocketAddr,
    /// Address peers connect to (Raft). Outgoing peer connections bind to its IP.
    #[arg(long, env = "CONCLAVE_PEER_ADDR", default_value = "127.0.0.1:7380")]
    pub peer_addr: SocketAddr,
    /// Initial members `id=peer-addr,...`, the same on every node. Used only when the data
    /// directory is empty; defaults to this node alone.
    #[arg(long, env = "CONCLAVE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Join a running cluster instead of forming one: its members' client endpoints
    /// (`host:port,...`). Add the node first (`conclavectl member add ID PEER_ADDR --learner`),
    /// then start it with an empty data dir; it catches up as a learner and votes once promoted.
    #[arg(long, env = "CONCLAVE_JOIN", value_delimiter = ',', conflicts_with = "initial_cluster")]
    pub join: Vec<String>,
    /// Token the founding members derive the cluster id from (with --initial-cluster): give
    /// each cluster its own, so members of one never mix with another's. Used at bootstrap only.
    #[arg(long, env = "CONCLAVE_INITIAL_CLUSTER_TOKEN", default_value = "conclave")]
    pub initial_cluster_token: String,
    /// Client address to advertise to other members and clients (default: --client-addr);
    /// `host:port`, e.g. `conclave-0.conclave:7379` when listening on 0.0.0.0.
    #[arg(long, env = "CONCLAVE_ADVERTISE_CLIENT_ADDR")]
    pub advertise_client_addr: Option<String>,
    /// Leader heartbeat interval, milliseconds.
    #[arg(long, env = "CONCLAVE_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout, milliseconds (the maximum is twice this). openraft 0.9 lets a
    /// follower of a committed leader campaign only after the maximum (its leader lease) plus a
    /// random timeout since the last heartbeat: 450-600 ms with the default 150.
    #[arg(long, env = "CONCLAVE_ELECTION_TIMEOUT_MS", default_value_t = 150)]
    pub election_timeout_ms: u64,
    /// Take a snapshot (and compact the log) every this many log entries.
    #[arg(long, env = "CONCLAVE_SNAPSHOT_LOGS", default_value_t = 5000)]
    pub snapshot_logs: u64,
    /// Log entries kept after a snapshot, so a briefly lagging follower catches up from the log.
    #[arg(long, env = "CONCLAVE_LOGS_KEPT_AFTER_SNAPSHOT", default_value_t = 1000)]
    pub logs_kept_after_snapshot: u64,
    /// Revisions of key history retained for past reads and watches. A cluster-wide setting kept
    /// in the replicated state: the first leader of a new cluster proposes its value, and from
    /// then on the replicated value applies on every node; a node whose flag differs logs a
    /// warning naming both values.
    #[arg(long, env = "CONCLAVE_HISTORY_REVISIONS", default_value_t = 10_000)]
    pub history_revisions: u64,
    /// Write batches (log entries) proposed but not yet applied, at most. openraft 0.9 appends
    /// and replicates entries one after another, so more than one only makes batches smaller.
    #[arg(long, env = "CONCLAVE_BATCHES_IN_FLIGHT", default_value_t = 1)]
    pub batches_in_flight: usize,
    /// Send the peer protocol's frequent calls (AppendEntries, votes, forwarded writes and read
    /// indexes) over the peer port's framed wire instead of gRPC, to members that serve it (they
    /// say so in their replies; older builds do not). Plain peer links only: with peer TLS every
    /// call stays on gRPC. The peer port always accepts both.
    #[arg(long, env = "CONCLAVE_PEER_WIRE", default_value_t = true, action = clap::ArgAction::Set)]
    pub peer_wire: bool,
    /// Serve linearizable reads from the leader's read lease: while a quorum of voters has
    /// accepted this leader's AppendEntries within the last election timeout (less a fifth),
    /// none of them can vote for another leader, so the leader answers from its applied state
    /// without a heartbeat round. Assumes every member runs the same election timeout and that
    /// clocks advance at about the same rate. `false`: every read confirms leadership with a
    /// heartbeat round to a quorum (openraft's ReadIndex).
    #[arg(long, env = "CONCLAVE_READ_LEASE", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_lease: bool,
    /// Most watches on one Watch stream.
    #[arg(long, env = "CONCLAVE_MAX_WATCHES_PER_STREAM", default_value_t = 10_000)]
    pub max_watches_per_stream: usize,
    /// Idle time after which a watch created with progress_notify gets a progress notification.
    #[arg(long, env = "CONCLAVE_WATCH_PROGRESS_MS", default_value_t = 5_000)]
    pub watch_progress_ms: u64,
    /// Storage engine of the Raft log and vote: `file` (segment files, one fdatasync per append)
    /// or `sled`. Default: whatever the data directory already holds (`raft/` is sled,
    /// `raftlog/` is file), else `file`. Naming the other engine than the one holding data is
    /// refused: a node must never start over with an empty log and vote.
    #[arg(long, env = "CONCLAVE_LOG_ENGINE", value_enum)]
    pub log_engine: Option<LogEngineKind>,
    /// The async runtime: `current-thread` (default) runs the whole node on one thread and
    /// makes each Raft log append block it for its fsync; `multi-thread` runs one worker per
    /// core and appends under `block_in_place`. A node's tasks (gRPC connections, Raft core,
    /// replication, apply) hand work to each other many times per write, and across threads
    /// every hand-off is a futex wake-up and a context switch. Measured on 2 cores with 3
    /// members: current-thread gave 12-18% more writes/s for less CPU (docs/design.md).
    #[arg(long, env = "CONCLAVE_RUNTIME", value_enum, default_value_t = RuntimeKind::CurrentThread)]
    pub runtime: RuntimeKind,
    /// HTTP address for `/livez`, `/readyz` and `/metrics` (Prometheus), e.g. `0.0.0.0:9379`.
    /// Off when unset. `grpc.health.v1` is always served on the client address.
    #[arg(long, env = "CONCLAVE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// ZooKeeper client-protocol address (e.g. `0.0.0.0:2181`): ZooKeeper 3.5-3.9 clients
    /// (Curator, kazoo, zkCli) talk to this member there. Off when unset.
    #[arg(long, env = "CONCLAVE_ZK_ADDR")]
    pub zk_addr: Option<SocketAddr>,
    /// ZooKeeper `tickTime` in ms: session timeouts are negotiated into [2, 20] ticks.
    #[arg(long, env = "CONCLAVE_ZK_TICK_MS", default_value_t = 2_000)]
    pub zk_tick_ms: u64,
    /// How often the leader deletes empty containers and expired TTL nodes, ms (ZooKeeper's
    /// `znode.container.checkIntervalMs`).
    #[arg(long, env = "CONCLAVE_ZK_CONTAINER_CHECK_MS", default_value_t = 60_000)]
    pub zk_container_check_ms: u64,
    /// A container that never had a child is deleted once its mtime is this old, ms; 0 keeps
    /// it (ZooKeeper's `znode.container.maxNeverUsedIntervalMs`, default 0).
    #[arg(long, env = "CONCLAVE_ZK_CONTAINER_NEVER_USED_MS", default_value_t = 0)]
    pub zk_container_never_used_ms: u64,
    /// ZooKeeper super user, `user:BASE64(SHA1(user:password))` (ZooKeeper's
    /// `zookeeper.DigestAuthenticationProvider.superDigest`): a connection that adds this digest
    /// identity bypasses every ACL. Off when unset.
    #[arg(long, env = "CONCLAVE_ZK_SUPER_DIGEST")]
    pub zk_super_digest: Option<String>,
    /// Largest ZooKeeper reply frame, bytes (clients' `jute.maxbuffer`, 0xfffff by default):
    /// a bigger reply (getData, getChildren of a huge node) is answered MARSHALLINGERROR.
    #[arg(long, env = "CONCLAVE_ZK_MAX_RESPONSE_BYTES", default_value_t = 0xfffff)]
    pub zk_max_response_bytes: usize,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `conclave_server=debug`.
    #[arg(long, env = "CONCLAVE_LOG", default_value = "info")]
    pub log: String,
    /// Identity from a StatefulSet pod (`--statefulset SERVICE`).
    #[command(flatten)]
    pub statefulset: statefulset::StatefulSetArgs,
    /// TLS of the client and peer ports.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Authentication and authorization.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// The tokio runtime a node runs on (see `--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// One thread for the whole node; blocking storage calls run inline.
    CurrentThread,
    /// One worker thread per core.
    MultiThread,
}

impl RuntimeKind {
    /// Builds the runtime.
    ///
    /// # Errors
    /// When the OS refuses the runtime's threads or its I/O driver.
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            RuntimeKind::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            RuntimeKind::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }
}

/// The Raft log's storage engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogEngineKind {
    /// Append-only segment files (`storage/file_engine.rs`).
    File,
    /// sled 0.34 (`storage/engine.rs`).
    Sled,
}

impl LogEngineKind {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            LogEngineKind::File => "file",
            LogEngineKind::Sled => "sled",
        }
    }

    /// The engine's directory under the data directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            LogEngineKind::File => "raftlog",
            LogEngineKind::Sled => "raft",
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Client listen address.
    pub client_addr: SocketAddr,
    /// Client address advertised to others.
    pub advertise_client_addr: String,
    /// Peer listen address.
    pub peer_addr: SocketAddr,
    /// Initial members by id → peer address (always lists this node, with the peer address the
    /// others know it by).
    pub initial_cluster: BTreeMap<u64, String>,
    /// Client endpoints of the cluster to join (empty: form or restart from --initial-cluster).
    pub join: Vec<String>,
    /// Token of the cluster id (see `raft::cluster_id`).
    pub initial_cluster_token: String,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Minimum election timeout.
    pub election_timeout: Duration,
    /// Snapshot period in log entries.
    pub snapshot_logs: u64,
    /// Logs kept after a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Retained history.
    pub history_revisions: u64,
    /// Write batches in flight.
    pub batches_in_flight: usize,
    /// The framed peer wire toward members that serve it.
    pub peer_wire: bool,
    /// Linearizable reads by the leader's read lease.
    pub read_lease: bool,
    /// Watch limit per stream.
    pub max_watches_per_stream: usize,
    /// Watch progress notification interval.
    pub watch_progress_interval: Duration,
    /// Raft log engine, if named on the command line.
    pub log_engine: Option<LogEngineKind>,
    /// HTTP listener of the probes and metrics (None: off).
    pub metrics_addr: Option<SocketAddr>,
    /// ZooKeeper protocol listener (None: off).
    pub zk_addr: Option<SocketAddr>,
    /// ZooKeeper tick, ms.
    pub zk_tick_ms: u64,
    /// Interval of the leader's container and TTL check.
    pub zk_container_check: Duration,
    /// When never-used containers go (`ReapRules`).
    pub zk_reap_rules: crate::state_machine::ReapRules,
    /// The ZooKeeper super user's digest identity, validated.
    pub zk_super_digest: Option<String>,
    /// Largest ZooKeeper reply frame, bytes.
    pub zk_max_response_bytes: usize,
    /// TLS of the client and peer ports.
    pub tls: TlsConfig,
    /// Authentication.
    pub auth: crate::auth::AuthConfig,
}

/// Accepts ZooKeeper's superDigest form, `user:BASE64` of a 20-byte SHA-1.
fn check_super_digest(digest: &str) -> Result<String, String> {
    let valid = digest.split_once(':').is_some_and(|(user, hash)| {
        !user.is_empty()
            && hash.len() == 28
            && hash.ends_with('=')
            && hash.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    });
    if !valid {
        return Err(format!(
            "--zk-super-digest {digest:?} is not user:BASE64(SHA1(user:password)) (28 base64 characters after the colon); \
             make one with: echo -n super:PASSWORD | openssl dgst -binary -sha1 | openssl base64"
        ));
    }
    Ok(digest.to_string())
}

/// Accepts `host:port` where host is an IP address or a DNS name (e.g. a StatefulSet pod's
/// `conclave-0.conclave:7380`).
fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not host:port"))?;
    port.parse::<u16>().map_err(|_| format!("{addr:?} has no valid port"))?;
    let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(format!("{addr:?}: {host:?} is not a host name or IP address"));
    }
    Ok(())
}

/// Parses `1=127.0.0.1:7380,2=127.0.0.2:7380` (or DNS names instead of IPs).
///
/// # Errors
/// A message naming the malformed part.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| format!("--initial-cluster: {part:?} is not id=host:port"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("--initial-cluster: {id:?} is not a node id"))?;
        if id == 0 {
            return Err("--initial-cluster: node id 0 is reserved".into());
        }
        let addr = addr.trim();
        check_host_port(addr).map_err(|e| format!("--initial-cluster: {e}"))?;
        if members.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--initial-cluster: node {id} is listed twice"));
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    Ok(members)
}

impl ServeArgs {
    /// Validates into a [`Config`].
    ///
    /// # Errors
    /// A message naming the bad flag.
    pub fn validate(&self) -> Result<Config, String> {
        let ports = statefulset::Ports { client: self.client_addr.port(), peer: self.peer_addr.port() };
        let (node_id, initial_cluster, join, advertise_client_addr) = match self.statefulset.identity(ports)? {
            Some(pod) => (pod.node_id, pod.initial_cluster, pod.join, pod.advertise_client_addr),
            None => {
                let initial_cluster = match &self.initial_cluster {
                    Some(s) => parse_initial_cluster(s)?,
                    None => BTreeMap::from([(self.node_id, self.peer_addr.to_string())]),
                };
                let advertise = self.advertise_client_addr.clone().unwrap_or_else(|| self.client_addr.to_string());
                (self.node_id, initial_cluster, self.join.clone(), advertise)
            }
        };
        if node_id == 0 {
            return Err("--node-id must be at least 1".into());
        }
        if !initial_cluster.contains_key(&node_id) {
            return Err(format!("--initial-cluster does not list this node (--node-id {node_id})"));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Err("--election-timeout-ms must be at least 3 x --heartbeat-ms".into());
        }
        if self.snapshot_logs == 0 || self.history_revisions == 0 {
            return Err("--snapshot-logs and --history-revisions must be positive".into());
        }
        let tls = self.tls.validate()?;
        if !join.is_empty() {
            tls.join_dialing()?;
        }
        Ok(Config {
            node_id,
            data_dir: self.data_dir.clone(),
            client_addr: self.client_addr,
            advertise_client_addr,
            peer_addr: self.peer_addr,
            initial_cluster,
            join,
            initial_cluster_token: self.initial_cluster_token.clone(),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_timeout: Duration::from_millis(self.election_timeout_ms),
            snapshot_logs: self.snapshot_logs,
            logs_kept_after_snapshot: self.logs_kept_after_snapshot,
            history_revisions: self.history_revisions,
            batches_in_flight: self.batches_in_flight.max(1),
            peer_wire: self.peer_wire,
            read_lease: self.read_lease,
            max_watches_per_stream: self.max_watches_per_stream.max(1),
            watch_progress_interval: Duration::from_millis(self.watch_progress_ms.max(10)),
            log_engine: self.log_engine,
            metrics_addr: self.metrics_addr,
            zk_addr: self.zk_addr,
            zk_tick_ms: self.zk_tick_ms.max(1),
            zk_container_check: Duration::from_millis(self.zk_container_check_ms.max(10)),
            zk_reap_rules: crate::state_machine::ReapRules { never_used_ms: self.zk_container_never_used_ms },
            zk_super_digest: self.zk_super_digest.as_deref().map(check_super_digest).transpose()?,
            zk_max_response_bytes: self.zk_max_response_bytes.max(1024),
            tls,
            auth: self.auth.validate()?,
        })
    }
}

/// Chooses the log engine for `data_dir`: the one named, else the one holding data, else
/// `file`.
///
/// # Errors
/// When the engine named is not the one whose data the directory holds.
pub fn choose_log_engine(data_dir: &std::path::Path, named: Option<LogEngineKind>) -> Result<LogEngineKind, String> {
    let holds = |k: LogEngineKind| data_dir.join(k.dir_name()).exists();
    let present = match (holds(LogEngineKind::File), holds(LogEngineKind::Sled)) {
        (true, true) => {
            return Err(format!(
                "{} holds both a file log ({}/) and a sled log ({}/); remove the one not in use",
                data_dir.display(),
                LogEngineKind::File.dir_name(),
                LogEngineKind::Sled.dir_name()
            ))
        }
        (true, false) => Some(LogEngineKind::File),
        (false, true) => Some(LogEngineKind::Sled),
        (false, false) => None,
    };
    match (named, present) {
        (Some(n), Some(p)) if n != p => Err(format!(
            "--log-engine {} but {} holds a {} log ({}/): starting with an empty log and vote could \
             elect two leaders; use --log-engine {} (or move the data away to make a new member)",
            n.name(),
            data_dir.display(),
            p.name(),
            p.dir_name(),
            p.name()
        )),
        (_, Some(p)) => Ok(p),
        (named, None) => Ok(named.unwrap_or(LogEngineKind::File)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects_garbage() {
        let m = parse_initial_cluster("1=127.0.0.1:7380, 2=127.0.0.2:7380").expect("valid");
        assert_eq!(m.len(), 2);
        assert!(parse_initial_cluster("1=127.0.0.1:7380,1=127.0.0.2:7380").is_err());
        assert!(parse_initial_cluster("x=127.0.0.1:7380").is_err());
        assert!(parse_initial_cluster("1=nowhere").is_err());
        assert!(parse_initial_cluster("1=conclave-0.conclave.default.svc:7380").is_ok());
        assert!(parse_initial_cluster("1=bad host:1").is_err());
        assert!(parse_initial_cluster("0=127.0.0.1:1").is_err());
    }

    #[test]
    fn log_engine_follows_the_data_and_refuses_a_mismatch() {
        let dir = tempfile::TempDir::new().expect("tmp");
        assert_eq!(choose_log_engine(dir.path(), None), Ok(LogEngineKind::File));
        assert_eq!(choose_log_engine(dir.path(), Some(LogEngineKind::Sled)), Ok(LogEngineKind::Sled));
        std::fs::create_dir(dir.path().join("raft")).expect("mkdir");
        assert_eq!(choose_log_engine(dir.path(), None), Ok(LogEngineKind::Sled), "an existing sled log is kept");
        let err = choose_log_engine(dir.path(), Some(LogEngineKind::File)).expect_err("mismatch");
        assert!(err.contains("--log-engine sled"), "{err}");
        std::fs::create_dir(dir.path().join("raftlog")).expect("mkdir");
        assert!(choose_log_engine(dir.path(), None).is_err(), "both present");
    }
}
