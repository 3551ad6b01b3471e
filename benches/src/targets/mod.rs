//! The systems under test. Each target starts a 3-member cluster on loopback, hands out clients
//! (one [`Kv`] per simulated user), and can kill and restart members for failover workloads.

pub mod conclave;
pub mod conclave_zk;
pub mod etcd;
pub mod etcd_counter;
pub mod etcd_membership;
pub mod generic;
mod process;
pub mod tls;
pub mod zk_client;
pub mod zookeeper;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

pub use conclave_testkit::free_ports;
pub use process::ChildGuard;

/// Removes everything in `dir` but the entries named in `keep` (a replaced disk; ZooKeeper's
/// `myid` is configuration an operator writes back). The directory itself stays.
///
/// # Errors
/// When the directory cannot be listed or an entry cannot be removed.
pub fn empty_dir(dir: &Path, keep: &[&str]) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("list {}: {e}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_str().is_some_and(|n| keep.contains(&n)) {
            continue;
        }
        let removed =
            if entry.file_type()?.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| anyhow::anyhow!("remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// How long a member may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A boxed, sendable future (keeps the traits object-safe).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Conclave (the release binary, through `conclave-testkit`), driven by its own Rust client.
    Conclave,
    /// The same Conclave cluster, driven by a generic gRPC client (see [`generic`]).
    ConclaveGeneric,
    /// Conclave's ZooKeeper port (`--zk-addr`), driven by the ZooKeeper target's own client code.
    ConclaveZk,
    /// etcd 3.4 (`/usr/bin/etcd`), driven by a leader-following client on Conclave's HTTP/2 channel.
    Etcd,
    /// The same etcd, on a cluster of its own, driven by the generic gRPC client (see [`generic`]).
    EtcdGeneric,
    /// ZooKeeper 3.8 (`zkServer.sh start-foreground`).
    Zookeeper,
}

impl TargetKind {
    /// Every target, in report column order.
    pub const ALL: [TargetKind; 6] = [
        TargetKind::Conclave,
        TargetKind::ConclaveGeneric,
        TargetKind::ConclaveZk,
        TargetKind::Etcd,
        TargetKind::EtcdGeneric,
        TargetKind::Zookeeper,
    ];

    /// Display name.
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Conclave => "Conclave",
            TargetKind::ConclaveGeneric => "Conclave (generic gRPC client)",
            TargetKind::ConclaveZk => "Conclave (ZooKeeper protocol)",
            TargetKind::Etcd => "etcd",
            TargetKind::EtcdGeneric => "etcd (generic gRPC client)",
            TargetKind::Zookeeper => "ZooKeeper",
        }
    }
}

/// One user's connection: the operations the KV workloads need, each a complete client-side
/// recipe (retries across members included, bounded by a deadline).
pub trait Kv: Send + Sync {
    /// Writes a value (etcd put, ZooKeeper setData, creating the node on first use).
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>>;
    /// Reads a key, linearizably or from the contacted member's local state.
    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>>;
    /// Get-and-increment of a counter; returns how many attempts it took (1 = no conflict).
    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>>;
    /// Creates a new node `key` that no one else creates (ZooKeeper `create`). Only the
    /// ZooKeeper-protocol targets implement it (the `create` row is n/a elsewhere).
    fn create(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        let _ = (key, value);
        Box::pin(async { anyhow::bail!("create is a ZooKeeper-protocol workload") })
    }
}

/// What a session keep-alive run observed on the client side.
#[derive(Clone, Debug, Default)]
pub struct SessionRun {
    /// Sessions opened.
    pub opened: u64,
    /// Sessions that could not be opened or were lost during the hold.
    pub errors: u64,
    /// Time to open them all.
    pub open_time: Duration,
}

/// A handle on running sessions: dropping it stops their keep-alives.
pub trait SessionHold: Send {
    /// Sessions that are not alive (expired or disconnected) right now, by the client's view.
    fn lost(&self) -> BoxFut<'_, u64>;
}

/// Sent by a watcher for each notification: (watcher index, when it arrived).
pub type Notification = (usize, Instant);

/// A running cluster of one target.
pub trait Target: Send + Sync {
    /// Which system.
    fn kind(&self) -> TargetKind;
    /// Client addresses of the members, in member order.
    fn endpoints(&self) -> Vec<String>;
    /// Process ids of the running members.
    fn pids(&self) -> Vec<u32>;
    /// Data directories of the members.
    fn data_dirs(&self) -> Vec<PathBuf>;
    /// A new independent client (connection, session); `n` spreads clients over members where
    /// the system's own client would.
    fn client(&self, n: usize) -> BoxFut<'_, anyhow::Result<Arc<dyn Kv>>>;
    /// A client connected to member `member` only, for systems whose clients pick a member at
    /// random (ZooKeeper's): the one-client rows put one on each member in turn. `None` where
    /// the client chooses its member itself (etcd's and Conclave's clients).
    fn client_on(&self, member: usize) -> BoxFut<'_, Option<anyhow::Result<Arc<dyn Kv>>>> {
        let _ = member;
        Box::pin(async { None })
    }
    /// Index (0-based, member order) of the current leader.
    fn leader(&self) -> BoxFut<'_, anyhow::Result<usize>>;
    /// `kill -9` a member.
    fn kill(&self, member: usize) -> anyhow::Result<()>;
    /// Restarts a killed member from its data directory and waits until the cluster is whole.
    fn restart(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>>;
    /// Graceful stop of member `member` (SIGTERM; returns once it has exited).
    fn stop(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>>;
    /// Replaces member `member`'s disk as an operator replaces a failed one: `kill -9`, its data
    /// directory emptied, then whatever the system requires before a member may start on an
    /// empty disk (etcd: `member remove`, then `member add` with the same peer URL). Does not
    /// start it (see [`Target::start_wiped`]). Returns how the member is rebuilt, for the report.
    fn wipe(&self, member: usize) -> BoxFut<'_, anyhow::Result<String>>;
    /// Starts member `member` on the empty data directory [`Target::wipe`] left, the way the
    /// system documents for a member that lost its disk; returns once the process is spawned
    /// (it catches up from the others by itself).
    fn start_wiped(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>>;
    /// One serializable (local) read of `key` on member `member` alone, without retries and
    /// within about 2 s: `Ok(true)` when that member has the key, `Ok(false)` when it answers
    /// without it, an error when it does not answer (down, starting, not serving clients yet).
    fn read_local<'a>(&'a self, member: usize, key: &'a str) -> BoxFut<'a, anyhow::Result<bool>>;
    /// After a wiped member caught up: waits (bounded) until it is a full member again and the
    /// cluster whole (Conclave: promoted back to a voter), and returns what the member's log or
    /// data directory shows of how it was rebuilt (notes for the report).
    ///
    /// # Errors
    /// On timeout, or when the member did not rebuild as documented (Conclave: it bootstrapped
    /// instead of rejoining).
    fn rebuilt(&self, member: usize) -> BoxFut<'_, anyhow::Result<Vec<String>>>;
    /// Saves a backup of the whole state to `path` through the system's API and returns its
    /// size in bytes; `None` when the system has no such API (ZooKeeper).
    fn backup<'a>(&'a self, path: &'a Path) -> BoxFut<'a, Option<anyhow::Result<u64>>> {
        let _ = path;
        Box::pin(async { None })
    }
    /// Conclave only: the leader's last Raft log index (log growth).
    fn raft_log_index(&self) -> BoxFut<'_, Option<u64>> {
        Box::pin(async { None })
    }
    /// Opens `n` sessions (etcd: leases; ZooKeeper: sessions) with `ttl`, kept alive the way the
    /// system's own client does, until the returned handle is dropped.
    fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> BoxFut<'_, anyhow::Result<(SessionRun, Box<dyn SessionHold>)>>;
    /// Starts `n` watchers of `key`; each sends a [`Notification`] per change it sees. Returns once
    /// every watch is registered; dropping the returned guard stops them.
    fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> BoxFut<'_, anyhow::Result<Box<dyn Send>>>;
}

/// A lazily connected gRPC channel to `addr` (`host:port`), over TLS when the run uses it: the
/// client crate's channel, which sends a unary request in one write as etcd's own Go client does.
///
/// # Errors
/// When `addr` is not a valid `host:port`.
pub fn channel(addr: &str) -> anyhow::Result<conclave_client::GrpcChannel> {
    let options = conclave_client::ChannelOptions {
        keep_alive_interval: Duration::from_secs(5),
        tls: tls::get().map(|t| t.client.clone()),
        ..conclave_client::ChannelOptions::default()
    };
    conclave_client::GrpcChannel::new(addr, options).map_err(anyhow::Error::msg)
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
