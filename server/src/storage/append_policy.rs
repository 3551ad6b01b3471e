//! Where a Raft log append (write + fdatasync) runs: in place on the node's thread while the
//! disk is fast, on a pool thread once it is slow.
//!
//! A node runs on one thread by default (`--runtime`), and the same thread serves reads,
//! watches, ZooKeeper connections and keep-alives. An append in place blocks all of them for
//! its fdatasync; handing it to a pool thread costs ~100 µs of thread wake-ups each way
//! instead. On this project's disks (fdatasync ~0.1-0.3 ms) the hand-off costs more than it
//! frees: measured, puts with 64 writers fell from ~12k/s to 8.9k/s (docs/design.md). On a disk
//! whose fdatasync takes 1-5 ms (network block storage), every read on the member waited up to
//! that long behind each append. So the append goes where the disk's recent speed says: a mean
//! of recent appends over [`OFFLOAD_ABOVE`] moves them to a pool thread, under [`INLINE_BELOW`]
//! back in place (the gap keeps it from flapping). Either way RaftCore awaits the append: only
//! what does not need RaftCore (serializable reads, watch delivery, apply) goes on meanwhile.
//! This governs synchronous appends: a follower's, and the leader's membership entries. The
//! leader's other appends do not wait for their fsync at all (`log_store`, `durability`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Appends go to a pool thread once their recent mean exceeds this.
pub const OFFLOAD_ABOVE: Duration = Duration::from_micros(600);
/// ... and back in place once it falls under this.
pub const INLINE_BELOW: Duration = Duration::from_micros(300);

/// The recent mean append time and the choice it makes. Shared by the clones of a log store.
#[derive(Debug, Default)]
pub struct AppendPolicy {
    /// Exponentially weighted mean of recent appends (weight 1/8), in microseconds.
    mean_us: AtomicU64,
    offloaded: AtomicBool,
}

impl AppendPolicy {
    /// Whether the next append should run on a pool thread.
    pub fn offload(&self) -> bool {
        self.offloaded.load(Ordering::Relaxed)
    }

    /// Records how long an append took on the disk (its write and fdatasync alone, without any
    /// hand-off), and switches where appends run when the mean crosses a bound.
    pub fn observe(&self, took: Duration) {
        let took = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.mean_us.load(Ordering::Relaxed);
        let mean = if took >= old { old + (took - old) / 8 } else { old - (old - took) / 8 };
        self.mean_us.store(mean, Ordering::Relaxed);
        let offloaded = self.offloaded.load(Ordering::Relaxed);
        if !offloaded && mean > OFFLOAD_ABOVE.as_micros() as u64 {
            self.offloaded.store(true, Ordering::Relaxed);
            crate::ops::metrics::global().appends_offloaded.set(1);
            tracing::info!(
                mean_append_us = mean,
                "the disk is slow: Raft log appends now run on a pool thread, so reads need not wait for them"
            );
        } else if offloaded && mean < INLINE_BELOW.as_micros() as u64 {
            self.offloaded.store(false, Ordering::Relaxed);
            crate::ops::metrics::global().appends_offloaded.set(0);
            tracing::info!(mean_append_us = mean, "the disk is fast again: Raft log appends run in place");
        }
    }

    /// The recent mean append time.
    #[cfg(test)]
    fn mean(&self) -> Duration {
        Duration::from_micros(self.mean_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_n(p: &AppendPolicy, n: usize, us: u64) {
        for _ in 0..n {
            p.observe(Duration::from_micros(us));
        }
    }

    #[test]
    fn a_fast_disk_appends_in_place_and_a_slow_one_on_a_pool_thread() {
        let p = AppendPolicy::default();
        assert!(!p.offload(), "in place until measured otherwise");
        observe_n(&p, 100, 150);
        assert!(!p.offload(), "0.15 ms appends stay in place");
        observe_n(&p, 30, 1_000);
        assert!(p.offload(), "1 ms appends go to a pool thread (mean {:?})", p.mean());
        observe_n(&p, 100, 5_000);
        assert!(p.offload());
        observe_n(&p, 100, 150);
        assert!(!p.offload(), "back in place once the disk is fast again (mean {:?})", p.mean());
    }

    #[test]
    fn one_slow_append_among_fast_ones_does_not_flap() {
        let p = AppendPolicy::default();
        observe_n(&p, 100, 150);
        p.observe(Duration::from_millis(3));
        assert!(!p.offload(), "one 3 ms outlier: mean {:?}", p.mean());
        // Between the bounds the choice stays as it was, in either direction.
        observe_n(&p, 200, 450);
        assert!(!p.offload());
        observe_n(&p, 100, 2_000);
        assert!(p.offload());
        observe_n(&p, 200, 450);
        assert!(p.offload(), "0.45 ms: still offloaded (mean {:?})", p.mean());
    }
}
