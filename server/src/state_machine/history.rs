//! Reading the retained revision history for a watcher: the changes to a selection of keys from
//! a position on, one group per revision, in revision order. Below the gRPC layer so any front
//! end (the gRPC `Watch` service, a future ZooKeeper front end) reads history the same way.

use super::mvcc::{selects, Change};
use super::StateMachine;
use crate::log_entry::KeySelector;

/// What a watcher at a position gets from history.
#[derive(Debug)]
pub enum HistoryRead {
    /// Changes at revisions from the position on, in order (revisions with no matching change
    /// are skipped), and the watcher's next position.
    Changes {
        /// `(revision, changes)`, in revision order.
        revisions: Vec<(u64, Vec<Change>)>,
        /// Where the watcher continues.
        next: u64,
    },
    /// The position was compacted: the oldest available revision.
    Compacted(u64),
}

impl StateMachine {
    /// Reads at most `max_revisions` changed revisions from `next` on, for keys `selector`
    /// selects. `next` past the current revision reads nothing and stays.
    pub fn read_history(&self, selector: &KeySelector, next: u64, max_revisions: usize) -> HistoryRead {
        self.read_changes(next, max_revisions, |k| selects(selector, k))
    }

    /// Like [`StateMachine::read_history`], for the keys `filter` accepts.
    pub fn read_changes(&self, next: u64, max_revisions: usize, filter: impl Fn(&[u8]) -> bool) -> HistoryRead {
        let current = self.revision();
        if next > current {
            return HistoryRead::Changes { revisions: Vec::new(), next };
        }
        if next < self.compact_revision() {
            return HistoryRead::Compacted(self.compact_revision());
        }
        let changed: Vec<u64> = self.kv().changed_revisions_from(next).take(max_revisions).collect();
        let done = changed.len() < max_revisions;
        let revisions = changed
            .iter()
            .map(|rev| (*rev, self.kv().changes_matching(*rev, &filter)))
            .filter(|(_, changes)| !changes.is_empty())
            .collect();
        let next = if done { current + 1 } else { changed.last().map_or(current + 1, |r| r + 1) };
        HistoryRead::Changes { revisions, next }
    }
}
