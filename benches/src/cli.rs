//! Command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::disk::Disk;
use crate::jobmanager::JobManagerArgs;
use crate::targets::TargetKind;
use crate::workloads::Workload;

/// Runs the same workloads against Conclave, etcd and ZooKeeper (3 members each, on loopback)
/// and writes a Markdown table, JSON and SVG plots under `<out>/<timestamp>/`.
#[derive(Debug, Parser)]
#[command(name = "conclave-bench", version)]
pub struct Cli {
    /// Internal subcommands (the harness runs them as child processes).
    #[command(subcommand)]
    pub command: Option<Sub>,
    /// Suite options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// A job-manager process for the job-manager failover workload (internal).
    #[command(hide = true)]
    JobManager(JobManagerArgs),
}

/// Options of a suite run.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// A 1-2 minute smoke run (short durations, fewer sessions and watchers, one repetition).
    #[arg(long)]
    pub quick: bool,
    /// Targets to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub targets: Vec<TargetKind>,
    /// Conclave's client profiles: `native` (its own Rust client: leader-following, one HTTP/2
    /// channel), `generic` (plain tonic channels, requests round-robin over the members, as
    /// other languages and etcd's `benchmark` connect; KV workloads only). Each profile is a
    /// Conclave column of its own, on a cluster of its own.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "native")]
    pub conclave_client: Vec<ClientProfile>,
    /// etcd's client profiles, as `--conclave-client`: `native` (a leader-following client on
    /// Conclave's HTTP/2 channel), `generic` (the same generic gRPC client as Conclave's
    /// `generic`). A `generic` Conclave row is compared with the `generic` etcd column when it
    /// ran, so that both systems are driven by the same load generator.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "native")]
    pub etcd_client: Vec<ClientProfile>,
    /// Connections the generic client profiles' users share, as etcd's `benchmark --conns N`
    /// with `--clients` users: N sets of one plain channel per member, user `i` on set `i mod
    /// N`. Default: a set per user (`--conns` = `--clients`, e.g. one client process each).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub generic_conns: Option<u16>,
    /// Disks the whole selection runs on, in turn: `native` (the machine's disk) or N, every
    /// system's data directories on `conclave-faultfs` (FUSE) with N ms added to each fsync /
    /// fdatasync (`0`: the FUSE layer alone). Needs /dev/fuse and root. E.g. `native,1,5`.
    #[arg(long, value_delimiter = ',', default_value = "native")]
    pub disk_latency_ms: Vec<Disk>,
    /// The `conclave-faultfs` binary of the slow-disk mode (default: next to this executable).
    #[arg(long, env = "CONCLAVE_FAULTFS_BIN")]
    pub faultfs_bin: Option<PathBuf>,
    /// Workloads to run (default: all but `big-state`, which is opt-in).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Results go to `<out>/<timestamp>/`.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out: PathBuf,
    /// Seconds of each throughput workload (default 20; quick 2).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Sessions of the keep-alive workload (default 10,000; quick 500).
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Keys of the big-state rows (`--workloads big-state`; default 1,000,000; quick 20,000).
    #[arg(long)]
    pub big_keys: Option<u64>,
    /// Sessions held during the big-state rows (default 10,000; quick 1,000; ZooKeeper at most
    /// 10,000: a session is a connection). The 100,000: see README "Benchmarks".
    #[arg(long)]
    pub big_sessions: Option<usize>,
    /// Watchers of the fan-out workload (default 1,000; quick 50).
    #[arg(long)]
    pub watchers: Option<usize>,
    /// Leader kills (default 5; quick 1).
    #[arg(long)]
    pub failover_reps: Option<usize>,
    /// The `conclave` server binary (default: next to this executable, i.e. the release build).
    #[arg(long, env = "CONCLAVE_BIN")]
    pub conclave_bin: Option<PathBuf>,
    /// Extra flags for every Conclave member, whitespace-separated (e.g.
    /// `--conclave-flags="--election-timeout-ms 200"`); default: none (the server's defaults).
    #[arg(long, allow_hyphen_values = true)]
    pub conclave_flags: Option<String>,
    /// The etcd 3.4 server (Debian package `etcd-server`).
    #[arg(long, default_value = crate::targets::etcd::DEFAULT_BINARY)]
    pub etcd_bin: PathBuf,
    /// ZooKeeper's server script (Debian package `zookeeper`).
    #[arg(long, default_value = crate::targets::zookeeper::DEFAULT_SCRIPT)]
    pub zk_server: PathBuf,
    /// Keep the servers' data directories and logs (printed at the end) instead of deleting them.
    #[arg(long)]
    pub keep_data: bool,
    /// Serve and connect over TLS (certificates generated at start): TLS on every client port,
    /// mutual TLS between members; Conclave and etcd (ZooKeeper stays plain text).
    #[arg(long)]
    pub tls: bool,
}

/// How the load generator talks to Conclave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientProfile {
    /// Conclave's own Rust client.
    Native,
    /// A generic gRPC client (see `targets::generic`).
    Generic,
}

impl ClientProfile {
    /// The Conclave target that runs this profile.
    pub fn conclave(self) -> TargetKind {
        match self {
            ClientProfile::Native => TargetKind::Conclave,
            ClientProfile::Generic => TargetKind::ConclaveGeneric,
        }
    }

    /// The etcd target that runs this profile.
    pub fn etcd(self) -> TargetKind {
        match self {
            ClientProfile::Native => TargetKind::Etcd,
            ClientProfile::Generic => TargetKind::EtcdGeneric,
        }
    }
}
