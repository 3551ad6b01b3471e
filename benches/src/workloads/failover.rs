//! Leader failover: `kill -9` the leader under a steady write load and measure the gap until
//! writes are acknowledged again; the killed member is restarted between repetitions.

use std::time::{Duration, Instant};

use super::writers::Writers;
use super::{Outcome, Params, Workload};
use crate::measure::median;
use crate::targets::Target;

/// Longest stretch after `kill` without an acknowledged write: for consecutive acks `a, b`
/// with `b > kill`, the time from `max(a, kill)` to `b`. In-flight writes that complete just
/// after the kill do not hide the outage that follows them.
pub fn gap_after(acks: &[Instant], kill: Instant) -> Option<Duration> {
    let mut best = None;
    let mut prev = kill;
    for &a in acks.iter().filter(|a| **a > kill) {
        let g = a.duration_since(prev);
        best = Some(best.map_or(g, |b: Duration| b.max(g)));
        prev = a;
    }
    best
}

/// Runs the repetitions.
///
/// # Errors
/// When the clients cannot be created or a killed member cannot be restarted.
pub async fn run(target: &dyn Target, p: &Params) -> anyhow::Result<Outcome> {
    let limit = Duration::from_secs(120) * p.failover_reps.max(1) as u32;
    let writers = Writers::start(target, p, "fo", limit).await?;
    let mut gaps = Vec::new();
    let mut notes = Vec::new();
    let result = async {
        for rep in 0..p.failover_reps {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let leader = target.leader().await?;
            let kill = Instant::now();
            target.kill(leader)?;
            // Wait until writes flow again: acks in the last 300 ms, at least 1 s after the kill.
            let recovered = loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = Instant::now();
                let flowing = writers
                    .acks()
                    .iter()
                    .rev()
                    .take_while(|a| now.duration_since(**a) < Duration::from_millis(300))
                    .any(|a| *a > kill);
                if flowing && now - kill >= Duration::from_secs(1) {
                    break true;
                }
                if now - kill > Duration::from_secs(30) {
                    break false;
                }
            };
            let snapshot = writers.acks();
            let gap = if recovered { gap_after(&snapshot, kill) } else { None };
            match gap {
                Some(g) => gaps.push(g),
                None => notes.push(format!("repetition {}: no write acknowledged within 30 s of the kill", rep + 1)),
            }
            target.restart(leader).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let mut o = writers.finish(Workload::LeaderFailover, target).await;
    result?;
    o.samples = gaps.iter().map(Duration::as_secs_f64).collect();
    o.headline = (!o.samples.is_empty()).then(|| median(&o.samples));
    notes.push(format!(
        "{} writers; gaps (s): {}",
        p.failover_clients,
        o.samples.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(", ")
    ));
    o.notes.extend(notes);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_ignores_in_flight_acks() {
        let base = Instant::now();
        let ms = |m| base + Duration::from_millis(m);
        let acks = [ms(0), ms(5), ms(12), ms(900), ms(905)];
        // Kill at 10: one in-flight ack at 12, then nothing until 900.
        assert_eq!(gap_after(&acks, ms(10)), Some(Duration::from_millis(888)));
        assert_eq!(gap_after(&acks, ms(1000)), None);
    }
}
