//! Session keep-alive cost: many sessions (etcd leases, ZooKeeper sessions) kept alive for a
//! while; the server CPU it costs and, for Conclave, how much the Raft log grows meanwhile.

use std::time::Instant;

use super::{Outcome, Params, Status, Workload};
use crate::measure::{dir_size, total_cpu};
use crate::targets::Target;

/// Opens `p.sessions` sessions, then measures `p.session_hold` of keeping them alive.
///
/// # Errors
/// When the sessions cannot be opened at all.
pub async fn run(target: &dyn Target, p: &Params) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    let (run, hold) = target.open_sessions(p.sessions, p.session_ttl, deadline).await?;
    anyhow::ensure!(run.opened > 0, "no session could be opened");
    let pids = target.pids();
    let dirs = target.data_dirs();
    let log0 = target.raft_log_index().await;
    let disk0: u64 = dirs.iter().map(|d| dir_size(d)).sum();
    let cpu0 = total_cpu(&pids);
    let t0 = Instant::now();
    tokio::time::sleep(p.session_hold).await;
    let cpu = total_cpu(&pids).saturating_sub(cpu0);
    let elapsed = t0.elapsed();
    let log1 = target.raft_log_index().await;
    let disk1: u64 = dirs.iter().map(|d| dir_size(d)).sum();
    let lost = hold.lost().await;
    drop(hold);

    let mut o = Outcome::new(Workload::Sessions, target.kind(), Status::Ok);
    o.ops = run.opened;
    o.errors = run.errors + lost;
    o.elapsed_s = elapsed.as_secs_f64();
    o.server_cpu_s = cpu.as_secs_f64();
    o.headline = Some(100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64());
    if let (Some(a), Some(b)) = (log0, log1) {
        o.raft_log_growth = Some(b.saturating_sub(a));
    }
    o.notes.push(format!(
        "{} sessions opened in {:.1} s ({:.0}/s); TTL {:?}; {lost} not alive at the end; data dirs grew {} KiB while holding",
        run.opened,
        run.open_time.as_secs_f64(),
        run.opened as f64 / run.open_time.as_secs_f64().max(1e-9),
        p.session_ttl,
        disk1.saturating_sub(disk0) / 1024
    ));
    Ok(o)
}
