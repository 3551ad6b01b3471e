//! Throughput workloads: put, create (ZooKeeper-protocol targets), get (linearizable /
//! serializable) and the hot counter.

use std::sync::Arc;

use rand::Rng;

use super::load::{closed_loop, LoadResult, Op};
use super::{Outcome, Params, Status, Workload};
use crate::targets::{BoxFut, Kv, Target};

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
    if matches!(workload, Workload::GetUnderWrites | Workload::GetLinUnderWrites) {
        return get_under_writes(target, p, workload).await;
    }
    if is_get(workload) {
        load_get_keys(target, p).await?;
    }
    let (n, op) = op_of(workload, p, "")?;
    if n == 1 {
        if let Some(rotating) = Rotating::new(target, p.duration).await? {
            let rotating = Arc::new(rotating);
            let r = closed_loop(&[rotating.clone() as Arc<dyn Kv>], p.duration, p.max_ops, op).await;
            let mut o = outcome(target, workload, &r);
            o.notes.push(rotating.by_member(target.leader().await.ok()));
            return Ok(o);
        }
    }
    let clients = clients(target, n).await?;
    let r = closed_loop(&clients, p.duration, p.max_ops, op).await;
    Ok(outcome(target, workload, &r))
}

/// The clients and the operation of `workload` (not the `*UnderWrites` ones); `tag` goes into the
/// names of the keys it writes, so a warm-up's keys are not the measured run's.
fn op_of(workload: Workload, p: &Params, tag: &str) -> anyhow::Result<(usize, Op)> {
    Ok(match workload {
        Workload::Put1 | Workload::Put64 => {
            (if workload == Workload::Put1 { 1 } else { 64 }, put_op(p, format!("{tag}put")))
        }
        Workload::Create => {
            let v = value(p.value_size);
            let tag = tag.to_owned();
            let op: Op = Arc::new(move |kv, c, i| {
                let key = format!("{tag}create-c{c}-n{i}");
                let v = v.clone();
                Box::pin(async move { kv.create(key, v).await.map(|()| 1) })
            });
            (64, op)
        }
        Workload::GetLinearizable
        | Workload::GetSerializable
        | Workload::GetUnderWrites
        | Workload::GetLinUnderWrites => {
            (64, get_op(matches!(workload, Workload::GetLinearizable | Workload::GetLinUnderWrites)))
        }
        Workload::Counter1 | Workload::Counter16 => {
            let op: Op = Arc::new(|kv, _, _| Box::pin(async move { kv.increment(COUNTER.to_owned()).await }));
            (if workload == Workload::Counter1 { 1 } else { 16 }, op)
        }
        other => anyhow::bail!("{other:?} is not a KV workload"),
    })
}

fn is_get(w: Workload) -> bool {
    matches!(
        w,
        Workload::GetLinearizable | Workload::GetSerializable | Workload::GetUnderWrites | Workload::GetLinUnderWrites
    )
}

/// Runs `workload`'s own operations unmeasured for a fifth of its duration (0.5-3 s, up to 16
/// clients), before the measured interval: every system is measured warm. ZooKeeper's JVM
/// compiles its hot paths in its first seconds; unwarmed, its first row (put, 1 client) ran at
/// about 40% of the rate of a later one-client row.
///
/// # Errors
/// When the clients cannot be created or the keys cannot be loaded.
pub async fn warm_up(target: &dyn Target, workload: Workload, p: &Params) -> anyhow::Result<()> {
    if is_get(workload) {
        load_get_keys(target, p).await?;
    }
    let (n, op) = op_of(workload, p, "warm-")?;
    let clients = clients(target, n.min(16)).await?;
    let time = (p.duration / 5).clamp(std::time::Duration::from_millis(500), std::time::Duration::from_secs(3));
    closed_loop(&clients, time, p.max_ops, op).await;
    Ok(())
}

/// Puts of `value_size` bytes, each client cycling through its own keys `<prefix>-c<n>-k<i>`.
fn put_op(p: &Params, prefix: String) -> Op {
    let v = value(p.value_size);
    Arc::new(move |kv, c, i| {
        let key = format!("{prefix}-c{c}-k{}", i % KEYS_PER_CLIENT);
        let v = v.clone();
        Box::pin(async move { kv.put(key, v).await.map(|()| 1) })
    })
}

/// Writes the keys the get workloads read.
async fn load_get_keys(target: &dyn Target, p: &Params) -> anyhow::Result<()> {
    let loader = target.client(0).await?;
    for k in 0..GET_KEYS {
        loader.put(format!("get-k{k}"), value(p.value_size)).await?;
    }
    Ok(())
}

/// Gets of the loaded keys, spread over them.
fn get_op(linearizable: bool) -> Op {
    Arc::new(move |kv, c, i| {
        let key = format!("get-k{}", (c + i as usize) % GET_KEYS);
        Box::pin(async move { kv.get(key, linearizable).await.map(|()| 1) })
    })
}

/// Gets from 64 clients while 16 other clients put, for the same time (serializable for
/// `GetUnderWrites`, linearizable for `GetLinUnderWrites`): on a slow disk, a member that waited
/// in fdatasync on the thread that serves reads, or a leader whose quorum check waits behind a
/// follower's append, shows it here (the headline is the reads' p99; the notes give the
/// writers' rate).
async fn get_under_writes(target: &dyn Target, p: &Params, workload: Workload) -> anyhow::Result<Outcome> {
    load_get_keys(target, p).await?;
    let readers = clients(target, 64).await?;
    let writers = clients(target, 16).await?;
    let (r, w) = tokio::join!(
        closed_loop(&readers, p.duration, p.max_ops, get_op(workload == Workload::GetLinUnderWrites)),
        closed_loop(&writers, p.duration, p.max_ops, put_op(p, "beside".into()))
    );
    let mut o = outcome(target, workload, &r);
    o.headline = Some(r.latency.p99_ms);
    o.notes.push(format!(
        "16 writers beside: {:.0} puts/s, p50 {:.2} ms, p99 {:.2} ms",
        w.ops_per_sec(),
        w.latency.p50_ms,
        w.latency.p99_ms
    ));
    Ok(o)
}

/// The one client of a one-client row on a target whose clients pick a member at random
/// (ZooKeeper's: one run lands on the leader, the next on a follower, and the row moved by a
/// third between runs): it uses each member in turn, a third of the run each, so the row is
/// the mean a client sees over the members; the notes give each member's p50.
struct Rotating {
    members: Vec<Arc<dyn Kv>>,
    started: std::time::Instant,
    phase: std::time::Duration,
    latencies: std::sync::Mutex<Vec<Vec<u32>>>,
}

impl Rotating {
    /// One session per member, or `None` when the target's clients choose their member.
    async fn new(target: &dyn Target, duration: std::time::Duration) -> anyhow::Result<Option<Self>> {
        let mut members = Vec::new();
        for m in 0..target.endpoints().len() {
            match target.client_on(m).await {
                Some(c) => members.push(c?),
                None => return Ok(None),
            }
        }
        let n = members.len().max(1);
        let latencies = std::sync::Mutex::new(vec![Vec::new(); n]);
        let phase = duration / n as u32;
        Ok(Some(Self { members, started: std::time::Instant::now(), phase, latencies }))
    }

    fn pick(&self) -> usize {
        let phase = self.phase.as_nanos().max(1);
        ((self.started.elapsed().as_nanos() / phase) as usize).min(self.members.len() - 1)
    }

    /// Runs `op` on the current member, timing it there.
    fn on_member<'a, T: Send + 'a>(
        &'a self,
        op: impl FnOnce(&'a Arc<dyn Kv>) -> BoxFut<'a, anyhow::Result<T>>,
    ) -> BoxFut<'a, anyhow::Result<T>> {
        let m = self.pick();
        let fut = op(&self.members[m]);
        Box::pin(async move {
            let t = std::time::Instant::now();
            let r = fut.await;
            if r.is_ok() {
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                if let Some(l) = self.latencies.lock().expect("latencies").get_mut(m) {
                    l.push(us);
                }
            }
            r
        })
    }

    /// "p50 by member: 1 (leader) 1.10 ms, ..." (members numbered from 1).
    fn by_member(&self, leader: Option<usize>) -> String {
        let mut lat = self.latencies.lock().expect("latencies").clone();
        let parts: Vec<String> = lat
            .iter_mut()
            .enumerate()
            .map(|(m, l)| {
                l.sort_unstable();
                let role = if leader == Some(m) { " (leader)" } else { "" };
                match l.get(l.len() / 2) {
                    Some(p50) => format!("{}{role} {:.2} ms", m + 1, f64::from(*p50) / 1000.0),
                    None => format!("{}{role} -", m + 1),
                }
            })
            .collect();
        format!("one client on each member in turn; p50 by member: {}", parts.join(", "))
    }
}

impl Kv for Rotating {
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        self.on_member(move |kv| kv.put(key, value))
    }

    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        self.on_member(move |kv| kv.get(key, linearizable))
    }

    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        self.on_member(move |kv| kv.increment(counter))
    }

    fn create(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        self.on_member(move |kv| kv.create(key, value))
    }
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
