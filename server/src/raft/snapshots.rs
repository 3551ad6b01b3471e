//! When this member builds a snapshot: every `--snapshot-logs` entries, at a phase of its own.
//!
//! Why: openraft's `LogsSinceLast` policy makes every member snapshot at the same log indexes
//! (they apply the same entries), so all of them encoded and wrote a large state at the same
//! moment. With a million keys that is seconds of CPU and ~300 MB of writes on each, and a
//! write needs the leader and a follower: both were busy at once, and a Raft log fsync waited
//! ~100 ms behind the snapshot files (`conclave-bench --workloads big-state`). Spread over the
//! interval by member id, a member's snapshot leaves the other two free to form a quorum.
//!
//! What: snapshot points are the indexes `k × interval + phase`, `phase = (id mod 3) ×
//! interval / 3`. A member builds one (`trigger().snapshot()`) once it has applied past the
//! next point after its newest snapshot. Replicas' contents do not depend on it: a snapshot is
//! a copy of applied state, and log purging follows each member's own snapshots.

use std::time::Duration;

use super::{NodeId, Raft};
use crate::storage::sm_store::Applied;

/// The first snapshot point after log index `after`, for member `id`.
pub fn next_point(after: u64, interval: u64, id: NodeId) -> u64 {
    let interval = interval.max(1);
    let phase = (id % 3) * interval / 3;
    // The smallest k × interval + phase > after.
    let k = if after < phase { 0 } else { (after - phase) / interval + 1 };
    k * interval + phase
}

/// Starts the task that triggers this member's snapshots.
pub fn spawn(raft: Raft, id: NodeId, interval: u64, mut applied: tokio::sync::watch::Receiver<Applied>) {
    tokio::spawn(async move {
        loop {
            let newest = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
            let point = next_point(newest, interval, id);
            if applied.wait_for(|a| a.index >= point).await.is_err() {
                return;
            }
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            // The build runs in the background; wait until it is recorded (or give up after a
            // while and look again: a failed build is retried at the next check).
            let mut metrics = raft.metrics();
            let _ = tokio::time::timeout(
                Duration::from_secs(60),
                metrics.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= point)),
            )
            .await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::next_point;

    #[test]
    fn members_snapshot_a_third_of_an_interval_apart() {
        assert_eq!(next_point(0, 300, 3), 300);
        assert_eq!(next_point(0, 300, 1), 100);
        assert_eq!(next_point(0, 300, 2), 200);
        assert_eq!(next_point(100, 300, 1), 400, "strictly after the newest snapshot");
        assert_eq!(next_point(450, 300, 1), 700);
        assert_eq!(next_point(599, 300, 3), 600);
        assert_eq!(next_point(5, 1, 2), 6);
    }
}
