//! Watch fan-out: many watchers of one key; for each put, the time from the writer's
//! acknowledgement to the last watcher's notification.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Outcome, Params, Status, Workload};
use crate::measure::LatencyStats;
use crate::targets::{Notification, Target};

const KEY: &str = "watched-key";

/// Collects notifications until every watcher reported once, or `timeout`; returns the last
/// arrival and how many watchers reported.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Notification>,
    n: usize,
    timeout: Duration,
) -> (Option<Instant>, usize) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = HashSet::with_capacity(n);
    let mut last = None;
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((w, at))) => {
                if seen.insert(w) {
                    last = Some(last.map_or(at, |l: Instant| l.max(at)));
                }
            }
            _ => break,
        }
    }
    (last, seen.len())
}

/// Starts the watchers, waits until all of them see changes, then measures the rounds.
///
/// # Errors
/// When the watchers cannot be started or never all see a change.
pub async fn run(target: &dyn Target, p: &Params) -> anyhow::Result<Outcome> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let writer = target.client(0).await?;
    writer.put(KEY.to_owned(), b"start".to_vec()).await?;
    let setup = Instant::now();
    let _guard = target.start_watchers(p.watchers, KEY.to_owned(), tx).await?;
    // Warm up: put until every watcher has seen a change (watches register asynchronously).
    let mut ready = HashSet::new();
    let warm_deadline = Instant::now() + Duration::from_secs(120);
    while ready.len() < p.watchers {
        anyhow::ensure!(
            Instant::now() < warm_deadline,
            "only {} of {} watchers ever saw a change",
            ready.len(),
            p.watchers
        );
        writer.put(KEY.to_owned(), b"warm-up".to_vec()).await?;
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some((w, _))) = tokio::time::timeout_at(until, rx.recv()).await {
            ready.insert(w);
        }
    }
    let setup_time = setup.elapsed();
    let value = vec![b'w'; p.value_size];
    let mut lat = Vec::new();
    let mut missed = 0u64;
    let t0 = Instant::now();
    for _ in 0..p.watch_rounds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
        writer.put(KEY.to_owned(), value.clone()).await?;
        let acked = Instant::now();
        let (last, got) = collect(&mut rx, p.watchers, Duration::from_secs(10)).await;
        missed += (p.watchers - got) as u64;
        if let Some(last) = last {
            lat.push(last.saturating_duration_since(acked));
        }
    }
    let mut o = Outcome::new(Workload::WatchFanout, target.kind(), Status::Ok);
    o.ops = (lat.len() * p.watchers) as u64 - missed.min((lat.len() * p.watchers) as u64);
    o.errors = missed;
    o.elapsed_s = t0.elapsed().as_secs_f64();
    let stats = LatencyStats::from_durations(&lat);
    o.latency = Some(stats);
    o.headline = Some(stats.p99_ms);
    o.notes.push(format!(
        "{} watchers, {} puts; watchers registered and warmed up in {:.1} s",
        p.watchers,
        p.watch_rounds,
        setup_time.as_secs_f64()
    ));
    Ok(o)
}
