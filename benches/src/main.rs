//! `conclave-bench`: the same workloads against Conclave, etcd 3.4 and ZooKeeper 3.8 (three
//! members each, on loopback, fsync on), reported side by side with Conclave's ratios.
//!
//! ```sh
//! cargo build --release -p conclave-server -p conclave-bench
//! target/release/conclave-bench            # full suite (~15 min); --quick for a smoke run
//! ```
//!
//! Every server process is a child of the harness and is killed when the harness ends, fails,
//! panics or is interrupted (Ctrl-C, SIGTERM).

mod cli;
mod disk;
mod etcdpb;
mod jobmanager;
mod measure;
mod plot;
mod report;
mod suite;
mod targets;
mod workloads;

use clap::Parser;

/// jemalloc for the load generator: the clients of every target run in this process and share
/// its allocator, so a cheaper allocator leaves more of the machine to the servers under test.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    if let Some(cli::Sub::JobManager(args)) = cli.command {
        return jobmanager::run(args).await;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping the suite's future (on a signal) drops every target, which kills its members.
    tokio::select! {
        r = suite::run(cli.run) => {
            let dir = r?;
            println!("results: {}", dir.display());
            Ok(())
        }
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: servers stopped"),
        _ = term.recv() => anyhow::bail!("terminated: servers stopped"),
    }
}
