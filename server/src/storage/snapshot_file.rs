//! Snapshot files: the serialized state machine plus its Raft metadata, one file per snapshot
//! in `<data-dir>/snapshots/`, written atomically (temp file, fsync, rename, fsync directory).
//! Only the newest file is kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log_entry::{decode, encode};
use crate::raft::SnapshotMeta;
use crate::state_machine::StateMachine;

/// Version of the snapshot encoding.
pub const SNAPSHOT_FORMAT: u32 = 1;

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

impl SnapshotContents {
    /// Encodes for a file or the wire.
    ///
    /// # Errors
    /// When encoding fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        encode(self).map_err(|e| e.to_string())
    }

    /// Decodes bytes written by [`Self::to_bytes`], rejecting unknown formats.
    ///
    /// # Errors
    /// On corrupt data or an unknown format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let contents: Self = decode(bytes).map_err(|e| format!("corrupt snapshot: {e}"))?;
        if contents.format != SNAPSHOT_FORMAT {
            return Err(format!("snapshot format {} is not supported (expected {SNAPSHOT_FORMAT})", contents.format));
        }
        Ok(contents)
    }
}

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
        fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// Durably writes a snapshot as the newest, then removes older ones.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn save(&self, index: u64, bytes: &[u8]) -> std::io::Result<()> {
        let name = format!("snapshot-{index:020}.bin");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(&name))?;
        fs::File::open(&self.dir)?.sync_all()?;
        for old in self.list()? {
            if old.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
                let _ = fs::remove_file(old);
            }
        }
        Ok(())
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
