//! Job-manager failover: two job-manager processes (`conclave-bench job-manager`) campaign; the
//! leader is `kill -9`ed and the time until the other is granted leadership is measured.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Outcome, Params, Status, Workload};
use crate::measure::{median, LatencyStats};
use crate::targets::{ChildGuard, Target, TargetKind};

/// A job-manager process and the lines it prints.
struct JobManager {
    process: ChildGuard,
    lines: mpsc::UnboundedReceiver<(String, Instant)>,
}

impl JobManager {
    fn spawn(target: &dyn Target, ttl: Duration, log: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let stderr = std::fs::File::options().create(true).append(true).open(log)?;
        let mut child = Command::new(exe)
            .arg("job-manager")
            .args(["--target", &format!("{:?}", target.kind()).to_lowercase()])
            .args(["--endpoints", &target.endpoints().join(",")])
            .args(["--ttl-ms", &ttl.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((line, Instant::now())).is_err() {
                    return;
                }
            }
        });
        Ok(Self { process: ChildGuard::from_child(child), lines })
    }

    /// Waits for a line starting with `prefix`; returns when it was read.
    async fn expect(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some((l, at))) if l.starts_with(prefix) => return Ok(at),
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("job manager exited before printing {prefix}"),
                Err(_) => anyhow::bail!("job manager did not print {prefix} within {timeout:?}"),
            }
        }
    }
}

/// Runs the repetitions on Conclave or etcd.
///
/// # Errors
/// When a job manager does not start, campaign or take over in time.
pub async fn run(target: &dyn Target, p: &Params, dir: &Path) -> anyhow::Result<Outcome> {
    if target.kind() == TargetKind::Zookeeper {
        return Ok(Outcome::new(
            Workload::JobManagerFailover,
            target.kind(),
            Status::NotAvailable("compared against etcd's election recipe only".into()),
        ));
    }
    let log = dir.join("job-managers.log");
    let mut leader = JobManager::spawn(target, p.election_ttl, &log)?;
    leader.expect("GRANTED", Duration::from_secs(60)).await?;
    let mut gaps = Vec::new();
    let mut errors = 0u64;
    let t0 = Instant::now();
    for _ in 0..p.election_reps {
        let mut standby = JobManager::spawn(target, p.election_ttl, &log)?;
        standby.expect("STANDBY", Duration::from_secs(60)).await?;
        // Let the standby's campaign reach the server and wait there.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A standby granted before the kill means the leader lost its claim while alive: a
        // recipe failure, not a takeover time.
        let mut early = false;
        while let Ok((line, _)) = standby.lines.try_recv() {
            early |= line.starts_with("GRANTED");
        }
        let kill = Instant::now();
        leader.process.kill();
        if early {
            errors += 1;
        } else {
            let granted = standby.expect("GRANTED", Duration::from_secs(60)).await?;
            gaps.push(granted.saturating_duration_since(kill));
        }
        leader = standby;
    }
    let mut o = Outcome::new(Workload::JobManagerFailover, target.kind(), Status::Ok);
    o.ops = gaps.len() as u64;
    o.errors = errors;
    if errors > 0 {
        o.notes.push(format!("{errors} times the standby was granted while the leader was still alive"));
    }
    o.elapsed_s = t0.elapsed().as_secs_f64();
    o.latency = Some(LatencyStats::from_durations(&gaps));
    o.samples = gaps.iter().map(Duration::as_secs_f64).collect();
    o.headline = Some(median(&o.samples));
    o.notes.push(format!(
        "session/lease TTL {:?}; takeover times (s): {}",
        p.election_ttl,
        o.samples.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(", ")
    ));
    Ok(o)
}
