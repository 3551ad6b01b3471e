//! The leader's read lease: linearizable reads without a heartbeat round while a quorum has
//! recently acknowledged this leader.
//!
//! Why: openraft 0.9's `ensure_linearizable` sends a heartbeat to every voter per check and
//! waits for a quorum. A follower's Raft core handles that heartbeat only after the log append
//! it is busy with, so on a slow disk every linearizable read waited about one follower fsync
//! (README "Benchmarks", reads beside writers at +5 ms).
//!
//! Guarantee: no other leader can exist while the lease holds, so this leader's applied state
//! is the newest committed state, and a read served from it is linearizable. The argument:
//! - A voter that accepted an AppendEntries from this leader (any answer but "higher vote")
//!   refuses every vote request for openraft's leader lease (`election_timeout_max`) after it
//!   handled it, and handling comes after the leader sent it. A restarted voter restores its
//!   committed vote with the start-up time as its last contact, so a restart does not shorten it.
//! - So if a quorum of every configuration in the membership accepted requests this leader sent
//!   at or after `t`, no candidate can collect a quorum before `t + election_timeout_max`.
//! - The leader's own vote is the exception: openraft 0.9 lets a leader grant a vote once its
//!   own lease has run out (that is how a leadership transfer hands over). Every vote request
//!   this member receives therefore [`revoke`](ReadLease::revoke)s the lease first, before
//!   openraft sees it.
//! - The lease ends `MARGIN` before the voters' to absorb clock-rate differences between
//!   machines (monotonic clocks; no wall clock is involved).
//!
//! It depends on the members running the same election timeout, and on clocks advancing at
//! about the same rate. `--read-lease false` turns it off: every read then confirms leadership
//! with a heartbeat round as before.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesResponse;
use openraft::Vote;

use super::NodeId;

/// The part of the voters' lease this leader does not use.
fn margin(lease: Duration) -> Duration {
    (lease / 5).max(Duration::from_millis(10))
}

/// The lease of one member (shared by its peer network, peer service and read path).
#[derive(Debug)]
pub struct ReadLease {
    /// How long after a send time an acknowledgement keeps its voter from voting, less the margin.
    hold: Duration,
    enabled: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The vote (term and leader) the acknowledgements belong to.
    vote: Option<Vote<NodeId>>,
    /// Per voter: the latest send time of a request it accepted under `vote`.
    acked: HashMap<NodeId, Instant>,
    /// Acknowledgements of requests sent before this do not count.
    revoked_at: Option<Instant>,
    /// Suspensions running (a membership change).
    suspended: u32,
}

impl ReadLease {
    /// A lease for voters whose lease (openraft's `election_timeout_max`) is `voter_lease`;
    /// `enabled == false` makes [`holds`](Self::holds) always false.
    pub fn new(voter_lease: Duration, enabled: bool) -> Self {
        Self { hold: voter_lease.saturating_sub(margin(voter_lease)), enabled, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the answer of `target` to an AppendEntries sent at `sent` under `vote`.
    pub fn answered(&self, target: NodeId, vote: &Vote<NodeId>, sent: Instant, reply: &AppendEntriesResponse<NodeId>) {
        if matches!(reply, AppendEntriesResponse::HigherVote(_)) || !vote.is_committed() {
            return;
        }
        let mut s = self.state();
        if s.revoked_at.is_some_and(|r| sent <= r) {
            return;
        }
        if s.vote.as_ref() != Some(vote) {
            s.vote = Some(*vote);
            s.acked.clear();
        }
        let t = s.acked.entry(target).or_insert(sent);
        *t = (*t).max(sent);
    }

    /// Ends the lease now: acknowledgements of requests sent so far no longer count.
    pub fn revoke(&self) {
        self.state().revoke();
    }

    /// Revokes the lease and keeps it off until the guard drops (a membership change: the
    /// configuration the quorum is counted in is moving).
    pub fn suspend(&self) -> Suspended<'_> {
        let mut s = self.state();
        s.suspended += 1;
        s.revoke();
        Suspended(self)
    }

    /// Whether `me`, leading under `vote` with membership `configs` (every configuration of a
    /// joint one), holds the lease at `now`.
    pub fn holds(&self, me: NodeId, vote: &Vote<NodeId>, configs: &[BTreeSet<NodeId>], now: Instant) -> bool {
        if !self.enabled || configs.is_empty() {
            return false;
        }
        let s = self.state();
        if s.suspended > 0 || s.vote.as_ref() != Some(vote) || vote.leader_id().voted_for() != Some(me) {
            return false;
        }
        let fresh = |id: &NodeId| *id == me || s.acked.get(id).is_some_and(|t| now < *t + self.hold);
        configs.iter().all(|voters| voters.iter().filter(|v| fresh(v)).count() * 2 > voters.len())
    }
}

/// Keeps the lease off while alive (see [`ReadLease::suspend`]).
pub struct Suspended<'a>(&'a ReadLease);

impl Drop for Suspended<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.suspended -= 1;
        s.revoke();
    }
}

impl State {
    fn revoke(&mut self) {
        self.revoked_at = Some(Instant::now());
        self.acked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(300);

    fn vote(term: u64, leader: NodeId) -> Vote<NodeId> {
        Vote::new_committed(term, leader)
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn ok() -> AppendEntriesResponse<NodeId> {
        AppendEntriesResponse::Success
    }

    #[test]
    fn a_quorum_of_recent_acknowledgements_holds_and_expires_before_the_voters_lease() {
        let lease = ReadLease::new(LEASE, true);
        let v = vote(3, 1);
        let sent = Instant::now();
        let voters = [set(&[1, 2, 3])];
        assert!(!lease.holds(1, &v, &voters, sent), "no acknowledgement yet: only itself");
        lease.answered(2, &v, sent, &ok());
        assert!(lease.holds(1, &v, &voters, sent + Duration::from_millis(200)));
        assert!(!lease.holds(1, &v, &voters, sent + LEASE - margin(LEASE)), "ends before the voters' lease");
        assert!(!lease.holds(1, &v, &voters, sent + LEASE));
    }

    #[test]
    fn a_conflict_counts_a_higher_vote_does_not() {
        let lease = ReadLease::new(LEASE, true);
        let v = vote(3, 1);
        let now = Instant::now();
        let voters = [set(&[1, 2, 3])];
        lease.answered(2, &v, now, &AppendEntriesResponse::HigherVote(vote(4, 2)));
        assert!(!lease.holds(1, &v, &voters, now));
        lease.answered(3, &v, now, &AppendEntriesResponse::Conflict);
        assert!(lease.holds(1, &v, &voters, now));
    }

    #[test]
    fn another_term_or_leader_does_not_hold() {
        let lease = ReadLease::new(LEASE, true);
        let now = Instant::now();
        let voters = [set(&[1, 2, 3])];
        lease.answered(2, &vote(3, 1), now, &ok());
        assert!(!lease.holds(1, &vote(4, 1), &voters, now), "acknowledgements of term 3 prove nothing in term 4");
        assert!(!lease.holds(2, &vote(3, 1), &voters, now), "only the leader of the vote holds it");
        lease.answered(3, &vote(4, 1), now, &ok());
        assert!(!lease.holds(1, &vote(3, 1), &voters, now), "a new vote drops the old acknowledgements");
    }

    #[test]
    fn a_vote_request_revokes_and_only_later_sends_count_again() {
        let lease = ReadLease::new(LEASE, true);
        let v = vote(3, 1);
        let voters = [set(&[1, 2, 3])];
        let before = Instant::now();
        lease.answered(2, &v, before, &ok());
        lease.revoke();
        assert!(!lease.holds(1, &v, &voters, Instant::now()));
        lease.answered(3, &v, before, &ok());
        assert!(!lease.holds(1, &v, &voters, Instant::now()), "sent before the revocation");
        let after = Instant::now() + Duration::from_millis(1);
        lease.answered(3, &v, after, &ok());
        assert!(lease.holds(1, &v, &voters, after));
    }

    #[test]
    fn a_joint_membership_needs_a_quorum_in_each_configuration() {
        let lease = ReadLease::new(LEASE, true);
        let v = vote(3, 1);
        let now = Instant::now();
        lease.answered(2, &v, now, &ok());
        assert!(lease.holds(1, &v, &[set(&[1, 2, 3])], now));
        assert!(!lease.holds(1, &v, &[set(&[1, 2, 3]), set(&[1, 4, 5])], now));
        lease.answered(4, &v, now, &ok());
        assert!(lease.holds(1, &v, &[set(&[1, 2, 3]), set(&[1, 4, 5])], now));
        assert!(!lease.holds(1, &v, &[set(&[2, 3, 4, 5, 6])], now), "a configuration without the leader");
    }

    #[test]
    fn suspended_or_disabled_never_holds() {
        let v = vote(3, 1);
        let voters = [set(&[1, 2, 3])];
        let off = ReadLease::new(LEASE, false);
        let now = Instant::now();
        off.answered(2, &v, now, &ok());
        assert!(!off.holds(1, &v, &voters, now));

        let lease = ReadLease::new(LEASE, true);
        let guard = lease.suspend();
        let during = Instant::now() + Duration::from_millis(1);
        lease.answered(2, &v, during, &ok());
        assert!(!lease.holds(1, &v, &voters, during));
        drop(guard);
        assert!(!lease.holds(1, &v, &voters, during), "sent during the change: revoked when it ended");
        let after = Instant::now() + Duration::from_millis(1);
        lease.answered(2, &v, after, &ok());
        assert!(lease.holds(1, &v, &voters, after));
    }
}
