//! How far this member's Raft log is durable, for the leader's pipelined appends.
//!
//! A leader may write its new entries, send them to the followers and fsync them at the same
//! time (Raft thesis §10.2.1): the entry is safe once a majority holds it durably, whether or
//! not the leader is in that majority. openraft 0.9.25 cannot overlap them by itself: RaftCore
//! awaits the append's flush callback before it queues replication. So on the leader the log
//! store fires the callback as soon as the entries are written (`storage/log_store.rs`), and a
//! flusher thread fsyncs them. openraft then counts the leader's copy before it is durable, and
//! Conclave keeps the guarantee by never letting anything *act* on a commit the leader's disk
//! does not yet hold:
//!
//! - the state machine applies an entry only once it is durable here ([`Durability::wait`] in
//!   `SmStore::apply`), so no client is answered and no read sees it before then;
//! - an AppendEntries goes out only once its `leader_commit` is durable here (`raft/network.rs`),
//!   so no follower applies it before then;
//! - the committed index is saved only when durable here (`LogStore::save_committed`).
//!
//! So whatever is applied anywhere is durable on the leader and on the follower(s) whose
//! acknowledgement committed it: a majority, as without pipelining. An entry that openraft
//! counted as committed but that the leader lost in a power cut before its fsync was never
//! applied or acknowledged anywhere: it is an uncommitted entry, which Raft may drop. Membership
//! entries are appended synchronously (openraft moves from a joint configuration to the next one
//! on commit, which must therefore be real).
//!
//! The mark is "every entry at or below `index` is durable". A truncation (or an append that
//! overwrites) lowers it and starts a new generation, so that a flush started before it cannot
//! raise the mark over entries written after it.

use tokio::sync::watch;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    index: u64,
    generation: u64,
    failed: bool,
}

/// The durable mark of one member's log. Shared by the log store (which moves it), the state
/// machine store and the peer network (which wait on it).
#[derive(Debug)]
pub struct Durability {
    tx: watch::Sender<Mark>,
}

impl Default for Durability {
    fn default() -> Self {
        Self { tx: watch::Sender::new(Mark::default()) }
    }
}

/// The log could not be made durable (an fsync failed): the member must stop.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the Raft log could not be made durable (an fsync failed): this member stops")]
pub struct NotDurable;

impl Durability {
    /// Every entry at or below this index is durable.
    pub fn index(&self) -> u64 {
        self.tx.borrow().index
    }

    /// The current generation (see the module documentation).
    pub fn generation(&self) -> u64 {
        self.tx.borrow().generation
    }

    /// Records that every entry up to `index` is durable. Ignored if it would lower the mark.
    pub fn synced_to(&self, index: u64) {
        self.tx.send_if_modified(|m| {
            let raise = !m.failed && index > m.index;
            if raise {
                m.index = index;
            }
            raise
        });
    }

    /// Records a flush of the entries up to `index`, started in `generation`: ignored if a
    /// truncation happened since (their indexes may now hold other, unsynced entries).
    pub fn flushed(&self, index: u64, generation: u64) {
        self.tx.send_if_modified(|m| {
            let raise = !m.failed && generation == m.generation && index > m.index;
            if raise {
                m.index = index;
            }
            raise
        });
    }

    /// Entries from `from` on are gone or about to be overwritten.
    pub fn truncated(&self, from: u64) {
        self.tx.send_modify(|m| {
            m.index = m.index.min(from.saturating_sub(1));
            m.generation += 1;
        });
    }

    /// An fsync failed: every wait above the mark, now and later, gets [`NotDurable`], and the
    /// mark never rises again (after a failed fsync a later one may succeed without the lost
    /// writes being on the disk).
    pub fn failed(&self) {
        self.tx.send_modify(|m| m.failed = true);
    }

    /// Waits until every entry up to `index` is durable.
    ///
    /// # Errors
    /// [`NotDurable`] once an fsync failed, for an index above the mark (what is below it stays
    /// durable: a follower may still be sent what the leader holds).
    pub async fn wait(&self, index: u64) -> Result<(), NotDurable> {
        let ready = |m: &Mark| m.failed || m.index >= index;
        let mark = *self.tx.borrow();
        let mark = if ready(&mark) {
            mark
        } else {
            let mut rx = self.tx.subscribe();
            // The sender lives in `self`: the channel cannot close while we wait.
            let seen = rx.wait_for(ready).await.map_err(|_| NotDurable)?;
            *seen
        };
        if mark.index >= index {
            Ok(())
        } else {
            Err(NotDurable)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_ends_only_when_the_mark_reaches_its_index() {
        let d = Arc::new(Durability::default());
        d.synced_to(3);
        d.wait(3).await.expect("already durable");
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(5).await }
        });
        d.synced_to(4);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a wait for 5 ended at 4");
        d.flushed(5, d.generation());
        assert_eq!(waiter.await.expect("join"), Ok(()));
    }

    #[test]
    fn a_flush_started_before_a_truncation_does_not_raise_the_mark() {
        let d = Durability::default();
        d.synced_to(10);
        let started_in = d.generation();
        d.truncated(8);
        assert_eq!(d.index(), 7);
        d.flushed(12, started_in);
        assert_eq!(d.index(), 7, "a stale flush raised the mark over overwritten entries");
        d.flushed(12, d.generation());
        assert_eq!(d.index(), 12);
        d.synced_to(9);
        assert_eq!(d.index(), 12, "the mark went down without a truncation");
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_every_wait_above_the_mark() {
        let d = Arc::new(Durability::default());
        d.synced_to(3);
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(4).await }
        });
        d.failed();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("join");
        assert_eq!(got, Err(NotDurable));
        assert_eq!(d.wait(5).await, Err(NotDurable));
        assert_eq!(d.wait(3).await, Ok(()), "what was durable before the failure still is");
        d.synced_to(9);
        assert_eq!(d.index(), 3, "the mark rose after a failed fsync");
    }
}
