//! Big state (`--workloads big-state`, opt-in): a fresh cluster loaded with `--big-keys` keys of
//! `value_size` bytes while `--big-sessions` sessions are kept alive, then measured at that size.
//! One run produces the `big-*` rows, in this order on the same cluster:
//!
//! | row | what |
//! |---|---|
//! | load | 64 clients write every key once (distinct keys `big-0000000`...); ops/s and, in the max column, the longest request (snapshots happen meanwhile) |
//! | put | 64 clients overwrite random loaded keys for `--duration` |
//! | get | 64 clients read random loaded keys (serializable / local) for `--duration` |
//! | memory | each member's RSS after the put row (headline: the largest) and data directory |
//! | backup | a backup of the whole state through the system's API, time and size (ZooKeeper has none) |
//! | restart | `kill -9` of a follower, restart from its data directory, until the cluster is whole |
//! | catch-up | a follower loses its disk (`kill -9`, data directory emptied) and is rebuilt the way each system documents (Conclave: restarted with its usual flags, it rejoins as a learner by itself; etcd: `member remove`, `member add`, start with `--initial-cluster-state existing`; ZooKeeper: restarted with only `myid` kept); a marker key is written meanwhile; seconds from its start until a serializable read on it alone returns the marker (see [`super::catch_up`]) |
//!
//! "No request stalled longer than 100 ms by a snapshot" is read from the max column of the
//! load and put rows: every system snapshots while they run (Conclave every
//! `--snapshot-logs` entries, etcd every `--snapshot-count` applies, ZooKeeper every
//! `snapCount` transactions).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::load::{closed_loop, LoadResult, Op};
use super::{Outcome, Params, Status, Workload};
use crate::measure::{dir_size, rss_bytes};
use crate::targets::{Kv, Target, TargetKind};

/// Most sessions held on ZooKeeper, where a session is a TCP connection (about 28,000
/// ephemeral ports per destination on loopback).
pub const ZK_MAX_SESSIONS: usize = 10_000;
/// Load clients.
const CLIENTS: usize = 64;
/// Session TTL while holding: long enough that a busy machine never lets one expire.
const SESSION_TTL: Duration = Duration::from_secs(30);
/// Bound on the whole load phase.
const LOAD_BUDGET: Duration = Duration::from_secs(900);

fn key(i: u64) -> String {
    format!("big-{i:07}")
}

fn value(size: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    (0..size).map(|_| rng.random_range(b'a'..=b'z')).collect()
}

fn row(target: &dyn Target, w: Workload) -> Outcome {
    Outcome::new(w, target.kind(), Status::Ok)
}

fn load_row(target: &dyn Target, w: Workload, r: &LoadResult) -> Outcome {
    let mut o = row(target, w);
    o.ops = r.ops;
    o.errors = r.errors;
    o.elapsed_s = r.elapsed.as_secs_f64();
    o.ops_per_sec = Some(r.ops_per_sec());
    o.headline = o.ops_per_sec;
    o.latency = Some(r.latency);
    o.notes.push(format!("longest request {:.0} ms", r.latency.max_ms));
    if let Some(e) = &r.first_error {
        o.notes.push(format!("first error: {e}"));
    }
    o
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs the big-state rows on `target` (a fresh cluster); `dir` holds the backup file.
///
/// # Errors
/// When the clients cannot be created or nothing could be loaded. A failing later row is
/// reported in its own outcome.
pub async fn run(target: &dyn Target, p: &Params, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let mut rows = Vec::new();
    let sessions =
        if target.kind() == TargetKind::Zookeeper { p.big_sessions.min(ZK_MAX_SESSIONS) } else { p.big_sessions };
    let deadline = Instant::now() + Duration::from_secs(300);
    let (opened, hold) = target.open_sessions(sessions, SESSION_TTL, deadline).await?;
    let session_note = format!(
        "{} sessions held (asked {}{}), opened in {:.1} s",
        opened.opened,
        p.big_sessions,
        if sessions < p.big_sessions { "; ZooKeeper: a session is a connection" } else { "" },
        opened.open_time.as_secs_f64()
    );

    let mut clients: Vec<Arc<dyn Kv>> = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        clients.push(target.client(i).await?);
    }
    let v = value(p.value_size);

    // Load: every key once, in the order the clients pick them.
    let next = Arc::new(AtomicU64::new(0));
    let load: Op = {
        let (v, next) = (v.clone(), next.clone());
        Arc::new(move |kv, _, _| {
            let (k, v) = (key(next.fetch_add(1, Ordering::Relaxed)), v.clone());
            Box::pin(async move { kv.put(k, v).await.map(|()| 1) })
        })
    };
    let r = closed_loop(&clients, LOAD_BUDGET, p.big_keys, load).await;
    anyhow::ensure!(r.ops > 0, "nothing could be loaded: {}", r.first_error.unwrap_or_default());
    let loaded = r.ops;
    let mut o = load_row(target, Workload::BigLoad, &r);
    o.notes.insert(0, format!("{loaded} keys of {} bytes; {session_note}", p.value_size));
    rows.push(o);

    let keys = p.big_keys;
    let put: Op = {
        let v = v.clone();
        Arc::new(move |kv, _, _| {
            let (k, v) = (key(rand::rng().random_range(0..keys)), v.clone());
            Box::pin(async move { kv.put(k, v).await.map(|()| 1) })
        })
    };
    let r = closed_loop(&clients, p.duration, p.max_ops, put).await;
    rows.push(load_row(target, Workload::BigPut64, &r));
    let get: Op = Arc::new(move |kv, _, _| {
        let k = key(rand::rng().random_range(0..keys));
        Box::pin(async move { kv.get(k, false).await.map(|()| 1) })
    });
    let r = closed_loop(&clients, p.duration, p.max_ops, get).await;
    rows.push(load_row(target, Workload::BigGet, &r));
    drop(clients);

    rows.push(memory_row(target, loaded));
    rows.push(backup_row(target, dir).await);
    rows.push(restart_row(target).await);
    rows.push(super::catch_up::row(target).await);
    let lost = hold.lost().await;
    drop(hold);
    if lost > 0 {
        if let Some(o) = rows.last_mut() {
            o.notes.push(format!("{lost} of the held sessions were not alive at the end"));
        }
    }
    Ok(rows)
}

fn memory_row(target: &dyn Target, loaded: u64) -> Outcome {
    let mut o = row(target, Workload::BigRss);
    let rss: Vec<u64> = target.pids().iter().map(|p| rss_bytes(*p).unwrap_or(0)).collect();
    let dirs: Vec<u64> = target.data_dirs().iter().map(|d| dir_size(d)).collect();
    let largest = rss.iter().copied().max().unwrap_or(0);
    o.ops = loaded;
    o.headline = Some(mib(largest));
    o.notes.push(format!(
        "RSS per member {} MiB; data dir per member {} MiB; {:.0} bytes of RSS per key",
        rss.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(" / "),
        dirs.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(" / "),
        largest as f64 / loaded.max(1) as f64
    ));
    o
}

async fn backup_row(target: &dyn Target, dir: &Path) -> Outcome {
    let path = dir.join("big-state.backup");
    let t0 = Instant::now();
    let saved = target.backup(&path).await;
    let took = t0.elapsed();
    let _ = std::fs::remove_file(&path);
    match saved {
        None => Outcome::new(
            Workload::BigSnapshot,
            target.kind(),
            Status::NotAvailable("no backup API (ZooKeeper: copy a member's snapshot and log files)".into()),
        ),
        Some(Err(e)) => Outcome::new(Workload::BigSnapshot, target.kind(), Status::Failed(format!("{e:#}"))),
        Some(Ok(bytes)) => {
            let mut o = row(target, Workload::BigSnapshot);
            o.elapsed_s = took.as_secs_f64();
            o.headline = Some(took.as_secs_f64());
            o.notes.push(format!("{:.0} MiB in {:.2} s", mib(bytes), took.as_secs_f64()));
            o
        }
    }
}

async fn restart_row(target: &dyn Target) -> Outcome {
    let run = async {
        let leader = target.leader().await?;
        let follower = (leader + 1) % target.endpoints().len().max(1);
        target.kill(follower)?;
        let t0 = Instant::now();
        target.restart(follower).await?;
        Ok::<_, anyhow::Error>((follower, t0.elapsed()))
    };
    match run.await {
        Ok((member, took)) => {
            let mut o = row(target, Workload::BigRestart);
            o.elapsed_s = took.as_secs_f64();
            o.headline = Some(took.as_secs_f64());
            o.notes.push(format!("member {} restarted from its data directory", member + 1));
            o
        }
        Err(e) => Outcome::new(Workload::BigRestart, target.kind(), Status::Failed(format!("{e:#}"))),
    }
}
