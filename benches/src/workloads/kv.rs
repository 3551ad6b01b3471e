//! Throughput workloads: put, create (ZooKeeper-protocol targets), get (linearizable /
//! serializable) and the hot counter.

use std::sync::Arc;

use rand::Rng;

use super::load::{closed_loop, LoadResult, Op};
use super::{Outcome, Params, Status, Workload};
use crate::targets::{Kv, Target};

/// Keys each put client cycles through.
const KEYS_PER_CLIENT: u64 = 16;
/// Keys the get workloads read (written once before measuring).
const GET_KEYS: usize = 64;
/// The hot counter.
const COUNTER: &str = "hot-counter";

async fn clients(target: &dyn Target, n: usize) -> anyhow::Result<Vec<Arc<dyn Kv>>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(target.client(i).await?);
    }
    Ok(out)
}

fn value(size: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    (0..size).map(|_| rng.random_range(b'a'..=b'z')).collect()
}

/// Runs one of the KV workloads.
///
/// # Errors
/// When the clients cannot be created or the data cannot be loaded.
pub async fn run(target: &dyn Target, workload: Workload, p: &Params) -> anyhow::Result<Outcome> {
    let (n, op): (usize, Op) = match workload {
        Workload::Put1 | Workload::Put64 => {
            let v = value(p.value_size);
            let op: Op = Arc::new(move |kv, c, i| {
                let key = format!("put-c{c}-k{}", i % KEYS_PER_CLIENT);
                let v = v.clone();
                Box::pin(async move { kv.put(key, v).await.map(|()| 1) })
            });
            (if workload == Workload::Put1 { 1 } else { 64 }, op)
        }
        Workload::Create => {
            let v = value(p.value_size);
            let op: Op = Arc::new(move |kv, c, i| {
                let key = format!("create-c{c}-n{i}");
                let v = v.clone();
                Box::pin(async move { kv.create(key, v).await.map(|()| 1) })
            });
            (64, op)
        }
        Workload::GetLinearizable | Workload::GetSerializable => {
            let loader = target.client(0).await?;
            for k in 0..GET_KEYS {
                loader.put(format!("get-k{k}"), value(p.value_size)).await?;
            }
            let linearizable = workload == Workload::GetLinearizable;
            let op: Op = Arc::new(move |kv, c, i| {
                let key = format!("get-k{}", (c + i as usize) % GET_KEYS);
                Box::pin(async move { kv.get(key, linearizable).await.map(|()| 1) })
            });
            (64, op)
        }
        Workload::Counter1 | Workload::Counter16 => {
            let op: Op = Arc::new(|kv, _, _| Box::pin(async move { kv.increment(COUNTER.to_owned()).await }));
            (if workload == Workload::Counter1 { 1 } else { 16 }, op)
        }
        other => anyhow::bail!("{other:?} is not a KV workload"),
    };
    let clients = clients(target, n).await?;
    let r = closed_loop(&clients, p.duration, p.max_ops, op).await;
    Ok(outcome(target, workload, &r))
}

fn outcome(target: &dyn Target, workload: Workload, r: &LoadResult) -> Outcome {
    let mut o = Outcome::new(workload, target.kind(), Status::Ok);
    o.ops = r.ops;
    o.errors = r.errors;
    o.elapsed_s = r.elapsed.as_secs_f64();
    o.ops_per_sec = Some(r.ops_per_sec());
    o.headline = o.ops_per_sec;
    o.latency = Some(r.latency);
    if matches!(workload, Workload::Counter1 | Workload::Counter16) && r.ops > 0 {
        o.notes.push(format!("{:.2} attempts per increment", r.returned_sum as f64 / r.ops as f64));
    }
    if let Some(e) = &r.first_error {
        o.notes.push(format!("first error: {e}"));
    }
    o
}
