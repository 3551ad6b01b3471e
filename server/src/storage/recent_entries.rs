//! The tail of the Raft log kept decoded in memory, so the leader's replication reads the
//! entries it just appended without a trip through the storage engine (a blocking-pool hop, a
//! read and a decode per follower and entry).
//!
//! Bounded by [`MAX_ENTRIES`] and [`MAX_BYTES`] (encoded size). Only ever a copy: the engine
//! stays the source of truth, and a range the cache does not fully cover is read from it.
//! Callers update the cache after the engine on append and before it on truncate and purge,
//! so the cache never holds an entry the engine does not.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Most entries kept.
pub const MAX_ENTRIES: usize = 256;
/// Most encoded bytes kept.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Something with a log index.
pub trait Indexed: Clone {
    /// The log index.
    fn index(&self) -> u64;
}

impl Indexed for openraft::Entry<crate::types::TypeConfig> {
    fn index(&self) -> u64 {
        self.log_id.index
    }
}

/// Consecutive entries ending at the last appended one.
pub struct RecentEntries<E> {
    tail: Mutex<Tail<E>>,
    max_entries: usize,
    max_bytes: usize,
}

struct Tail<E> {
    entries: VecDeque<(E, usize)>,
    bytes: usize,
}

impl<E: Indexed> Default for RecentEntries<E> {
    fn default() -> Self {
        Self::with_limits(MAX_ENTRIES, MAX_BYTES)
    }
}

impl<E: Indexed> RecentEntries<E> {
    /// A cache with explicit bounds.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        Self { tail: Mutex::new(Tail { entries: VecDeque::new(), bytes: 0 }), max_entries, max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail<E>> {
        self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records entries (with their encoded sizes) just made durable. An entry at or before the
    /// cached end replaces the cached ones from there on; a gap starts the cache afresh.
    pub fn appended(&self, entries: Vec<(E, usize)>) {
        let mut t = self.lock();
        for (entry, size) in entries {
            let index = entry.index();
            let contiguous = t.entries.back().is_some_and(|(e, _)| e.index().checked_add(1) == Some(index));
            if !contiguous {
                Self::drop_from(&mut t, index);
                if t.entries.back().is_some_and(|(e, _)| e.index().checked_add(1) != Some(index)) {
                    t.entries.clear();
                    t.bytes = 0;
                }
            }
            t.bytes += size;
            t.entries.push_back((entry, size));
            while t.entries.len() > self.max_entries || (t.bytes > self.max_bytes && t.entries.len() > 1) {
                if let Some((_, s)) = t.entries.pop_front() {
                    t.bytes -= s;
                }
            }
            if t.bytes > self.max_bytes {
                t.entries.clear(); // a single entry larger than the bound
                t.bytes = 0;
            }
        }
    }

    /// Entries `start <= index < end`, if every one of them is cached.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<E>> {
        let t = self.lock();
        let first = t.entries.front()?.0.index();
        let last = t.entries.back()?.0.index();
        if start < first || end == 0 || end - 1 > last || start >= end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let n = usize::try_from(end - start).ok()?;
        Some(t.entries.iter().skip(from).take(n).map(|(e, _)| e.clone()).collect())
    }

    fn drop_from(t: &mut Tail<E>, from: u64) {
        while t.entries.back().is_some_and(|(e, _)| e.index() >= from) {
            if let Some((_, s)) = t.entries.pop_back() {
                t.bytes -= s;
            }
        }
    }

    /// Forgets entries with `index >= from` (call before truncating the engine).
    pub fn truncated(&self, from: u64) {
        Self::drop_from(&mut self.lock(), from);
    }

    /// Forgets entries with `index <= upto` (call before purging the engine).
    pub fn purged(&self, upto: u64) {
        let mut t = self.lock();
        while t.entries.front().is_some_and(|(e, _)| e.index() <= upto) {
            if let Some((_, s)) = t.entries.pop_front() {
                t.bytes -= s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct E(u64, &'static str);

    impl Indexed for E {
        fn index(&self) -> u64 {
            self.0
        }
    }

    fn idx(v: Option<Vec<E>>) -> Option<Vec<u64>> {
        v.map(|v| v.into_iter().map(|e| e.0).collect())
    }

    #[test]
    fn serves_only_fully_covered_ranges() {
        let c = RecentEntries::with_limits(4, 1000);
        c.appended((1..=6).map(|i| (E(i, "a"), 10)).collect());
        // Bounded to the last 4.
        assert_eq!(idx(c.get(3, 7)), Some(vec![3, 4, 5, 6]));
        assert_eq!(idx(c.get(4, 6)), Some(vec![4, 5]));
        assert_eq!(c.get(2, 5), None, "index 2 was evicted");
        assert_eq!(c.get(5, 8), None, "index 7 does not exist yet");
        assert_eq!(c.get(5, 5), None);
    }

    #[test]
    fn overwrite_truncate_purge_and_gaps() {
        let c = RecentEntries::with_limits(10, 1000);
        c.appended((1..=5).map(|i| (E(i, "old"), 10)).collect());
        // A new leader overwrote entries from 4 on.
        c.appended(vec![(E(4, "new"), 10)]);
        assert_eq!(c.get(3, 5), Some(vec![E(3, "old"), E(4, "new")]));
        assert_eq!(c.get(5, 6), None, "the old entry 5 is gone");
        c.truncated(4);
        assert_eq!(c.get(4, 5), None);
        assert_eq!(idx(c.get(1, 4)), Some(vec![1, 2, 3]));
        c.purged(2);
        assert_eq!(c.get(2, 3), None);
        assert_eq!(idx(c.get(3, 4)), Some(vec![3]));
        // A gap (e.g. after a snapshot install) starts afresh.
        c.appended(vec![(E(100, "x"), 10)]);
        assert_eq!(c.get(3, 4), None);
        assert_eq!(idx(c.get(100, 101)), Some(vec![100]));
    }

    #[test]
    fn byte_bound_evicts_oldest_and_skips_oversized_entries() {
        let c = RecentEntries::with_limits(100, 25);
        c.appended((1..=3).map(|i| (E(i, "a"), 10)).collect());
        assert_eq!(c.get(1, 2), None);
        assert_eq!(idx(c.get(2, 4)), Some(vec![2, 3]));
        c.appended(vec![(E(4, "huge"), 30)]);
        assert_eq!(c.get(4, 5), None);
        assert_eq!(c.get(3, 4), None, "cleared rather than holding a gap");
        c.appended(vec![(E(5, "a"), 10)]);
        assert_eq!(idx(c.get(5, 6)), Some(vec![5]));
    }
}
