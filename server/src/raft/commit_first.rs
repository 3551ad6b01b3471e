//! A follower applies what the leader committed before it appends what came with it.
//!
//! An AppendEntries carries new entries and the leader's commit index. openraft 0.9.25 handles
//! the two in that order: RaftCore appends the entries, awaits their fsync, and only then
//! raises the follower's commit index. So an entry the leader has already committed (on its
//! own disk and another follower's) is applied on this follower one fsync late: the fsync of
//! the *next* entries. Under steady writes every AppendEntries carries both, and each write
//! answered by a follower (a write it forwarded, which it answers after applying it locally; a
//! linearizable read there, which waits for the read index to apply) waited for two rounds of
//! fsyncs instead of one. etcd's followers apply committed entries while they persist new
//! ones.
//!
//! So the peer service splits such a message: first a *head* with the same vote, `prev_log_id`
//! and `leader_commit` but no entries, then the message itself, queued to RaftCore together
//! (one wake-up, in order). The head raises the commit index to `min(prev_log_id,
//! leader_commit)`: entries this follower holds and that match the leader's log (the head's
//! `prev_log_id` check proves it), and that the leader says are committed, so they are durable
//! on a majority. Applying them does not depend on this follower's own fsync. The head's answer
//! is dropped: whatever it refuses (a stale vote, a log that does not match) the message
//! itself refuses the same way, right after.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::raft::AppendEntriesRequest;

use super::TypeConfig;

/// The commit index already handed to RaftCore by earlier messages, to split only the
/// messages that move it.
#[derive(Debug, Default)]
pub struct CommitFirst {
    told: AtomicU64,
}

impl CommitFirst {
    /// The head to queue before `rpc`, if `rpc` carries entries and a commit index that would
    /// move this follower's past what earlier messages told it. Records what `rpc` tells.
    pub fn head(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> Option<AppendEntriesRequest<TypeConfig>> {
        let commit = rpc.leader_commit.map_or(0, |c| c.index);
        // What `rpc` commits here once appended: no further than its last entry.
        let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id).map_or(0, |l| l.index);
        let told = self.told.fetch_max(commit.min(last), Ordering::Relaxed);
        let prev = rpc.prev_log_id?;
        (!rpc.entries.is_empty() && commit.min(prev.index) > told).then(|| AppendEntriesRequest {
            vote: rpc.vote,
            prev_log_id: Some(prev),
            entries: Vec::new(),
            leader_commit: rpc.leader_commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::*;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    fn rpc(
        prev: Option<u64>,
        entries: std::ops::RangeInclusive<u64>,
        commit: Option<u64>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: prev.map(log_id),
            entries: entries.map(|i| Entry { log_id: log_id(i), payload: EntryPayload::Blank }).collect(),
            leader_commit: commit.map(log_id),
        }
    }

    #[test]
    fn a_message_that_moves_the_commit_index_and_carries_entries_gets_a_head() {
        let c = CommitFirst::default();
        let head = c.head(&rpc(Some(10), 11..=12, Some(9))).expect("commit 9 is new and entries follow");
        assert_eq!(head.vote, Vote::new_committed(2, 1));
        assert_eq!(head.prev_log_id, Some(log_id(10)));
        assert!(head.entries.is_empty());
        assert_eq!(head.leader_commit, Some(log_id(9)));
    }

    #[test]
    fn only_messages_that_move_it_past_what_was_told_get_one() {
        let c = CommitFirst::default();
        assert!(c.head(&rpc(Some(10), 11..=12, Some(9))).is_some());
        assert!(c.head(&rpc(Some(12), 13..=13, Some(9))).is_none(), "9 was told already");
        assert!(c.head(&rpc(Some(13), 14..=14, Some(13))).is_some());
    }

    #[test]
    fn a_commit_beyond_the_entries_counts_only_up_to_them() {
        let c = CommitFirst::default();
        // A lagging follower: the leader committed 12, this message brings it to 9.
        assert!(c.head(&rpc(Some(4), 5..=9, Some(12))).is_some());
        // So 9 is what it commits; the next message's head could commit up to 9 only: none.
        assert!(c.head(&rpc(Some(9), 10..=14, Some(13))).is_none());
        assert!(c.head(&rpc(Some(14), 15..=15, Some(14))).is_some());
    }

    #[test]
    fn heartbeats_and_commits_beyond_the_entries_before_them_get_none() {
        let c = CommitFirst::default();
        // No entries: the message itself commits without an append.
        assert!(c.head(&rpc(Some(10), 1..=0, Some(10))).is_none());
        // The commit index is told, so a later message at the same commit needs no head.
        assert!(c.head(&rpc(Some(10), 11..=11, Some(10))).is_none());
        // Nothing before the entries: nothing the head could commit.
        let c = CommitFirst::default();
        assert!(c.head(&rpc(None, 1..=2, Some(2))).is_none());
        // The commit lies within the new entries only: the head commits what precedes them.
        let c = CommitFirst::default();
        let head = c.head(&rpc(Some(4), 5..=9, Some(8))).expect("4 precedes the entries");
        assert_eq!(head.prev_log_id, Some(log_id(4)));
    }
}
