//! Closed-loop writers for the fault workloads (leader failover, rolling restart): each puts
//! one of 16 keys after another, recording when each write was acknowledged, its latency and
//! every failure, until stopped (or a hard deadline).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Outcome, Params, Status, Workload};
use crate::measure::LatencyStats;
use crate::targets::Target;

/// How long one write may take before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// The running writers.
pub struct Writers {
    acks: Arc<Mutex<Vec<Instant>>>,
    lat: Arc<Mutex<Vec<Duration>>>,
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Writers {
    /// Starts `p.failover_clients` writers with keys under `prefix`, stopping by themselves
    /// after `limit`.
    ///
    /// # Errors
    /// When a client cannot be created.
    pub async fn start(target: &dyn Target, p: &Params, prefix: &'static str, limit: Duration) -> anyhow::Result<Self> {
        let w = Self {
            acks: Arc::default(),
            lat: Arc::default(),
            errors: Arc::default(),
            first_error: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
            started: Instant::now(),
        };
        let hard_stop = Instant::now() + limit;
        let value = vec![b'w'; p.value_size];
        let mut tasks = Vec::new();
        for c in 0..p.failover_clients {
            let kv = target.client(c).await?;
            let (acks, lat, stop, errors, first_error, value) =
                (w.acks.clone(), w.lat.clone(), w.stop.clone(), w.errors.clone(), w.first_error.clone(), value.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                    let t = Instant::now();
                    match tokio::time::timeout(
                        WRITE_TIMEOUT,
                        kv.put(format!("{prefix}-c{c}-k{}", i % 16), value.clone()),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            let now = Instant::now();
                            acks.lock().unwrap_or_else(PoisonError::into_inner).push(now);
                            lat.lock().unwrap_or_else(PoisonError::into_inner).push(now - t);
                        }
                        failed => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let what = match failed {
                                Ok(Err(e)) => format!("{e:#}"),
                                _ => format!("no answer within {WRITE_TIMEOUT:?}"),
                            };
                            first_error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(what);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    i += 1;
                }
            }));
        }
        Ok(Self { tasks, ..w })
    }

    /// Acknowledgement times so far.
    pub fn acks(&self) -> Vec<Instant> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the writers and fills an outcome with their ops, errors, throughput and latency.
    pub async fn finish(self, w: Workload, target: &dyn Target) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut o = Outcome::new(w, target.kind(), Status::Ok);
        let lat = self.lat.lock().unwrap_or_else(PoisonError::into_inner).clone();
        o.ops = lat.len() as u64;
        o.errors = self.errors.load(Ordering::Relaxed);
        o.elapsed_s = self.started.elapsed().as_secs_f64();
        o.ops_per_sec = Some(o.ops as f64 / o.elapsed_s.max(1e-9));
        o.latency = Some(LatencyStats::from_durations(&lat));
        if let Some(e) = self.first_error.lock().unwrap_or_else(PoisonError::into_inner).take() {
            o.notes.push(format!("first error: {e}"));
        }
        o
    }
}
