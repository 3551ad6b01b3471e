//! Snapshot files: the serialized state machine plus its Raft metadata, one file per snapshot
//! in `<data-dir>/snapshots/`, written atomically (temp file, fsync, rename, fsync directory).
//! Only the newest file is kept. Between builds a snapshot lives in its file only; it is read
//! back when a follower needs it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log_entry::{decode, encode};
use crate::state_machine::legacy::{StateMachineV1, StateMachineV2, StateMachineV3, StateMachineV4, StateMachineV5};
use crate::state_machine::StateMachine;
use crate::types::SnapshotMeta;

/// Version of the snapshot encoding written now. 2: replicated settings, bounded deduplication
/// order. 3: the ZooKeeper namespace bookkeeping. 4: ZooKeeper TTL nodes and members'
/// ZooKeeper addresses. 5: users, roles and the token secret. 6: session owners. Formats 1 to
/// 5 are still read (converted by `state_machine::legacy`).
pub const SNAPSHOT_FORMAT: u32 = 6;

/// What a snapshot holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotContents {
    /// Encoding version ([`SNAPSHOT_FORMAT`]).
    pub format: u32,
    /// Raft metadata: last included log id and membership.
    pub meta: SnapshotMeta,
    /// The state machine as of `meta.last_log_id`.
    pub state: StateMachine,
}

/// A snapshot of an older format (read only): its number, then the Raft metadata and the state
/// machine as that format encoded it (`state_machine::legacy`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct SnapshotContentsOf<S> {
    /// The format number.
    pub(crate) _format: u32,
    pub(crate) meta: SnapshotMeta,
    pub(crate) state: S,
}

/// [`SnapshotContents`] by reference: encodes to the same bytes without owning (or cloning)
/// the state machine.
#[derive(Serialize)]
pub struct SnapshotContentsRef<'a> {
    /// Encoding version ([`SNAPSHOT_FORMAT`]).
    pub format: u32,
    /// Raft metadata.
    pub meta: &'a SnapshotMeta,
    /// The state machine.
    pub state: &'a StateMachine,
}

impl SnapshotContentsRef<'_> {
    /// Encodes for a file or the wire, as [`SnapshotContents::to_bytes`] does.
    ///
    /// # Errors
    /// When encoding fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        encode(self).map_err(|e| format!("encode snapshot: {e}"))
    }
}

impl SnapshotContents {
    /// Encodes for a file or the wire (through [`SnapshotContentsRef`], the one encoder).
    ///
    /// # Errors
    /// When encoding fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        SnapshotContentsRef { format: self.format, meta: &self.meta, state: &self.state }.to_bytes()
    }

    /// Decodes bytes written by [`Self::to_bytes`] (the current format) or by an older version
    /// (formats 1 to 5, converted: the result says format [`SNAPSHOT_FORMAT`]), rejecting unknown formats.
    ///
    /// # Errors
    /// On corrupt data or an unknown format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let corrupt = |e: bincode::error::DecodeError| format!("corrupt snapshot: {e}");
        // Every format starts with its number.
        let format: u32 = decode(bytes).map_err(corrupt)?;
        match format {
            SNAPSHOT_FORMAT => decode(bytes).map_err(corrupt),
            1 => Self::upgrade::<StateMachineV1>(bytes),
            2 => Self::upgrade::<StateMachineV2>(bytes),
            3 => Self::upgrade::<StateMachineV3>(bytes),
            4 => Self::upgrade::<StateMachineV4>(bytes),
            5 => Self::upgrade::<StateMachineV5>(bytes),
            other => {
                Err(format!("snapshot format {other} is not supported (expected {SNAPSHOT_FORMAT}, 5, 4, 3, 2 or 1)"))
            }
        }
    }

    /// Decodes a snapshot of an older format whose state machine `S` encoded, converted to the
    /// current one.
    fn upgrade<S: serde::de::DeserializeOwned + Into<StateMachine>>(bytes: &[u8]) -> Result<Self, String> {
        let old: SnapshotContentsOf<S> = decode(bytes).map_err(|e| format!("corrupt snapshot: {e}"))?;
        Ok(Self { format: SNAPSHOT_FORMAT, meta: old.meta, state: old.state.into() })
    }
}

/// How much of a snapshot file is written before it is flushed (see [`SnapshotDir::save`]).
pub const SNAPSHOT_SYNC_BYTES: usize = 4 << 20;

/// The snapshot directory of a node.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens (creating) `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        super::file_engine::create_dir_durable(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn name(index: u64) -> String {
        format!("snapshot-{index:020}.bin")
    }

    /// Durably writes a snapshot (its bytes) as the newest, then removes older ones.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn save(&self, index: u64, bytes: &[u8]) -> Result<(), String> {
        let name = Self::name(index);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
        let mut f = fs::File::create(&tmp).map_err(|e| io("create", e))?;
        // In pieces, each made durable before the next: a snapshot of a large state is hundreds
        // of megabytes, and flushed in one fsync it holds the disk (and, on ext4, the journal
        // commit every Raft log fdatasync needs) for as long, stalling every write of the
        // member. Flushed piece by piece, a log fsync waits behind one piece at most.
        for piece in bytes.chunks(SNAPSHOT_SYNC_BYTES) {
            f.write_all(piece).and_then(|()| f.sync_data()).map_err(|e| io("write", e))?;
        }
        f.sync_all().map_err(|e| io("write", e))?;
        fs::rename(&tmp, self.dir.join(&name)).map_err(|e| io("rename", e))?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync directory of", e))?;
        for old in self.list().map_err(|e| format!("list {}: {e}", self.dir.display()))? {
            if old.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
                let _ = fs::remove_file(old);
            }
        }
        Ok(())
    }

    /// The bytes of the snapshot of log index `index`.
    ///
    /// # Errors
    /// On I/O failure (or when that snapshot was replaced).
    pub fn load(&self, index: u64) -> std::io::Result<Vec<u8>> {
        fs::read(self.dir.join(Self::name(index)))
    }

    /// The newest snapshot's bytes, if any.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn load_latest(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self.list()?.last() {
            Some(path) => fs::read(path).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        Ok(files)
    }
}
