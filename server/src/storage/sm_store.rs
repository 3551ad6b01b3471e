//! openraft's `RaftStateMachine`: applies committed entries to the in-memory
//! [`StateMachine`], builds and installs snapshots.
//!
//! The state machine lives in memory; durability comes from the Raft log plus snapshot files.
//! On start-up the newest snapshot is loaded and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use tokio::sync::{watch, Notify};

use super::durability::Durability;
use super::io_err;
use super::snapshot_file::{SnapshotContents, SnapshotContentsRef, SnapshotDir, SNAPSHOT_FORMAT};
use crate::log_entry::LogPayload;
use crate::state_machine::StateMachine;
use crate::types::{BatchResponse, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Applied position, published after every apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Last applied log index.
    pub index: u64,
    /// Store revision after it.
    pub revision: u64,
    /// Term of the last applied log entry (the read lease needs an entry of the leader's own).
    pub term: u64,
}

impl Applied {
    fn at(log_id: Option<LogId>, revision: u64) -> Self {
        Self { index: log_id.map_or(0, |l| l.index), revision, term: log_id.map_or(0, |l| l.leader_id.term) }
    }
}

/// State shared between the Raft state-machine store and the read path.
pub struct SharedState {
    /// The state machine. Apply takes the write lock once per batch of entries.
    pub sm: RwLock<StateMachine>,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    /// The newest snapshot's metadata; its bytes are in its file only.
    current: Mutex<Option<SnapshotMeta>>,
    /// Serializes saving snapshot files and replacing `current`: openraft builds snapshots in a
    /// spawned task, concurrently with installing one from the leader, and a build that started
    /// before an install must not replace the newer installed snapshot (file or `current`).
    snapshot_io: Mutex<()>,
    /// Set while a snapshot is being encoded under the read lock; `encoded` wakes apply after.
    encoding: AtomicBool,
    encoded: Notify,
    applied_tx: watch::Sender<Applied>,
}

impl SharedState {
    /// Subscribes to the applied position.
    pub fn subscribe_applied(&self) -> watch::Receiver<Applied> {
        self.applied_tx.subscribe()
    }

    /// Snapshot metadata for the state as applied now (call with the state's lock held).
    fn applied_meta(&self) -> Result<SnapshotMeta, String> {
        let (last_log_id, last_membership) = self.applied.lock().map_err(|e| e.to_string())?.clone();
        let index = last_log_id.map_or(0, |l| l.index);
        let term = last_log_id.map_or(0, |l| l.leader_id.term);
        Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id: format!("{term}-{index}") })
    }

    /// A copy of the state as applied now and its snapshot metadata, taken under the read lock
    /// (apply waits asynchronously meanwhile, for as long as the copy takes: the key space is a
    /// persistent map, so the copy shares it instead of duplicating it).
    fn copy_applied(&self) -> Result<(SnapshotMeta, StateMachine), String> {
        let _encoding = Encoding::start(self);
        let sm = self.sm.read().map_err(|e| e.to_string())?;
        Ok((self.applied_meta()?, sm.clone()))
    }

    /// Encodes the state as applied now into `out`, in the snapshot file format, as it goes
    /// (never whole in memory), from a copy taken under the read lock
    /// (`SharedState::copy_applied`), so apply goes on while it is encoded; `copied` learns
    /// the copy's metadata and revision before the first byte. Nothing is written to the data
    /// directory and the Raft log is not touched. For backups. Blocking: call off the runtime.
    ///
    /// # Errors
    /// When a lock is poisoned, or encoding or writing to `out` fails.
    pub fn encode_applied_into(
        &self,
        out: &mut dyn std::io::Write,
        copied: impl FnOnce(&SnapshotMeta, u64),
    ) -> Result<(), String> {
        let (meta, sm) = self.copy_applied()?;
        copied(&meta, sm.revision());
        SnapshotContentsRef { format: SNAPSHOT_FORMAT, meta: &meta, state: &sm }.write_to(out)
    }
}

/// The state-machine store handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct SmStore {
    shared: Arc<SharedState>,
    dir: SnapshotDir,
    /// The log's durable mark: an entry is applied only once durable on this member.
    durable: Option<Arc<Durability>>,
}

fn lock_err(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Write, format!("lock poisoned: {e}"))
}

impl SmStore {
    /// Opens the store, loading the newest snapshot in `dir` if there is one; otherwise the
    /// state machine is empty with unset settings (they come from the log, never from this
    /// node's flags).
    ///
    /// # Errors
    /// When the snapshot directory cannot be read or the snapshot is corrupt.
    pub fn open(dir: SnapshotDir) -> Result<Self, String> {
        let loaded = match dir.load_latest().map_err(|e| e.to_string())? {
            Some(bytes) => Some(SnapshotContents::from_bytes(&bytes)?),
            None => None,
        };
        let (sm, applied, current) = match loaded {
            Some(c) => {
                let applied = (c.meta.last_log_id, c.meta.last_membership.clone());
                (c.state, applied, Some(c.meta))
            }
            None => (StateMachine::default(), (None, StoredMembership::default()), None),
        };
        let initial = Applied::at(applied.0, sm.revision());
        let (applied_tx, _) = watch::channel(initial);
        let shared = SharedState {
            sm: RwLock::new(sm),
            applied: Mutex::new(applied),
            current: Mutex::new(current),
            snapshot_io: Mutex::new(()),
            encoding: AtomicBool::new(false),
            encoded: Notify::new(),
            applied_tx,
        };
        Ok(Self { shared: Arc::new(shared), dir, durable: None })
    }

    /// Applies an entry only once the log holds it durably on this member (a pipelined
    /// leader commits before its own fsync; see `storage::durability`).
    #[must_use]
    pub fn with_durability(mut self, durable: Arc<Durability>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The state shared with the read path.
    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn install(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<(), StorageError> {
        let contents = SnapshotContents::from_bytes(&bytes)
            .map_err(|e| io_err(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, e))?;
        let revision = contents.state.revision();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let _io = self.shared.snapshot_io.lock().map_err(lock_err)?;
        self.dir
            .save(index, &bytes)
            .map_err(|e| io_err(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, e))?;
        drop(bytes);
        *self.shared.sm.write().map_err(lock_err)? = contents.state;
        *self.shared.applied.lock().map_err(lock_err)? = (meta.last_log_id, meta.last_membership.clone());
        *self.shared.current.lock().map_err(lock_err)? = Some(meta.clone());
        self.shared.applied_tx.send_replace(Applied::at(meta.last_log_id, revision));
        Ok(())
    }
}

impl SmStore {
    /// Encodes a snapshot of the state as applied now, under the state machine's read lock
    /// (apply waits meanwhile, without blocking its thread: see [`SmStore::write_sm`]), then saves it durably after releasing the
    /// lock. No copy of the state is made: a copy cost its whole size in memory, and the
    /// allocator kept it afterwards (measured: ~20 MB per node after the put benchmark). A
    /// snapshot installed before is newer: it is kept, nothing is written, and it is returned.
    fn build_blocking(&self) -> Result<Snapshot<TypeConfig>, String> {
        let _io = self.shared.snapshot_io.lock().map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let mut current = self.shared.current.lock().map_err(|e| e.to_string())?;
        let (meta, sm) = self.shared.copy_applied()?;
        let held = started.elapsed();
        if let Some(newer) = current.clone().filter(|c| c.last_log_id > meta.last_log_id) {
            return self.read_snapshot(newer);
        }
        let index = meta.last_log_id.map_or(0, |l| l.index);
        // Encoded straight into the file: a large state's snapshot (280 MB for 1 M keys) never
        // sits whole in memory, and growing such a buffer stalled the member's own thread.
        let contents = SnapshotContentsRef { format: SNAPSHOT_FORMAT, meta: &meta, state: &sm };
        let bytes = self.dir.save_with(index, |out| contents.write_to(out))?;
        drop(sm);
        *current = Some(meta.clone());
        crate::ops::metrics::observe_snapshot_save(started.elapsed(), usize::try_from(bytes).unwrap_or(usize::MAX));
        tracing::info!(
            index,
            bytes,
            apply_waited_ms = held.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        // openraft 0.9 keeps only the metadata of a built snapshot (`sm::worker`, and the start-up
        // rebuild in `storage::helper`); a snapshot is sent from its file
        // (`get_current_snapshot`).
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }

    /// The snapshot `meta` describes, read from its file (the caller holds `snapshot_io`).
    fn read_snapshot(&self, meta: SnapshotMeta) -> Result<Snapshot<TypeConfig>, String> {
        let bytes = self.dir.load(meta.last_log_id.map_or(0, |l| l.index)).map_err(|e| e.to_string())?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }

    /// The newest snapshot, read from its file.
    fn current_blocking(&self) -> Result<Option<Snapshot<TypeConfig>>, String> {
        let _io = self.shared.snapshot_io.lock().map_err(|e| e.to_string())?;
        let current = self.shared.current.lock().map_err(|e| e.to_string())?.clone();
        current.map(|meta| self.read_snapshot(meta)).transpose()
    }
}

/// Marks a snapshot encoding in progress (see [`SmStore::write_sm`]); the mark ends on drop.
struct Encoding<'a>(&'a SharedState);

impl<'a> Encoding<'a> {
    fn start(shared: &'a SharedState) -> Self {
        shared.encoding.store(true, Ordering::Release);
        Self(shared)
    }
}

impl Drop for Encoding<'_> {
    fn drop(&mut self) {
        self.0.encoding.store(false, Ordering::Release);
        self.0.encoded.notify_waiters();
    }
}

impl SmStore {
    /// The state machine's write lock, for apply. While a snapshot is being encoded under the
    /// read lock, apply waits for it asynchronously instead of blocking its thread, so the rest
    /// of the node (heartbeats, reads, the network) keeps running on a current-thread runtime.
    async fn write_sm(&self) -> Result<std::sync::RwLockWriteGuard<'_, StateMachine>, StorageError> {
        loop {
            let encoded = self.shared.encoded.notified();
            tokio::pin!(encoded);
            encoded.as_mut().enable();
            match self.shared.sm.try_write() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::Poisoned(e)) => return Err(lock_err(e)),
                Err(TryLockError::WouldBlock) => {}
            }
            if self.shared.encoding.load(Ordering::Acquire) {
                encoded.await;
            } else {
                // A reader on another thread holds the lock for a moment.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Where a snapshot operation runs.
#[derive(Clone, Copy)]
enum Thread {
    /// tokio's blocking pool (reading the newest snapshot file).
    Pool,
    /// A thread of its own at a lower CPU priority ([`SNAPSHOT_NICE`]), for building one.
    /// Encoding a large state takes seconds of CPU (1.4 s for 1 M keys); at the default priority
    /// it competed with the node's own thread, which applies and answers the writes meanwhile.
    /// Snapshots are rare, so a thread each is cheap; the pool's threads are not niced, as they
    /// serve the disk-bound appends too.
    Background,
}

/// Nice value of the thread that builds a snapshot.
const SNAPSHOT_NICE: i32 = 10;

/// Runs a snapshot file operation `f` of this store off the runtime, on `thread`.
async fn snapshot_io<T: Send + 'static>(
    store: &SmStore,
    verb: ErrorVerb,
    thread: Thread,
    f: impl FnOnce(&SmStore) -> Result<T, String> + Send + 'static,
) -> Result<T, StorageError> {
    let this = store.clone();
    let err = |e: String| io_err(ErrorSubject::Snapshot(None), verb, e);
    let done = match thread {
        Thread::Pool => tokio::task::spawn_blocking(move || f(&this)).await.map_err(|e| e.to_string()),
        Thread::Background => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    // Linux keeps a nice value per thread; `None` is the calling thread. Best
                    // effort: a refusal leaves the default priority.
                    if let Err(e) = rustix::process::setpriority_process(None, SNAPSHOT_NICE) {
                        tracing::debug!(%e, "snapshot thread keeps the default priority");
                    }
                    let _ = tx.send(f(&this));
                })
                .map_err(|e| err(format!("cannot start the snapshot thread: {e}")))?;
            rx.await.map_err(|_| "the snapshot thread ended without a result".to_owned())
        }
    };
    done.map_err(err)?.map_err(err)
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        snapshot_io(self, ErrorVerb::Write, Thread::Background, SmStore::build_blocking).await
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.shared.applied.lock().map_err(lock_err)?.clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<openraft::Entry<TypeConfig>> = entries.into_iter().collect();
        if let (Some(durable), Some(last)) = (&self.durable, entries.last()) {
            durable.wait(last.log_id.index).await.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        }
        let started = std::time::Instant::now();
        let mut responses = Vec::new();
        let mut sm = self.write_sm().await?;
        let mut applied = self.shared.applied.lock().map_err(lock_err)?;
        for entry in entries {
            applied.0 = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => BatchResponse::default(),
                EntryPayload::Normal(LogPayload::V1(batch)) => BatchResponse(sm.apply_batch(batch, entry.log_id.index)),
                EntryPayload::Membership(m) => {
                    applied.1 = StoredMembership::new(Some(entry.log_id), m.clone());
                    BatchResponse::default()
                }
            };
            responses.push(response);
        }
        let position = Applied::at(applied.0, sm.revision());
        drop(applied);
        drop(sm);
        self.shared.applied_tx.send_replace(position);
        crate::ops::metrics::observe_apply(started.elapsed(), responses.iter().map(|r| r.0.len()).sum());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let this = self.clone();
        let meta = meta.clone();
        let (started, size) = (std::time::Instant::now(), snapshot.get_ref().len());
        tokio::task::spawn_blocking(move || this.install(&meta, snapshot.into_inner()))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))??;
        crate::ops::metrics::observe_snapshot_install(started.elapsed(), size);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        snapshot_io(self, ErrorVerb::Read, Thread::Pool, SmStore::current_blocking).await
    }
}
