//! Rolling restart: every member in turn (the leader first) gets SIGTERM, is started again and
//! waited for, under a steady write load: the longest stretch without an acknowledged write,
//! and the errors the writers saw. A member that hands leadership off before it stops (etcd
//! does; Conclave does, see `conclavectl move-leader`) keeps both near zero.

use std::time::{Duration, Instant};

use super::failover::gap_after;
use super::writers::Writers;
use super::{Outcome, Params, Workload};
use crate::measure::median;
use crate::targets::Target;

/// Runs one rolling restart of every member.
///
/// # Errors
/// When the clients cannot be created or a member cannot be stopped or restarted.
pub async fn run(target: &dyn Target, p: &Params) -> anyhow::Result<Outcome> {
    let writers = Writers::start(target, p, "rr", Duration::from_secs(300)).await?;
    let mut gaps = Vec::new();
    let result = async {
        // Pacing, not waiting for a condition: writers run a second before the first stop, and
        // each member gets half a second back in the cluster before the next one stops (as an
        // operator's rolling restart does; without it the next stop lands while the member is
        // still catching up, and the gaps measured are those of that catch-up: 230-280 ms).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = target.leader().await?;
        let members = target.endpoints().len();
        let order: Vec<usize> = std::iter::once(leader).chain((0..members).filter(|m| *m != leader)).collect();
        for m in order {
            let stopped = Instant::now();
            target.stop(m).await?;
            target.restart(m).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            gaps.push(gap_after(&writers.acks(), stopped).unwrap_or_else(|| stopped.elapsed()));
        }
        anyhow::Ok(())
    }
    .await;
    let mut o = writers.finish(Workload::RollingRestart, target).await;
    result?;
    o.samples = gaps.iter().map(|g| g.as_secs_f64() * 1000.0).collect();
    o.headline = o.samples.iter().copied().reduce(f64::max);
    o.notes.insert(
        0,
        format!(
            "{} writers; longest gap per member restart (ms, leader first): {}; median {:.0} ms; {} errors",
            p.failover_clients,
            o.samples.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>().join(", "),
            median(&o.samples),
            o.errors,
        ),
    );
    Ok(o)
}
