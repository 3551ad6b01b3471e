//! Command line: `test`, `test-all`, `check`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::nemesis;
use crate::workload::{self, Settings};

/// Fault-injection tests of Conclave: real processes, real faults, checked histories.
///
/// Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 harness or cluster error.
#[derive(Parser, Debug)]
#[command(name = "conclave-jepsen", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Runs one workload under the given faults.
    Test(TestArgs),
    /// Runs every workload under every nemesis (one at a time, then all together).
    TestAll(TestAllArgs),
    /// Re-runs the checkers on a saved history.
    Check(CheckArgs),
}

/// A list of nemeses as given to `--nemesis`.
#[derive(Clone, Debug)]
pub struct NemesisList(pub Vec<nemesis::Kind>);

fn parse_nemeses(s: &str) -> Result<NemesisList, String> {
    nemesis::parse_list(s).map(NemesisList)
}

/// Settings shared by `test` and `test-all`.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Seconds of workload (faults included); the final phase and checks come after.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub time_limit: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Seed of the fault schedule and the operation generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Client workers (each a sequence of logical processes with their own clients).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=200))]
    pub concurrency: u64,
    /// Target operations per second over all workers.
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// Deadline of one client operation, in milliseconds.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub op_timeout_ms: u64,
    /// Mean length of healthy and of faulty periods, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub nemesis_interval: f64,
    /// Register workload: operations per key.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ops_per_key: u64,
    /// Budget of the linearizability search, in seconds (over: verdict "unknown").
    #[arg(long, default_value_t = 60)]
    pub check_timeout: u64,
    /// Parent of the run directories (default: `store/` in the workspace).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// The `conclave` binary (default: $CONCLAVE_BIN, else built with cargo / found next to this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Do not show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Positive control: `register` reads are serializable (local, possibly stale), and
    /// `zk-register` reads are a plain `getData` (no `sync`); the linearizability checker is
    /// expected to flag them under partitions.
    #[arg(long)]
    pub unsafe_serializable_reads: bool,
    /// Run the cluster with TLS on (certificates generated for the run): mutual TLS on the
    /// client and peer ports; every client presents a certificate.
    #[arg(long)]
    pub tls: bool,
}

impl Common {
    /// Worker settings.
    pub fn settings(&self) -> Settings {
        Settings {
            concurrency: self.concurrency as usize,
            rate: self.rate,
            op_timeout: Duration::from_millis(self.op_timeout_ms),
            ops_per_key: self.ops_per_key,
            serializable_reads: self.unsafe_serializable_reads,
            seed: self.seed,
            tls: None,
        }
    }

    /// Checks what clap cannot.
    ///
    /// # Errors
    /// With a message for the user.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err("--rate must be positive".into());
        }
        if !(self.nemesis_interval >= 0.5 && self.nemesis_interval.is_finite()) {
            return Err("--nemesis-interval must be at least 0.5 s".into());
        }
        Ok(())
    }
}

/// `test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "register")]
    pub workload: workload::Kind,
    /// Faults: a comma-separated list of partition, kill, pause, clock, power; or `all`, or `none`.
    #[arg(long, default_value = "partition,kill", value_parser = parse_nemeses)]
    pub nemesis: NemesisList,
    /// Shared settings.
    #[command(flatten)]
    pub common: Common,
}

/// `test-all`.
#[derive(Args, Debug)]
pub struct TestAllArgs {
    /// Workloads to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<workload::Kind>,
    /// Nemeses, each run on its own, then all together (default: partition,kill,pause,clock,power).
    #[arg(long, default_value = "all", value_parser = parse_nemeses)]
    pub nemesis: NemesisList,
    /// Shared settings.
    #[command(flatten)]
    pub common: Common,
}

/// `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A `history.jsonl` written by a run.
    #[arg(long)]
    pub history: PathBuf,
    /// The workload (default: inferred from the operations).
    #[arg(long, value_enum)]
    pub workload: Option<workload::Kind>,
    /// Budget of the linearizability search, in seconds.
    #[arg(long, default_value_t = 60)]
    pub check_timeout: u64,
}
