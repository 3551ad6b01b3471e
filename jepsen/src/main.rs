//! `conclave-jepsen`: drives real `conclave` processes under real faults (partitions, crashes,
//! pauses, clock skew) inside a private network namespace, records every client operation and
//! checks the histories (linearizability, counters, sets, fencing, sessions, watches).
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 harness or cluster error.

mod checker;
mod cli;
mod history;
mod nemesis;
mod netns;
mod output;
mod plot;
mod progress;
mod runner;
mod test_all;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Cmd, Common};

/// Exit code for bad arguments.
const BAD_ARGS: i32 = 254;
/// Exit code for harness or cluster errors.
const HARNESS: i32 = 255;

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { BAD_ARGS } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.cmd {
        Cmd::Check(args) => check(&args),
        Cmd::Test(args) => {
            if let Err(m) = args.common.validate() {
                eprintln!("error: {m}");
                return BAD_ARGS;
            }
            let runs = 1;
            isolated(&args.common, runs, |opts| {
                let opts = runner::TestOpts { workload: args.workload, nemeses: args.nemesis.0.clone(), ..opts };
                async move { runner::run(&opts).await.map(|r| r.verdict.exit_code()) }
            })
        }
        Cmd::TestAll(args) => {
            if let Err(m) = args.common.validate() {
                eprintln!("error: {m}");
                return BAD_ARGS;
            }
            let workloads =
                if args.workloads.is_empty() { workload::Kind::ALL.to_vec() } else { args.workloads.clone() };
            let nemeses = args.nemesis.0.clone();
            let runs = workloads.len() * (nemeses.len() + usize::from(nemeses.len() > 1));
            isolated(&args.common, runs, |opts| async move {
                let (rows, code) = test_all::run(&opts, &workloads, &nemeses).await;
                let table = test_all::table(&rows);
                let path = opts.store.join(format!("test-all-{}.md", output::timestamp()));
                std::fs::create_dir_all(&opts.store)?;
                std::fs::write(&path, &table)?;
                println!("\n{table}\ntable saved to {}", path.display());
                Ok(code)
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jepsen: harness error: {e:#}");
            HARNESS
        }
    }
}

/// Outside the private namespace: finds (or builds) the server binary, then re-runs this
/// program inside a new namespace. Inside: sets up the namespace and runs `body`.
fn isolated<F, Fut>(common: &Common, runs: usize, body: F) -> anyhow::Result<i32>
where
    F: FnOnce(runner::TestOpts) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    if !netns::inside() {
        let binary = server_binary(common.binary.as_deref())?;
        std::env::set_var("CONCLAVE_BIN", &binary);
        // Generous: the workload, recovery (30 s), final phase (90 s), checks, per run.
        let per_run = common.time_limit + 180 + common.check_timeout;
        return netns::reexec(Duration::from_secs(per_run * runs as u64 + 60));
    }
    netns::bring_up_loopback()?;
    let binary = server_binary(common.binary.as_deref())?;
    let store = common.store.clone().unwrap_or_else(|| workspace_root().join("store"));
    let opts = runner::TestOpts {
        workload: workload::Kind::Register,
        nemeses: Vec::new(),
        time_limit: Duration::from_secs(common.time_limit),
        nodes: common.nodes as usize,
        seed: common.seed,
        settings: common.settings(),
        nemesis_interval: Duration::from_secs_f64(common.nemesis_interval),
        check_budget: Duration::from_secs(common.check_timeout),
        store,
        binary,
        progress: !common.no_progress,
        tls: common.tls,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(body(opts))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `--binary`, else `$CONCLAVE_BIN`, else (under `cargo run`) `cargo build --release -p
/// conclave-server` and its output, else a `conclave` next to this executable.
fn server_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("CONCLAVE_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("jepsen: building the server (cargo build --release -p conclave-server)");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "conclave-server", "--manifest-path"])
            .arg(workspace_root().join("Cargo.toml"))
            .status()?;
        if !status.success() {
            anyhow::bail!("building conclave-server failed");
        }
    }
    conclave_testkit::conclave_binary()
}

/// `check --history PATH`.
fn check(args: &cli::CheckArgs) -> anyhow::Result<i32> {
    if !args.history.is_file() {
        eprintln!("error: no history file at {}", args.history.display());
        return Ok(BAD_ARGS);
    }
    let events = history::load(&args.history)?;
    let Some(kind) = args.workload.or_else(|| workload::Kind::infer(&events)) else {
        eprintln!("error: cannot tell the workload of {}; pass --workload", args.history.display());
        return Ok(BAD_ARGS);
    };
    let results = workload::check(kind, &events, Duration::from_secs(args.check_timeout));
    let dir = args.history.parent().map(Path::to_path_buf).unwrap_or_default().join("recheck");
    std::fs::create_dir_all(&dir)?;
    let witnesses = output::write_witnesses(&dir, &results)?;
    println!("{}", output::summary(&args.history, &events, &results, &[], &witnesses, &[]));
    Ok(checker::overall(&results).exit_code())
}
