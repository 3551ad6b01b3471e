//! openraft's `RaftLogStorage` over a [`LogEngine`]: the durable Raft log, vote and purge point.
//!
//! Durability: `save_vote`, `append` (before its flush callback fires) and `truncate` are fsynced.
//! `purge` records the purge point durably before deleting entries, so a restart after a crash
//! mid-purge still reports the right `last_purged_log_id`; `get_log_state` (called at start-up)
//! completes such an interrupted purge. Blocking engine calls run on tokio's blocking pool,
//! except two that sit on every write's path and that RaftCore awaits before doing anything
//! else: `append` (see [`LogStore::blocking_inline`]) and `save_committed` (no fsync) run in
//! place.
//!
//! Deferred sync (an engine whose [`LogEngine::defers_sync`] is true, the segment files):
//! `append` writes the entries (readable at once) and returns; a flusher thread fsyncs and
//! fires the callbacks strictly in append order, one fsync covering every batch queued behind
//! it, never a callback before the sync that covers it. `save_vote`, `truncate` and `purge`
//! first sync whatever is pending. Safe with openraft 0.9.25 because nothing counts an append
//! before its callback: RaftCore's `append_to_log` awaits the callback before its next command
//! (the leader's own progress is updated after it, and a follower's AppendEntries response is
//! the command after it). For the same reason it cannot overlap the leader's fsync with
//! replication: the `Replicate` commands for new entries are queued after `AppendInputEntries`
//! and run only once the callback fired (see docs/design.md, "The leader's fsync off its thread").

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
    /// The flusher thread's queue, when the engine defers syncs.
    flusher: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
}

impl LogStore {
    /// A log store over `engine`. If the engine defers syncs ([`LogEngine::defers_sync`]), a
    /// flusher thread syncs appended entries and fires their callbacks in append order.
    pub fn new(engine: Arc<dyn LogEngine>) -> Self {
        let flusher = engine.defers_sync().then(|| {
            let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("log-flusher".into())
                .spawn(move || flush_loop::<LogFlushed<TypeConfig>>(engine.as_ref(), &rx))
                .map(|_| tx)
                .ok()
        });
        Self { engine, recent: Arc::default(), flusher: flusher.flatten() }
    }

    /// Makes every entry appended so far durable (before a truncation, purge or vote).
    async fn sync_pending(&self) -> Result<(), StorageError> {
        if self.flusher.is_none() {
            return Ok(());
        }
        self.blocking(ErrorSubject::Logs, ErrorVerb::Write, |e| e.sync().map_err(|e| e.to_string())).await
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
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.sync_pending().await?;
        self.write_meta(VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: a lost update only means re-applying fewer entries at start-up; the
        // committed entries are re-learned from the leader.
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
        let encoded = entries
            .iter()
            .map(|entry| encode(entry).map(|bytes| (entry.log_id.index, bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let sizes: Vec<usize> = encoded.iter().map(|(_, b)| b.len()).collect();
        if let Some(flusher) = &self.flusher {
            // Written here (readable at once), fsynced by the flusher thread, which fires the
            // callback once the entries are durable.
            let written = self.engine.append_unsynced(encoded).map_err(|e| e.to_string());
            return match written {
                Ok(()) => {
                    self.recent.appended(entries.into_iter().zip(sizes).collect());
                    flusher
                        .send(callback)
                        .map_err(|_| io_err(ErrorSubject::Logs, ErrorVerb::Write, "the log flusher thread has stopped"))
                }
                Err(e) => {
                    callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                    Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
                }
            };
        }
        // In place, not on the blocking pool: RaftCore waits for this append anyway, and
        // handing it to a pool thread cost ~100 µs of wake-up per append.
        let result = self
            .blocking_inline(ErrorSubject::Logs, ErrorVerb::Write, move |e| {
                e.append(encoded).map_err(|e| e.to_string())
            })
            .await;
        match result {
            Ok(()) => {
                self.recent.appended(entries.into_iter().zip(sizes).collect());
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
        self.sync_pending().await?;
        let from = log_id.index;
        self.recent.truncated(from);
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| e.truncate_from(from).map_err(|e| e.to_string()))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.sync_pending().await?;
        self.write_meta(LAST_PURGED, &Some(log_id), true).await?;
        let upto = log_id.index;
        self.recent.purged(upto);
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| e.purge_upto(upto).map_err(|e| e.to_string()))
            .await
    }
}

/// What the flusher fires once a batch is durable (openraft's [`LogFlushed`]; tests use their
/// own, since openraft gives no way to build a `LogFlushed` outside its core).
pub(crate) trait Flushed: Send + 'static {
    /// Reports the outcome of the sync that covered this batch.
    fn completed(self, result: Result<(), std::io::Error>);
}

impl Flushed for LogFlushed<TypeConfig> {
    fn completed(self, result: Result<(), std::io::Error>) {
        self.log_io_completed(result);
    }
}

/// The flusher thread: waits for an appended batch's callback, takes every other one queued
/// behind it, syncs once (covering all of them: each was written before it was queued) and
/// fires them in append order, never before that sync returned. Ends when every sender (every
/// [`LogStore`] clone) is dropped.
pub(crate) fn flush_loop<F: Flushed>(engine: &dyn LogEngine, rx: &mpsc::Receiver<F>) {
    while let Ok(first) = rx.recv() {
        let mut callbacks = vec![first];
        callbacks.extend(rx.try_iter());
        let result = engine.sync().map_err(|e| e.to_string());
        for callback in callbacks {
            callback.completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

#[cfg(test)]
mod tests;
