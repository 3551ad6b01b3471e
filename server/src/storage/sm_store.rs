//! openraft's `RaftStateMachine`: applies committed entries to the in-memory
//! [`StateMachine`], builds and installs snapshots.
//!
//! The state machine lives in memory; durability comes from the Raft log plus snapshot files.
//! On start-up the newest snapshot is loaded and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use tokio::sync::watch;

use super::io_err;
use super::snapshot_file::{SnapshotContents, SnapshotDir, SNAPSHOT_FORMAT};
use crate::log_entry::LogPayload;
use crate::raft::{BatchResponse, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state_machine::{SmConfig, StateMachine};

/// Applied position, published after every apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Last applied log index.
    pub index: u64,
    /// Store revision after it.
    pub revision: u64,
}

/// State shared between the Raft state-machine store and the read path.
pub struct SharedState {
    /// The state machine. Apply takes the write lock once per batch of entries.
    pub sm: RwLock<StateMachine>,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    current: Mutex<Option<(SnapshotMeta, Arc<Vec<u8>>)>>,
    /// Serializes saving snapshot files and replacing `current`: openraft builds snapshots in a
    /// spawned task, concurrently with installing one from the leader, and a build that started
    /// before an install must not replace the newer installed snapshot (file or `current`).
    snapshot_io: Mutex<()>,
    applied_tx: watch::Sender<Applied>,
}

impl SharedState {
    /// Subscribes to the applied position.
    pub fn subscribe_applied(&self) -> watch::Receiver<Applied> {
        self.applied_tx.subscribe()
    }
}

/// The state-machine store handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct SmStore {
    shared: Arc<SharedState>,
    dir: SnapshotDir,
}

fn lock_err(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Write, format!("lock poisoned: {e}"))
}

impl SmStore {
    /// Opens the store, loading the newest snapshot in `dir` if there is one.
    ///
    /// # Errors
    /// When the snapshot directory cannot be read or the snapshot is corrupt.
    pub fn open(dir: SnapshotDir, config: SmConfig) -> Result<Self, String> {
        let loaded = match dir.load_latest().map_err(|e| e.to_string())? {
            Some(bytes) => Some((SnapshotContents::from_bytes(&bytes)?, bytes)),
            None => None,
        };
        let (sm, applied, current) = match loaded {
            Some((c, bytes)) => {
                let applied = (c.meta.last_log_id, c.meta.last_membership.clone());
                (c.state, applied, Some((c.meta, Arc::new(bytes))))
            }
            None => (StateMachine::new(config), (None, StoredMembership::default()), None),
        };
        let initial = Applied { index: applied.0.map_or(0, |l| l.index), revision: sm.revision() };
        let (applied_tx, _) = watch::channel(initial);
        let shared = SharedState {
            sm: RwLock::new(sm),
            applied: Mutex::new(applied),
            current: Mutex::new(current),
            snapshot_io: Mutex::new(()),
            applied_tx,
        };
        Ok(Self { shared: Arc::new(shared), dir })
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
        *self.shared.sm.write().map_err(lock_err)? = contents.state;
        *self.shared.applied.lock().map_err(lock_err)? = (meta.last_log_id, meta.last_membership.clone());
        *self.shared.current.lock().map_err(lock_err)? = Some((meta.clone(), Arc::new(bytes)));
        self.shared.applied_tx.send_replace(Applied { index, revision });
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Clone under the lock (fast), encode and write outside it so apply is not blocked.
        let (state, (last_log_id, last_membership)) = {
            let sm = self.shared.sm.read().map_err(lock_err)?;
            let applied = self.shared.applied.lock().map_err(lock_err)?;
            (sm.clone(), applied.clone())
        };
        let index = last_log_id.map_or(0, |l| l.index);
        let term = last_log_id.map_or(0, |l| l.leader_id.term);
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id: format!("{term}-{index}") };
        let this = self.clone();
        let meta2 = meta.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let bytes = Arc::new(SnapshotContents { format: SNAPSHOT_FORMAT, meta: meta2.clone(), state }.to_bytes()?);
            let _io = this.shared.snapshot_io.lock().map_err(|e| e.to_string())?;
            let current = this.shared.current.lock().map_err(|e| e.to_string())?.as_ref().map(|(m, _)| m.last_log_id);
            // A snapshot installed while this one was being built is newer: keep it. openraft
            // ignores a built snapshot that is not newer than the one it knows.
            if current.is_none_or(|installed| installed <= meta2.last_log_id) {
                this.dir.save(index, &bytes).map_err(|e| e.to_string())?;
                *this.shared.current.lock().map_err(|e| e.to_string())? = Some((meta2, bytes.clone()));
            }
            Ok(bytes.as_ref().clone())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
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
        let mut responses = Vec::new();
        let mut sm = self.shared.sm.write().map_err(lock_err)?;
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
        let position = Applied { index: applied.0.map_or(0, |l| l.index), revision: sm.revision() };
        drop(applied);
        drop(sm);
        self.shared.applied_tx.send_replace(position);
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
        tokio::task::spawn_blocking(move || this.install(&meta, snapshot.into_inner()))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.shared.current.lock().map_err(lock_err)?.clone();
        Ok(current.map(|(meta, bytes)| Snapshot { meta, snapshot: Box::new(Cursor::new(bytes.as_ref().clone())) }))
    }
}
