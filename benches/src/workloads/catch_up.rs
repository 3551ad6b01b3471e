//! The last big-state row: a follower's catch-up by snapshot. The follower loses its disk and is
//! rebuilt from the others, as an operator replaces a failed disk ([`crate::targets::Target::wipe`]
//! says how each system does it: Conclave rejoins by itself on its usual flags, etcd needs
//! `member remove` and `member add`, ZooKeeper keeps only `myid`).
//!
//! Measured the same way on every system: after the wipe and before the start, a marker key is
//! written through the cluster; the time runs from starting the member until a serializable
//! (local) read on that member alone returns the marker, polled every 50 ms for at most 300 s.

use std::time::{Duration, Instant};

use super::{Outcome, Status, Workload};
use crate::measure::dir_size;
use crate::targets::Target;

/// The key written while the member is down.
const MARKER: &str = "big-catch-up-marker";
/// How often the member is asked for the marker.
const POLL: Duration = Duration::from_millis(50);
/// Bound on one read (the targets bound theirs at about 2 s).
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the catch-up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the row measured.
struct CatchUp {
    member: usize,
    took: Duration,
    whole: Duration,
    member_dir: u64,
    leader_dir: u64,
    notes: Vec<String>,
}

/// Wipes a follower, writes the marker, starts the follower and times its catch-up.
async fn run(target: &dyn Target) -> anyhow::Result<CatchUp> {
    let leader = target.leader().await?;
    let member = (leader + 1) % target.endpoints().len().max(1);
    let mut notes = vec![target.wipe(member).await?];
    let writer = target.client(leader).await?;
    let marker = format!("written while member {} was down", member + 1).into_bytes();
    writer.put(MARKER.to_owned(), marker).await.map_err(|e| e.context("writing the marker key"))?;
    drop(writer);

    let t0 = Instant::now();
    target.start_wiped(member).await?;
    let deadline = t0 + CATCH_UP_TIMEOUT;
    loop {
        let last = match tokio::time::timeout(READ_TIMEOUT, target.read_local(member, MARKER)).await {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => "it answers, without the marker yet".to_owned(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no answer within {READ_TIMEOUT:?}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "member {} did not return the marker key on a local read within {CATCH_UP_TIMEOUT:?} of its start \
                 (last read: {last})",
                member + 1
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let took = t0.elapsed();
    let dirs = target.data_dirs();
    let member_dir = dir_size(&dirs[member]);
    let leader_dir = dir_size(&dirs[leader]);
    notes.extend(target.rebuilt(member).await?);
    Ok(CatchUp { member, took, whole: t0.elapsed(), member_dir, leader_dir, notes })
}

/// The `big-catch-up` row on `target` (a loaded big-state cluster).
pub async fn row(target: &dyn Target) -> Outcome {
    match run(target).await {
        Ok(c) => {
            let mut o = Outcome::new(Workload::BigCatchUp, target.kind(), Status::Ok);
            o.elapsed_s = c.took.as_secs_f64();
            o.headline = Some(c.took.as_secs_f64());
            o.notes.push(format!(
                "member {} read the marker locally {:.2} s after its start; its data dir then {:.0} MiB (the \
                 leader's {:.0} MiB); a full member and the cluster whole {:.2} s after its start",
                c.member + 1,
                c.took.as_secs_f64(),
                mib(c.member_dir),
                mib(c.leader_dir),
                c.whole.as_secs_f64()
            ));
            o.notes.extend(c.notes);
            o
        }
        Err(e) => Outcome::new(Workload::BigCatchUp, target.kind(), Status::Failed(format!("{e:#}"))),
    }
}
