//! The workloads, identical for every target, and what one run of one produces.

pub mod big;
pub mod catch_up;
pub mod election;
pub mod failover;
pub mod kv;
pub mod load;
pub mod rolling;
pub mod sessions;
pub mod watch;
pub mod writers;

use std::time::Duration;

use serde::Serialize;

use crate::disk::Disk;
use crate::measure::LatencyStats;
use crate::targets::TargetKind;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// put, 1 client, 256-byte values.
    Put1,
    /// put, 64 clients, 256-byte values.
    Put64,
    /// create of distinct new nodes, 64 clients, 256-byte values (ZooKeeper-protocol targets).
    Create,
    /// linearizable get, 64 clients.
    GetLinearizable,
    /// serializable (local) get, 64 clients.
    GetSerializable,
    /// serializable (local) get, 64 clients, while 16 other clients put: how long reads wait
    /// behind the writes' log appends (headline: the reads' p99).
    GetUnderWrites,
    /// linearizable get, 64 clients, while 16 other clients put: how long a read waits for the
    /// leader's quorum check behind the writes' appends (headline: the reads' p99).
    GetLinUnderWrites,
    /// get-and-increment of one counter, 1 client.
    Counter1,
    /// get-and-increment of one counter, 16 clients.
    Counter16,
    /// 10,000 sessions kept alive.
    Sessions,
    /// 1,000 watchers of one key.
    WatchFanout,
    /// kill -9 the leader under a steady write load.
    LeaderFailover,
    /// kill -9 the leading job manager.
    JobManagerFailover,
    /// SIGTERM and restart every member in turn under a steady write load.
    RollingRestart,
    /// Big state (opt-in): `--big-keys` keys and `--big-sessions` sessions on a fresh cluster,
    /// reported as the `big-*` rows below.
    BigState,
    /// Big state: loading the keys, 64 clients.
    #[value(skip)]
    BigLoad,
    /// Big state: put, 64 clients, over the loaded keys.
    #[value(skip)]
    BigPut64,
    /// Big state: serializable get, 64 clients, over the loaded keys.
    #[value(skip)]
    BigGet,
    /// Big state: largest member RSS after loading.
    #[value(skip)]
    BigRss,
    /// Big state: backup (snapshot) of the whole state through the API.
    #[value(skip)]
    BigSnapshot,
    /// Big state: `kill -9` of a follower until the cluster is whole again.
    #[value(skip)]
    BigRestart,
    /// Big state: a follower that lost its disk, rebuilt from the leader, until a local read on
    /// it returns a key written while it was down.
    #[value(skip)]
    BigCatchUp,
}

/// Whether a bigger headline number is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, time, CPU.
    Lower,
}

impl Workload {
    /// The workloads of a run without `--workloads` (big state is opt-in: it takes minutes per
    /// target and gigabytes of memory).
    pub const DEFAULT: [Workload; 14] = [
        Workload::Put1,
        Workload::Put64,
        Workload::Create,
        Workload::GetLinearizable,
        Workload::GetSerializable,
        Workload::GetUnderWrites,
        Workload::GetLinUnderWrites,
        Workload::Counter1,
        Workload::Counter16,
        // The fan-out before the sessions: measured right after ZooKeeper's 10,000 sessions
        // (likely their client tasks in this process going on after the servers stop; not
        // traced), Conclave's p99 was 16.4 ms against 3.6-3.9 ms otherwise (README "Benchmarks").
        Workload::WatchFanout,
        Workload::Sessions,
        Workload::LeaderFailover,
        Workload::JobManagerFailover,
        Workload::RollingRestart,
    ];

    /// The rows of [`Workload::BigState`], in report order.
    pub const BIG: [Workload; 7] = [
        Workload::BigLoad,
        Workload::BigPut64,
        Workload::BigGet,
        Workload::BigRss,
        Workload::BigSnapshot,
        Workload::BigRestart,
        Workload::BigCatchUp,
    ];

    /// Every report row, in report order: [`Workload::DEFAULT`], then [`Workload::BIG`].
    pub const ALL: [Workload; 21] = {
        let mut all = [Workload::Put1; 21];
        let mut i = 0;
        while i < Self::DEFAULT.len() {
            all[i] = Self::DEFAULT[i];
            i += 1;
        }
        while i < all.len() {
            all[i] = Self::BIG[i - Self::DEFAULT.len()];
            i += 1;
        }
        all
    };

    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Put1 => "put, 1 client",
            Workload::Put64 => "put, 64 clients",
            Workload::Create => "create, 64 clients",
            Workload::GetLinearizable => "get linearizable, 64 clients",
            Workload::GetSerializable => "get serializable, 64 clients",
            Workload::GetUnderWrites => "get serializable, 64 clients, beside 16 writers",
            Workload::GetLinUnderWrites => "get linearizable, 64 clients, beside 16 writers",
            Workload::Counter1 => "hot counter, 1 client",
            Workload::Counter16 => "hot counter, 16 clients",
            Workload::Sessions => "session keep-alive",
            Workload::WatchFanout => "watch fan-out",
            Workload::LeaderFailover => "leader failover",
            Workload::JobManagerFailover => "job-manager failover",
            Workload::RollingRestart => "rolling restart (SIGTERM)",
            Workload::BigState => "big state",
            Workload::BigLoad => "big state: load, 64 clients",
            Workload::BigPut64 => "big state: put, 64 clients",
            Workload::BigGet => "big state: get serializable, 64 clients",
            Workload::BigRss => "big state: memory",
            Workload::BigSnapshot => "big state: backup of the whole state",
            Workload::BigRestart => "big state: follower kill -9 → cluster whole",
            Workload::BigCatchUp => "big state: follower disk lost → caught up by snapshot",
        }
    }

    /// What the headline number is, and which way is better.
    pub fn headline(self) -> (&'static str, Better) {
        match self {
            Workload::Sessions => ("server CPU, % of one core", Better::Lower),
            Workload::GetUnderWrites | Workload::GetLinUnderWrites => ("read p99, ms", Better::Lower),
            Workload::WatchFanout => ("ack → last notification p99, ms", Better::Lower),
            Workload::LeaderFailover => ("median gap to next acked write, s", Better::Lower),
            Workload::JobManagerFailover => ("median time to new leader, s", Better::Lower),
            Workload::RollingRestart => ("longest gap without an acked write, ms", Better::Lower),
            Workload::BigRss => ("largest member RSS, MiB", Better::Lower),
            Workload::BigSnapshot => ("backup time, s", Better::Lower),
            Workload::BigRestart => ("restart to ready, s", Better::Lower),
            Workload::BigCatchUp => ("start to caught up, s", Better::Lower),
            _ => ("ops/s", Better::Higher),
        }
    }

    /// Whether the workload runs on the shared KV cluster (else on a fresh one).
    pub fn shares_cluster(self) -> bool {
        matches!(
            self,
            Workload::Put1
                | Workload::Put64
                | Workload::Create
                | Workload::GetLinearizable
                | Workload::GetSerializable
                | Workload::GetUnderWrites
                | Workload::GetLinUnderWrites
                | Workload::Counter1
                | Workload::Counter16
        )
    }
}

/// Sizes and durations of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Measured time of each throughput workload.
    pub duration: Duration,
    /// Upper bound on the operations of one throughput workload (all clients together).
    pub max_ops: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Sessions kept alive.
    pub sessions: usize,
    /// Session TTL (etcd lease TTL, ZooKeeper session timeout).
    pub session_ttl: Duration,
    /// How long the sessions are kept alive while measuring.
    pub session_hold: Duration,
    /// Watchers of the one key.
    pub watchers: usize,
    /// Puts (rounds) of the watch workload.
    pub watch_rounds: usize,
    /// Leader kills.
    pub failover_reps: usize,
    /// Clients writing during leader failover.
    pub failover_clients: usize,
    /// Job-manager kills.
    pub election_reps: usize,
    /// TTL of the job managers' session / lease.
    pub election_ttl: Duration,
    /// Keys of the big-state rows.
    pub big_keys: u64,
    /// Sessions held during the big-state rows (ZooKeeper: at most [`big::ZK_MAX_SESSIONS`],
    /// a session being a connection).
    pub big_sessions: usize,
}

impl Params {
    /// The full suite.
    pub fn full() -> Self {
        Self {
            duration: Duration::from_secs(20),
            max_ops: 5_000_000,
            value_size: 256,
            sessions: 10_000,
            session_ttl: Duration::from_secs(10),
            session_hold: Duration::from_secs(30),
            watchers: 1_000,
            watch_rounds: 200,
            failover_reps: 5,
            failover_clients: 8,
            election_reps: 5,
            election_ttl: Duration::from_secs(2),
            big_keys: 1_000_000,
            big_sessions: 10_000,
        }
    }

    /// A 1-2 minute smoke run: same shapes, much smaller.
    pub fn quick() -> Self {
        Self {
            duration: Duration::from_secs(2),
            max_ops: 200_000,
            sessions: 500,
            session_hold: Duration::from_secs(3),
            watchers: 50,
            watch_rounds: 5,
            failover_reps: 1,
            election_reps: 1,
            big_keys: 20_000,
            big_sessions: 1_000,
            ..Self::full()
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Measured.
    Ok,
    /// The target's server is not installed.
    Skipped(String),
    /// The workload does not apply to this target or the API is missing.
    NotAvailable(String),
    /// The run failed.
    Failed(String),
}

/// What one workload on one target produced.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Which workload.
    pub workload: Workload,
    /// Which target.
    pub target: TargetKind,
    /// Which disk the members' data directories were on.
    pub disk: Disk,
    /// How it ended.
    pub status: Status,
    /// Operations completed (sessions opened, notifications received, ...).
    pub ops: u64,
    /// Failed operations (lost sessions, missed notifications, ...).
    pub errors: u64,
    /// Measured time, seconds.
    pub elapsed_s: f64,
    /// Operations per second, for throughput workloads.
    pub ops_per_sec: Option<f64>,
    /// Latency of operations (watch: ack → last notification per put; failover: gaps).
    pub latency: Option<LatencyStats>,
    /// Sum of the members' RSS at the end, bytes.
    pub rss_bytes: u64,
    /// Sum of the members' data directories at the end, bytes.
    pub data_dir_bytes: u64,
    /// Server CPU (all members) during the measured time, seconds.
    pub server_cpu_s: f64,
    /// Conclave only: Raft log entries added during the measured time.
    pub raft_log_growth: Option<u64>,
    /// Headline number (see [`Workload::headline`]).
    pub headline: Option<f64>,
    /// Per-repetition values (failover gaps, seconds).
    pub samples: Vec<f64>,
    /// Anything worth knowing about this run.
    pub notes: Vec<String>,
}

impl Outcome {
    /// An outcome with nothing measured yet.
    pub fn new(workload: Workload, target: TargetKind, status: Status) -> Self {
        Self {
            workload,
            target,
            disk: Disk::Native,
            status,
            ops: 0,
            errors: 0,
            elapsed_s: 0.0,
            ops_per_sec: None,
            latency: None,
            rss_bytes: 0,
            data_dir_bytes: 0,
            server_cpu_s: 0.0,
            raft_log_growth: None,
            headline: None,
            samples: Vec::new(),
            notes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_and_big_state_only_through_its_rows() {
        let mut seen = std::collections::BTreeSet::new();
        assert!(Workload::ALL.iter().all(|w| seen.insert(*w)), "a row appears twice in {:?}", Workload::ALL);
        assert!(Workload::DEFAULT.iter().chain(&Workload::BIG).all(|w| seen.contains(w)));
        assert!(!seen.contains(&Workload::BigState), "big state is reported as its rows");
    }
}
