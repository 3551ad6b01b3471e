//! openraft's `RaftLogStorage` over a [`LogEngine`]: the durable Raft log, vote and purge point.
//!
//! Durability: `save_vote`, `append` (before its flush callback fires) and `truncate` are fsynced.
//! `purge` records the purge point durably before deleting entries, so a restart after a crash
//! mid-purge still reports the right `last_purged_log_id`; `get_log_state` (called at start-up)
//! completes such an interrupted purge. Blocking engine calls run on tokio's blocking pool,
//! except two that sit on every write's path and that RaftCore awaits before doing anything
//! else: `append` runs in place while the disk is fast (see [`LogStore::blocking_inline`] and
//! `append_policy`) and `save_committed` (no fsync) always does.
//!
//! Why `append` fsyncs before it returns instead of firing its callback later from a flusher:
//! openraft 0.9.25's RaftCore awaits the callback inside `append_to_log` before it runs its
//! next command, and the leader's `Replicate` commands for the new entries come after
//! `AppendInputEntries`; a follower's AppendEntries response is likewise the command after it.
//! So a deferred flush is safe (nothing is counted before its callback) but cannot overlap the
//! leader's fsync with replication; measured, it gained nothing (docs/design.md, "The leader's
//! fsync off its thread"). Revisit with openraft 0.10's non-blocking log I/O.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::append_policy::AppendPolicy;
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
}

impl LogStore {
    /// A log store over `engine`.
    pub fn new(engine: Arc<dyn LogEngine>) -> Self {
        Self { engine, recent: Arc::default(), appends: Arc::default() }
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
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| e.truncate_from(from).map_err(|e| e.to_string()))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_meta(LAST_PURGED, &Some(log_id), true).await?;
        let upto = log_id.index;
        self.recent.purged(upto);
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |e| e.purge_upto(upto).map_err(|e| e.to_string()))
            .await
    }
}
