//! openraft's `RaftLogStorage` over a [`LogEngine`]: the durable Raft log, vote and purge point.
//!
//! Durability: `save_vote`, `truncate` and a follower's `append` (before its flush callback
//! fires) are fsynced. `purge` records the purge point durably before deleting entries, so a
//! restart after a crash mid-purge still reports the right `last_purged_log_id`;
//! `get_log_state` (called at start-up) completes such an interrupted purge. Blocking engine
//! calls run on tokio's blocking pool, except those on every write's path: `append` runs in
//! place while the disk is fast (see `LogStore::blocking_inline` and `append_policy`) and
//! `save_committed` (no fsync) always does.
//!
//! **The leader's appends are pipelined** (engines that defer syncs, i.e. the segment files):
//! openraft 0.9.25's RaftCore awaits the flush callback before it sends new entries to the
//! followers, so a write used to wait for the leader's fsync and then a follower's. When this
//! member leads the term of every entry in the batch (its last saved vote is for itself), the
//! entries are written (readable at once), the callback fires, and the `log-flusher` thread
//! fsyncs them while they are replicated. What keeps an acknowledged write durable on a
//! majority is in [`super::durability`]: nothing is applied, answered or sent as committed
//! before the leader's own copy is durable. Followers, membership entries and sled append
//! synchronously, as before.
//!
//! Every entry written is made durable by a later fsync in append order: the durable mark
//! ([`Durability`]) says up to where.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::append_policy::AppendPolicy;
use super::durability::Durability;
use super::engine::LogEngine;
use super::io_err;
use super::recent_entries::RecentEntries;
use crate::log_entry::{decode, encode};
use crate::types::{LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// The Raft log store. Cheap to clone (shares the engine and the cache of recent entries).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn LogEngine>,
    recent: Arc<RecentEntries<Entry>>,
    appends: Arc<AppendPolicy>,
    /// This member's id: its appends are pipelined in the terms it leads.
    me: NodeId,
    /// The term whose leader this member is by its last saved vote (0: none).
    leading_term: Arc<AtomicU64>,
    /// The highest index written (durable or not).
    written: Arc<AtomicU64>,
    durable: Arc<Durability>,
    /// The flusher thread's queue (the last index written, the durable generation), when the
    /// engine defers syncs.
    flusher: Option<mpsc::Sender<(u64, u64)>>,
}

impl LogStore {
    /// A log store over `engine` for member `me`. If the engine defers syncs
    /// ([`LogEngine::defers_sync`]), a `log-flusher` thread fsyncs the leader's appends.
    pub fn new(engine: Arc<dyn LogEngine>, me: NodeId) -> Self {
        let durable = Arc::new(Durability::default());
        let flusher = engine.defers_sync().then(|| {
            let (tx, rx) = mpsc::channel::<(u64, u64)>();
            let (engine, durable) = (engine.clone(), durable.clone());
            std::thread::Builder::new()
                .name("log-flusher".into())
                .spawn(move || flush_loop(engine.as_ref(), &durable, &rx))
                .map(|_| tx)
        });
        let flusher = match flusher.transpose() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "no log-flusher thread: the leader's appends are not pipelined");
                None
            }
        };
        Self {
            engine,
            recent: Arc::default(),
            appends: Arc::default(),
            me,
            leading_term: Arc::default(),
            written: Arc::default(),
            durable,
            flusher,
        }
    }

    /// How far this member's log is durable: the state machine and the peer network wait on it.
    pub fn durability(&self) -> Arc<Durability> {
        self.durable.clone()
    }

    /// Records whose term this member leads by `vote`: entries of that term can only be its own
    /// (one leader per term; a member that sees another leader of the term saves that vote
    /// before it appends anything from it).
    fn note_vote(&self, vote: &Vote<NodeId>) {
        let leads = vote.leader_id().voted_for() == Some(self.me);
        self.leading_term.store(if leads { vote.leader_id().get_term() } else { 0 }, Ordering::SeqCst);
    }

    /// The flusher to hand `entries` to, if they can be written without waiting for their
    /// fsync: the engine defers syncs, this member leads their term (no other member can have
    /// written them) and none changes the membership.
    fn pipeline(&self, entries: &[Entry]) -> Option<&mpsc::Sender<(u64, u64)>> {
        let term = self.leading_term.load(Ordering::SeqCst);
        let own = term != 0
            && entries.iter().all(|e| {
                e.log_id.leader_id.term == term && !matches!(e.payload, openraft::EntryPayload::Membership(_))
            });
        self.flusher.as_ref().filter(|_| own)
    }

    async fn blocking<T, F>(&self, subject: ErrorSubject<NodeId>, verb: ErrorVerb, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn LogEngine) -> Result<T, String> + Send + 'static,
    {
        let engine = self.engine.clone();
        let s2 = subject.clone();
        tokio::task::spawn_blocking(move || f(engine.as_ref()))
            .await
            .map_err(|e| io_err(s2, verb, e))?
            .map_err(|e| io_err(subject, verb, e))
    }

    /// Like [`Self::blocking`], but runs `f` on this thread: under `block_in_place` on a
    /// multi-thread runtime (tokio moves the worker's other tasks elsewhere meanwhile), plainly
    /// on a current-thread runtime, whose whole node then waits for `f` (`--runtime`). Handing
    /// `f` to the blocking pool instead costs a thread wake-up each way, ~100 µs per call.
    async fn blocking_inline<T, F>(
        &self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
        f: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn LogEngine) -> Result<T, String> + Send + 'static,
    {
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            let engine = self.engine.clone();
            tokio::task::block_in_place(move || f(engine.as_ref())).map_err(|e| io_err(subject, verb, e))
        } else {
            f(self.engine.as_ref()).map_err(|e| io_err(subject, verb, e))
        }
    }

    async fn read_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StorageError> {
        self.blocking(ErrorSubject::Store, ErrorVerb::Read, move |e| {
            e.get_meta(key)
                .map_err(|e| e.to_string())?
                .map(|bytes| decode::<T>(&bytes).map_err(|e| e.to_string()))
                .transpose()
        })
        .await
    }

    async fn write_meta<T: Serialize>(&self, key: &'static str, value: &T, durable: bool) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let write = move |e: &dyn LogEngine| e.put_meta(key, &bytes, durable).map_err(|e| e.to_string());
        if durable {
            self.blocking(ErrorSubject::Store, ErrorVerb::Write, write).await
        } else {
            // No fsync: one small write of a few microseconds, far cheaper than a hand-off to
            // another thread, so it runs right here on whatever runtime.
            write(self.engine.as_ref()).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
        }
    }

    /// The id of the last log entry (or the purge point if the log is empty), read-only: what
    /// a voter compares a candidate's log against. Used by the pre-vote probe, outside openraft.
    ///
    /// # Errors
    /// When the engine cannot be read.
    pub async fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta::<Option<LogId>>(LAST_PURGED).await?.flatten();
        let last: Option<Entry> = self
            .blocking(ErrorSubject::Logs, ErrorVerb::Read, |e| {
                e.last()
                    .map_err(|e| e.to_string())?
                    .map(|(_, bytes)| decode::<Entry>(&bytes).map_err(|e| e.to_string()))
                    .transpose()
            })
            .await?;
        Ok(std::cmp::max(last.map(|e| e.log_id), last_purged))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(entries) = self.recent.get(start, end) {
            return Ok(entries);
        }
        self.blocking(ErrorSubject::Logs, ErrorVerb::Read, move |e| {
            e.range(start, end)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(_, bytes)| decode::<Entry>(&bytes).map_err(|e| e.to_string()))
                .collect()
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta::<Option<LogId>>(LAST_PURGED).await?.flatten();
        if let Some(upto) = last_purged.map(|l| l.index) {
            // Entry deletion in `purge` is not durable: after a crash, entries up to the
            // recorded purge point may be back. Complete the purge before reporting.
            self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| {
                e.purge_upto(upto).map_err(|e| e.to_string())
            })
            .await?;
        }
        // Never behind the purge point (a purge may go past the end of the log).
        let last_log_id = self.last_log_id().await?;
        // The engine made everything it reports durable when it opened.
        let last = last_log_id.map_or(0, |l| l.index);
        self.written.store(last, Ordering::SeqCst);
        self.durable.synced_to(last);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // Before the vote is saved: from now on appends in another term are not this member's
        // own, and go the synchronous way.
        self.note_vote(vote);
        self.write_meta(VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        // openraft restores a leader's committed vote at start-up without saving it again.
        let vote: Option<Vote<NodeId>> = self.read_meta(VOTE).await?;
        if let Some(v) = &vote {
            self.note_vote(v);
        }
        Ok(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: a lost update only means re-applying fewer entries at start-up; the
        // committed entries are re-learned from the leader. Not saved past the durable mark
        // (a pipelined leader commits before its own fsync): a power cut must not leave a
        // committed index beyond the log it kept.
        if committed.is_some_and(|c| c.index > self.durable.index()) {
            return Ok(());
        }
        self.write_meta(COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let (first, last) = (first.log_id.index, last.log_id.index);
        if first <= self.written.load(Ordering::SeqCst) {
            // Overwrites entries (the engine cuts the log there first).
            self.durable.truncated(first);
        }
        let flusher = self.pipeline(&entries);
        let encoded = entries
            .iter()
            .map(|entry| encode(entry).map(|bytes| (entry.log_id.index, bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let sizes: Vec<usize> = encoded.iter().map(|(_, b)| b.len()).collect();
        if let Some(flusher) = flusher {
            // Written here (a write to the page cache), fsynced by the flusher while RaftCore
            // sends the entries to the followers.
            let generation = self.durable.generation();
            if let Err(e) = self.engine.append_unsynced(encoded) {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
            }
            self.recent.appended(entries.into_iter().zip(sizes).collect());
            self.written.store(last, Ordering::SeqCst);
            if flusher.send((last, generation)).is_err() {
                self.durable.failed();
                let e = "the log-flusher thread has stopped";
                callback.log_io_completed(Err(std::io::Error::other(e)));
                return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
            }
            crate::ops::metrics::global().appends_pipelined.inc();
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // In place while the disk is fast (a hand-off to a pool thread costs ~100 µs of
        // wake-ups), on a pool thread once it is slow, so that reads on this node's thread need
        // not wait for the fdatasync (`append_policy`).
        let append = move |e: &dyn LogEngine| {
            let started = std::time::Instant::now();
            e.append(encoded).map(|()| started.elapsed()).map_err(|e| e.to_string())
        };
        let result = if self.appends.offload() {
            self.blocking(ErrorSubject::Logs, ErrorVerb::Write, append).await
        } else {
            self.blocking_inline(ErrorSubject::Logs, ErrorVerb::Write, append).await
        };
        match result {
            Ok(took) => {
                self.appends.observe(took);
                self.recent.appended(entries.into_iter().zip(sizes).collect());
                self.written.store(last, Ordering::SeqCst);
                // `append` syncs every segment written so far, after any sync started before.
                self.durable.synced_to(last);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.recent.truncated(from);
        self.durable.truncated(from);
        self.written.fetch_min(from.saturating_sub(1), Ordering::SeqCst);
        // Then sync what is left: a flush this member started as leader may have been
        // overtaken by the truncation (its mark is ignored), and what it covered is still owed.
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| {
            e.truncate_from(from).and_then(|()| e.sync()).map_err(|e| e.to_string())
        })
        .await?;
        self.durable.synced_to(from.saturating_sub(1));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_meta(LAST_PURGED, &Some(log_id), true).await?;
        let upto = log_id.index;
        self.recent.purged(upto);
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| e.purge_upto(upto).map_err(|e| e.to_string()))
            .await
    }
}

/// The flusher thread: waits for a pipelined append, takes every other one queued behind it,
/// fsyncs once (covering all of them: each was written before it was queued) and raises the
/// durable mark to the last of them. On a failed fsync it marks the log as not durable, which
/// stops the member at its next apply. Ends when every sender (every [`LogStore`] clone) is
/// dropped.
pub(crate) fn flush_loop(engine: &dyn LogEngine, durable: &Durability, rx: &mpsc::Receiver<(u64, u64)>) {
    while let Ok(first) = rx.recv() {
        let (index, generation) = rx.try_iter().last().unwrap_or(first);
        match engine.sync() {
            Ok(()) => durable.flushed(index, generation),
            Err(e) => {
                tracing::error!(error = %e, "the Raft log could not be fsynced: this member stops");
                durable.failed();
                return;
            }
        }
    }
}
