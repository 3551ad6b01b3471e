//! A closed-loop load generator: each client issues its next operation as soon as the previous
//! one answers, until the duration or the operation budget is spent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::LatencyStats;
use crate::targets::{BoxFut, Kv};

/// One operation: given the client, its index and the operation's sequence number.
pub type Op = Arc<dyn Fn(Arc<dyn Kv>, usize, u64) -> BoxFut<'static, anyhow::Result<u32>> + Send + Sync>;

/// What a load run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency of the successful operations.
    pub latency: LatencyStats,
    /// Sum of the values the operations returned (attempts, for counters).
    pub returned_sum: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl LoadResult {
    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op` on every client in a closed loop for `duration` or until `max_ops` operations
/// (all clients together) were started. Each operation is bounded by a 15 s timeout.
pub async fn closed_loop(clients: &[Arc<dyn Kv>], duration: Duration, max_ops: u64, op: Op) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let budget = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (c, kv) in clients.iter().enumerate() {
        let (kv, op, budget) = (kv.clone(), op.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut err, mut sum, mut first_error) = (0u64, 0u64, 0u64, None);
            let mut i = 0u64;
            while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < max_ops {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(15), op(kv.clone(), c, i)).await {
                    Ok(Ok(v)) => {
                        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        ok += 1;
                        sum += u64::from(v);
                    }
                    Ok(Err(e)) => {
                        err += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => {
                        err += 1;
                        first_error.get_or_insert_with(|| "operation timed out after 15 s".to_owned());
                    }
                }
                i += 1;
            }
            (lat, ok, err, sum, first_error)
        }));
    }
    let mut all = Vec::new();
    let mut result = LoadResult::default();
    for t in tasks {
        if let Ok((lat, ok, err, sum, first_error)) = t.await {
            all.extend(lat);
            result.ops += ok;
            result.errors += err;
            result.returned_sum += sum;
            if result.first_error.is_none() {
                result.first_error = first_error;
            }
        }
    }
    result.elapsed = started.elapsed();
    result.latency = LatencyStats::from_micros(&mut all);
    result
}
