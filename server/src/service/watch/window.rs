//! The shared window of recent revisions that all watch streams of a member read from
//! (pure bookkeeping, no I/O and no locking: [`super::feed`] owns one behind a mutex).
//!
//! The window covers a range of revisions `[start, end]` completely: every revision in it that
//! changed anything is held (as an `Arc`, so every stream shares one copy), in order. A read
//! from a position inside the range is served from the window; a position before `start`
//! (the window has not been filled yet, was restarted, or has evicted that revision) is
//! [`WindowRead::Behind`]: the caller reads that part from the state machine's history.
//!
//! Bound: at most `max_revisions` revisions and at most `max_bytes` of their declared size
//! (one revision is always kept, whatever its size); the oldest are evicted first.

use std::collections::VecDeque;
use std::sync::Arc;

/// What a reader at a position gets from the window.
#[derive(Debug)]
pub enum WindowRead<T> {
    /// The position is before the window (or the window is empty and unfilled): read history.
    Behind,
    /// Changed revisions from the position on, in order (at most the requested number), and
    /// where the reader continues.
    Revisions {
        /// `(revision, shared changes)`.
        revisions: Vec<(u64, Arc<T>)>,
        /// The reader's next position.
        next: u64,
    },
}

/// Recent revisions, shared; see the module doc.
#[derive(Debug)]
pub struct Window<T> {
    /// First covered revision.
    start: u64,
    /// Last covered revision (`start == end + 1`: covers nothing yet); `None` before the first fill.
    end: Option<u64>,
    revisions: VecDeque<(u64, Arc<T>, usize)>,
    bytes: usize,
    max_revisions: usize,
    max_bytes: usize,
}

impl<T> Window<T> {
    /// An empty, unfilled window holding at most `max_revisions` revisions (at least 1) and
    /// `max_bytes`.
    pub fn new(max_revisions: usize, max_bytes: usize) -> Self {
        Self {
            start: 1,
            end: None,
            revisions: VecDeque::new(),
            bytes: 0,
            max_revisions: max_revisions.max(1),
            max_bytes,
        }
    }

    /// The last covered revision; `None` before the first fill.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// The most revisions the window holds.
    pub fn max_revisions(&self) -> usize {
        self.max_revisions
    }

    /// Forgets everything: the window covers nothing, and continues after `revision`.
    pub fn restart(&mut self, revision: u64) {
        self.revisions.clear();
        self.bytes = 0;
        self.start = revision + 1;
        self.end = Some(revision);
    }

    /// Adds the changes of `revision` (after the end; the revisions in between changed
    /// nothing), `bytes` big, then evicts the oldest revisions beyond the bound. A revision at
    /// or before the end is ignored (it is already covered).
    pub fn push(&mut self, revision: u64, changes: T, bytes: usize) {
        let Some(end) = self.end else {
            self.restart(revision.saturating_sub(1));
            return self.push(revision, changes, bytes);
        };
        if revision <= end {
            return;
        }
        self.revisions.push_back((revision, Arc::new(changes), bytes));
        self.bytes += bytes;
        self.end = Some(revision);
        while self.revisions.len() > self.max_revisions || (self.bytes > self.max_bytes && self.revisions.len() > 1) {
            if let Some((evicted, _, size)) = self.revisions.pop_front() {
                self.bytes -= size;
                self.start = evicted + 1;
            }
        }
    }

    /// Marks every revision up to `revision` covered (the ones after the last push changed nothing).
    pub fn advance(&mut self, revision: u64) {
        match self.end {
            Some(end) if revision > end => self.end = Some(revision),
            Some(_) => {}
            None => self.restart(revision),
        }
    }

    /// At most `max` changed revisions from `next` on. A position after the end reads nothing
    /// and stays.
    pub fn read(&self, next: u64, max: usize) -> WindowRead<T> {
        let Some(end) = self.end else {
            return WindowRead::Behind;
        };
        if next < self.start {
            return WindowRead::Behind;
        }
        let first = self.revisions.partition_point(|(r, _, _)| *r < next);
        let revisions: Vec<(u64, Arc<T>)> =
            self.revisions.iter().skip(first).take(max).map(|(r, c, _)| (*r, c.clone())).collect();
        let more = self.revisions.len() - first > revisions.len();
        let next = match revisions.last() {
            Some((last, _)) if more => last + 1,
            _ => next.max(end + 1),
        };
        WindowRead::Revisions { revisions, next }
    }
}

#[cfg(test)]
mod tests {
    use super::{Window, WindowRead};

    fn read(w: &Window<&'static str>, next: u64, max: usize) -> Option<(Vec<(u64, &'static str)>, u64)> {
        match w.read(next, max) {
            WindowRead::Behind => None,
            WindowRead::Revisions { revisions, next } => {
                Some((revisions.iter().map(|(r, c)| (*r, **c)).collect(), next))
            }
        }
    }

    #[test]
    fn an_unfilled_window_sends_every_reader_to_history() {
        let w: Window<&str> = Window::new(4, 1000);
        assert!(read(&w, 1, 10).is_none());
        assert_eq!(w.end(), None);
    }

    #[test]
    fn readers_get_changed_revisions_in_order_and_continue_after_the_end() {
        let mut w = Window::new(8, 1000);
        w.restart(10);
        w.push(11, "a", 1);
        w.push(13, "b", 1);
        w.advance(15);
        assert_eq!(read(&w, 11, 10), Some((vec![(11, "a"), (13, "b")], 16)));
        assert_eq!(read(&w, 12, 10), Some((vec![(13, "b")], 16)));
        assert_eq!(read(&w, 14, 10), Some((vec![], 16)), "no changes left: caught up to the end");
        assert_eq!(read(&w, 20, 10), Some((vec![], 20)), "ahead of the window: stays");
        assert!(read(&w, 10, 10).is_none(), "before the window: history");
    }

    #[test]
    fn a_chunked_read_continues_after_the_last_revision_it_got() {
        let mut w = Window::new(8, 1000);
        w.restart(0);
        for r in 1..=5 {
            w.push(r, "x", 1);
        }
        assert_eq!(read(&w, 1, 2).map(|(_, n)| n), Some(3));
        assert_eq!(read(&w, 3, 2).map(|(_, n)| n), Some(5));
        assert_eq!(read(&w, 5, 2).map(|(_, n)| n), Some(6));
    }

    #[test]
    fn eviction_by_count_and_by_bytes_moves_the_start() {
        let mut w = Window::new(3, 1000);
        w.restart(0);
        for r in 1..=5 {
            w.push(r, "x", 1);
        }
        assert!(read(&w, 2, 10).is_none(), "evicted: history");
        assert_eq!(read(&w, 3, 10).map(|(v, _)| v.len()), Some(3));

        let mut w = Window::new(100, 10);
        w.restart(0);
        w.push(1, "small", 4);
        w.push(2, "small", 4);
        w.push(3, "big", 50);
        assert!(read(&w, 2, 10).is_none(), "the big revision pushed the others out");
        assert_eq!(read(&w, 3, 10), Some((vec![(3, "big")], 4)), "one revision is kept whatever its size");
    }

    #[test]
    fn restart_forgets_and_old_revisions_are_ignored() {
        let mut w = Window::new(8, 1000);
        w.restart(0);
        w.push(1, "a", 1);
        w.push(1, "dup", 1);
        assert_eq!(read(&w, 1, 10), Some((vec![(1, "a")], 2)));
        w.restart(50);
        assert!(read(&w, 1, 10).is_none());
        assert_eq!(read(&w, 51, 10), Some((vec![], 51)));
    }
}
