//! The leader's session deadlines, kept so that each expiry tick costs O(sessions opened since
//! the last tick + deadlines reached), not O(sessions).
//!
//! Every session has one deadline and, once the tracker has seen it, one entry in a queue
//! ordered by time. Keep-alives move the deadline only; the queue entry is moved when it is
//! reached and the deadline turns out to be later (lazily: at most one move per TTL per
//! session). Sessions are discovered by id: the session table numbers sessions in order
//! (`SessionTable::open`), so those above the highest id seen are the new ones. A session closed
//! or expired elsewhere is dropped when its entry is reached.
//!
//! A full pass over every session happens only when a deadline restart is needed (a new term,
//! a stall: `restart_all`), never on an ordinary tick. (Before, each 50 ms tick walked every
//! session while holding the state machine's read lock: with 100,000 sessions that took a
//! worker thread most of the time and the leader missed heartbeats.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// How soon a session whose expiry was proposed is looked at again (to drop it once gone, or to
/// expire it again when the proposal failed).
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
pub(super) struct Deadline {
    pub at: Instant,
    /// Expiry has been proposed; keep-alives can no longer save it.
    pub expiring: bool,
}

/// Deadlines of the sessions this leader knows of.
#[derive(Default)]
pub(super) struct Deadlines {
    by_id: HashMap<u64, Deadline>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Highest session id seen by `add_new`.
    seen: u64,
}

impl Deadlines {
    /// Forgets everything (leadership lost or a new term: deadlines restart).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The highest session id already added; sessions above it go to [`Deadlines::add_new`].
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Adds sessions with ids above [`Deadlines::seen`] (`(id, ttl_ms)`, in id order): each gets
    /// a deadline a TTL from `now` (unless a keep-alive set one already) and a queue entry.
    pub fn add_new(&mut self, sessions: impl IntoIterator<Item = (u64, u64)>, now: Instant) {
        for (id, ttl_ms) in sessions {
            let d =
                self.by_id.entry(id).or_insert(Deadline { at: now + Duration::from_millis(ttl_ms), expiring: false });
            self.queue.push(Reverse((d.at, id)));
            self.seen = self.seen.max(id);
        }
    }

    /// The deadline of live session `id`, created a TTL from `now` if unknown (a keep-alive
    /// that arrived before the tick that adds it).
    pub fn entry(&mut self, id: u64, ttl: Duration, now: Instant) -> &mut Deadline {
        self.by_id.entry(id).or_insert(Deadline { at: now + ttl, expiring: false })
    }

    /// Lets the expiry of `id` be proposed again (the last proposal failed).
    pub fn unmark(&mut self, id: u64) {
        if let Some(d) = self.by_id.get_mut(&id) {
            d.expiring = false;
        }
    }

    /// Restarts every deadline not being expired at the full TTL from `now` (never earlier
    /// than it was). `ttl_ms` gives a session's TTL (`None`: gone). O(sessions).
    pub fn restart_all(&mut self, ttl_ms: impl Fn(u64) -> Option<u64>, now: Instant) {
        for (id, d) in self.by_id.iter_mut().filter(|(_, d)| !d.expiring) {
            if let Some(ttl) = ttl_ms(*id) {
                d.at = d.at.max(now + Duration::from_millis(ttl));
            }
        }
    }

    /// Sessions whose deadline has passed at `now`, marked expiring. `live` says whether a
    /// session still exists. Costs O(entries reached · log n).
    pub fn due(&mut self, now: Instant, live: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(d) = self.by_id.get_mut(&id) else { continue };
            if !live(id) {
                self.by_id.remove(&id);
                continue;
            }
            if d.expiring {
                self.queue.push(Reverse((now + RECHECK, id)));
            } else if d.at > now {
                self.queue.push(Reverse((d.at, id)));
            } else {
                d.expiring = true;
                self.queue.push(Reverse((now + RECHECK, id)));
                expired.push(id);
            }
        }
        expired
    }

    /// Number of sessions with a deadline.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 1_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_session_expires_at_its_deadline_once() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.add_new([(1, TTL), (2, 2 * TTL)], t0);
        assert_eq!(d.seen(), 2);
        assert!(d.due(t0 + ms(999), |_| true).is_empty());
        assert_eq!(d.due(t0 + ms(1_000), |_| true), vec![1]);
        assert!(d.due(t0 + ms(1_500), |_| true).is_empty(), "already being expired");
        assert_eq!(d.due(t0 + ms(2_000), |_| true), vec![2]);
    }

    #[test]
    fn a_renewed_deadline_moves_the_expiry_without_touching_the_queue() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.add_new([(1, TTL)], t0);
        d.entry(1, ms(TTL), t0).at = t0 + ms(1_800);
        assert!(d.due(t0 + ms(1_000), |_| true).is_empty());
        assert!(d.due(t0 + ms(1_799), |_| true).is_empty());
        assert_eq!(d.due(t0 + ms(1_800), |_| true), vec![1]);
    }

    #[test]
    fn a_failed_expiry_is_proposed_again_and_a_gone_session_is_dropped() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.add_new([(1, TTL), (2, TTL)], t0);
        assert_eq!(d.due(t0 + ms(1_000), |_| true), vec![1, 2]);
        d.unmark(1);
        assert_eq!(d.due(t0 + ms(1_000) + RECHECK, |id| id == 1), vec![1], "retried; 2 is gone");
        assert_eq!(d.len(), 1);
        // A session closed before its deadline goes when its entry is reached.
        d.add_new([(3, TTL)], t0);
        assert!(d.due(t0 + ms(1_000) + RECHECK * 2, |id| id != 3).iter().all(|id| *id != 3));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_keep_alive_before_the_tick_keeps_its_deadline_and_the_session_still_gets_an_entry() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.entry(5, ms(TTL), t0 + ms(400));
        d.add_new([(5, TTL)], t0 + ms(500));
        assert!(d.due(t0 + ms(1_399), |_| true).is_empty());
        assert_eq!(d.due(t0 + ms(1_400), |_| true), vec![5]);
    }

    #[test]
    fn a_restart_moves_deadlines_later_only_and_spares_those_being_expired() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.add_new([(1, TTL), (2, TTL)], t0);
        assert_eq!(d.due(t0 + ms(1_000), |id| id == 1 || id == 2).len(), 2);
        d.unmark(2);
        d.entry(3, ms(TTL), t0).at = t0 + ms(5_000);
        d.restart_all(|_| Some(TTL), t0 + ms(1_000));
        assert_eq!(d.by_id[&2].at, t0 + ms(2_000), "restarted at the full TTL");
        assert_eq!(d.by_id[&3].at, t0 + ms(5_000), "never earlier than it was");
        assert_eq!(d.by_id[&1].at, t0 + ms(1_000), "being expired: untouched");
    }

    /// Many sessions: every one expires exactly once, at or after its deadline, in any
    /// interleaving of ticks and renewals (a model check against a plain map).
    #[test]
    fn every_session_expires_once_and_never_before_its_deadline() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let mut model: HashMap<u64, Instant> = HashMap::new();
        let mut expired: HashMap<u64, Instant> = HashMap::new();
        let mut next_id = 0;
        for tick in 0..400u64 {
            let now = t0 + ms(tick * 50);
            // A few new sessions, and renewals of a varying subset.
            let new: Vec<(u64, u64)> = (0..tick % 4)
                .map(|_| {
                    next_id += 1;
                    (next_id, 300 + (next_id * 37) % 900)
                })
                .collect();
            for (id, ttl) in &new {
                model.insert(*id, now + ms(*ttl));
            }
            d.add_new(new, now);
            for id in (1..=next_id).filter(|id| (id + tick) % 3 == 0 && !expired.contains_key(id)) {
                let ttl = 300 + (id * 37) % 900;
                let e = d.entry(id, ms(ttl), now);
                if !e.expiring {
                    e.at = now + ms(ttl);
                    model.insert(id, now + ms(ttl));
                }
            }
            for id in d.due(now, |id| !expired.contains_key(&id)) {
                assert!(now >= model[&id], "session {id} expired before its deadline");
                assert!(expired.insert(id, now).is_none(), "session {id} expired twice");
            }
        }
        let end = t0 + ms(400 * 50);
        for (id, at) in &model {
            assert!(*at > end - ms(50) || expired.contains_key(id), "session {id} (deadline {at:?}) never expired");
        }
    }
}
