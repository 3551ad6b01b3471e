//! `statefulset-suite`: proves `deploy/statefulset/` on real containers (run by
//! `deploy/statefulset/test.sh`, which builds the image and converts the manifest to JSON).
//!
//! Pods `conclave-0..N` run as Docker containers on a private network with the manifest's env,
//! args, user, read-only root fs, volume and grace period, and the DNS names a StatefulSet gives
//! them. With a writer and a session-holding job manager running throughout, it (1) forms the
//! cluster from scratch, (2) rolls a restart in reverse ordinal order gated on readiness, (3)
//! scales 3 → 5 → 3 through learners, (4) deletes a pod with its volume and recreates it, (5)
//! partitions the leader and heals it, (6) kills every pod with SIGKILL and restarts them; then
//! checks every acknowledged write.
//!
//! Exit codes: 0 passed; 1 a check failed (lost write, stuck client: no acknowledged write or
//! no job-manager leadership within 60 s after a step, unexpected client error,
//! job-manager leadership lost in the rolling restart, a step that did not complete); 2 bad
//! arguments or a missing tool.

mod docker;
mod manifest;
mod steps;
mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::time::Instant;

use docker::Pods;
use manifest::PodTemplate;
use workload::{Window, Workload};

/// Arguments.
#[derive(Debug, Parser)]
#[command(name = "statefulset-suite", about = "Container test suite of deploy/statefulset")]
struct Args {
    /// The manifest as a JSON array of its documents (test.sh converts statefulset.yaml).
    #[arg(long)]
    manifest_json: PathBuf,
    /// The image to run (built by build-image.sh).
    #[arg(long, default_value = "conclave:dev")]
    image: String,
    /// Namespace in the pods' DNS names.
    #[arg(long, default_value = "ctr")]
    namespace: String,
    /// Name of the private Docker network (also the volume prefix).
    #[arg(long, default_value = "conclave-ctr")]
    network: String,
    /// First three octets of the network's /24.
    #[arg(long, default_value = "10.213.57")]
    subnet: String,
    /// Where to write the timings (TSV).
    #[arg(long, default_value = "target/statefulset-suite/timings.tsv")]
    timings: PathBuf,
    /// Whole-suite time limit, seconds.
    #[arg(long, default_value_t = 900)]
    limit_secs: u64,
    /// Leave the containers, volumes and network behind (to inspect them).
    #[arg(long)]
    keep: bool,
}

/// One step's outcome.
struct Row {
    step: &'static str,
    took: Duration,
    window: Window,
    timings: steps::Timings,
    failure: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let code = match run(&args).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("statefulset-suite: {e:#}");
            if format!("{e:#}").contains("not installed") {
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

async fn run(args: &Args) -> Result<bool> {
    let text =
        std::fs::read_to_string(&args.manifest_json).with_context(|| format!("{}", args.manifest_json.display()))?;
    let docs: Vec<serde_json::Value> = serde_json::from_str(&text).context("manifest JSON")?;
    let template = PodTemplate::from_docs(&docs)?;
    let n = template.initial_members;
    println!(
        "pods {}-0..{} (image {}, manifest image {}), grace {} s, ready port {}",
        template.set_name,
        n - 1,
        args.image,
        template.image,
        template.grace_secs,
        template.ready_port
    );
    let pods = Pods {
        template,
        image: args.image.clone(),
        namespace: args.namespace.clone(),
        network: args.network.clone(),
        subnet: args.subnet.clone(),
    };
    pods.remove_all().await?;
    pods.create_network().await?;
    let result = tokio::time::timeout(Duration::from_secs(args.limit_secs), suite(&pods, n)).await;
    let passed = match result {
        Ok(Ok(rows)) => report(args, &rows)?,
        Ok(Err(e)) => {
            eprintln!("statefulset-suite: {e:#}");
            false
        }
        Err(_) => {
            eprintln!("statefulset-suite: not done within {} s", args.limit_secs);
            false
        }
    };
    if !passed {
        for i in 0..n + 2 {
            if let Ok(log) = pods.logs(i).await {
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- last lines of {} ---", pods.name(i));
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
    if !args.keep {
        pods.remove_all().await?;
    }
    Ok(passed)
}

/// Runs the steps; a step that fails ends the suite (its row says why).
async fn suite(pods: &Pods, n: u64) -> Result<Vec<Row>> {
    let started = Instant::now();
    let formed = steps::form(pods, n).await?;
    let endpoints: Vec<String> = (0..n).map(|i| pods.endpoint(i)).collect();
    let admin = workload::service_client(endpoints.clone()).await?;
    let load = Workload::start(endpoints).await?;
    load.wait_leadership(Duration::from_secs(60)).await?;
    load.wait_progress(Duration::from_secs(30)).await?;
    let mut rows = vec![Row {
        step: "1 form 3 from scratch",
        took: started.elapsed(),
        window: Window::default(),
        timings: formed,
        failure: None,
    }];
    for step in 2..=6u8 {
        let t0 = Instant::now();
        let (name, outcome) = match step {
            2 => ("2 rolling restart", steps::rolling_restart(pods, n, &load.events).await),
            3 => ("3 scale 3->5->3", steps::scale(pods, &admin, n).await),
            4 => ("4 pod + volume lost", steps::lose_volume(pods, 1).await),
            5 => ("5 partition leader", steps::partition(pods).await),
            _ => ("6 kill -9 all", steps::kill_all(pods, n).await),
        };
        let mut failure = outcome.as_ref().err().map(|e| format!("{e:#}"));
        // Neither client may be stuck: the writer gets a write through and the job manager
        // leads (again), each within a minute.
        if failure.is_none() {
            let progress = load.wait_progress(Duration::from_secs(60)).await.map(drop);
            if let Err(e) = progress.and(load.wait_leadership(Duration::from_secs(60)).await) {
                failure = Some(e.to_string());
            }
        }
        let took = t0.elapsed();
        let window = load.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).window(t0, Instant::now());
        if failure.is_none() && !window.unexpected.is_empty() {
            failure = Some(format!("unexpected client errors: {}", window.unexpected.join("; ")));
        }
        if failure.is_none() && step == 2 && !(window.errors.is_empty() && window.revocations.is_empty()) {
            failure = Some(format!(
                "clients saw errors {:?} / job-manager leadership lost {:?} during the rolling restart",
                window.errors, window.revocations
            ));
        }
        let stop = failure.is_some();
        rows.push(Row { step: name, took, window, timings: outcome.unwrap_or_default(), failure });
        if stop {
            return Ok(rows);
        }
    }
    let t0 = Instant::now();
    let verified = load.stop_and_verify().await;
    let (timings, failure) = match verified {
        Ok((acked, stored, maybe)) => (
            vec![(
                format!("{acked} acknowledged writes all present ({stored} stored, {maybe} indeterminate)"),
                t0.elapsed(),
            )],
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    rows.push(Row {
        step: "check every acknowledged write",
        took: t0.elapsed(),
        window: Window::default(),
        timings,
        failure,
    });
    Ok(rows)
}

/// Prints the summary table and writes the timings; returns whether every step passed.
fn report(args: &Args, rows: &[Row]) -> Result<bool> {
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    println!(
        "\n{:<32} {:>9} {:>12} {:>7} {:>7} {:>8}  result",
        "step", "took ms", "max gap ms", "acked", "errors", "revoked"
    );
    for r in rows {
        let result = r.failure.as_deref().map_or("ok".to_owned(), |f| format!("FAILED: {f}"));
        println!(
            "{:<32} {:>9} {:>12} {:>7} {:>7} {:>8}  {result}",
            r.step,
            ms(r.took),
            if r.window.acked > 0 || r.window.longest_gap > Duration::ZERO {
                ms(r.window.longest_gap)
            } else {
                "-".into()
            },
            r.window.acked,
            r.window.errors.len(),
            r.window.revocations.len()
        );
        for (what, d) in &r.timings {
            println!("    {what}: {} ms", ms(*d));
        }
        for e in r.window.errors.iter().take(5) {
            println!("    client error: {e}");
        }
    }
    if let Some(dir) = args.timings.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::File::create(&args.timings).with_context(|| format!("{}", args.timings.display()))?;
    writeln!(f, "step\tmeasure\tms")?;
    for r in rows {
        writeln!(f, "{}\ttotal\t{}", r.step, ms(r.took))?;
        if r.window.acked > 0 {
            writeln!(f, "{}\tlongest write gap\t{}", r.step, ms(r.window.longest_gap))?;
        }
        for (what, d) in &r.timings {
            writeln!(f, "{}\t{what}\t{}", r.step, ms(*d))?;
        }
    }
    println!("timings written to {}", args.timings.display());
    let passed = rows.iter().all(|r| r.failure.is_none()) && rows.len() == 7;
    println!("{}", if passed { "PASSED" } else { "FAILED" });
    Ok(passed)
}
