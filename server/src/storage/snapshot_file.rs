//! Snapshot files: the serialized state machine plus its Raft metadata, one file per snapshot
//! in `<data-dir>/snapshots/`, written atomically (temp file, fsync, rename, fsync directory).
//! Only the newest file is kept. Between builds a snapshot lives in its file only; it is read
//! back when a follower needs it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log_entry::decode;
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
    /// Encodes into one buffer (the same bytes as [`write_to`](Self::write_to)); members and
    /// restore stream into the file instead, so this form is for tests.
    ///
    /// # Errors
    /// When encoding fails.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        crate::log_entry::encode(self).map_err(|e| format!("encode snapshot: {e}"))
    }

    /// Encodes into `out` as it goes (the same bytes as `to_bytes`, the tests' form).
    ///
    /// # Errors
    /// When encoding or writing fails.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), String> {
        crate::log_entry::encode_into(self, out).map(|_| ()).map_err(|e| format!("encode snapshot: {e}"))
    }
}

impl SnapshotContents {
    /// Encodes into one buffer (through [`SnapshotContentsRef`], the one encoder); for tests.
    ///
    /// # Errors
    /// When encoding fails.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        self.as_ref().to_bytes()
    }

    /// Encodes into `out` as it goes (the same bytes as `to_bytes`, the tests' form).
    ///
    /// # Errors
    /// When encoding or writing fails.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), String> {
        self.as_ref().write_to(out)
    }

    fn as_ref(&self) -> SnapshotContentsRef<'_> {
        SnapshotContentsRef { format: self.format, meta: &self.meta, state: &self.state }
    }

    /// Decodes bytes written by `write_to` (the current format) or by an older version
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

/// A snapshot file written in pieces, each made durable before the next: a snapshot of a large
/// state is hundreds of megabytes, and flushed in one fsync it holds the disk (and, on ext4, the
/// journal commit every Raft log fdatasync needs) for as long, stalling every write of the
/// member. Flushed piece by piece, a log fsync waits behind one piece at most.
struct PiecewiseSync {
    file: fs::File,
    unsynced: usize,
    written: u64,
}

impl Write for PiecewiseSync {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Never past the next sync point, however large the caller's buffer.
        let room = SNAPSHOT_SYNC_BYTES - self.unsynced;
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.unsynced += n;
        self.written += n as u64;
        if self.unsynced >= SNAPSHOT_SYNC_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The snapshot directory of a node.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens (creating) `dir`, deleting what a save cut short by a crash left (a `.tmp` file as
    /// large as a snapshot, never read).
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        super::file_engine::create_dir_durable(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                let _ = fs::remove_file(&path);
            }
        }
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
        self.save_with(index, |w| w.write_all(bytes).map_err(|e| e.to_string())).map(|_| ())
    }

    /// Like [`save`](Self::save), with the bytes written by `write` as it produces them (a
    /// snapshot encoded straight into its file, never whole in memory); returns the file's size.
    ///
    /// # Errors
    /// On I/O failure, or `write`'s own.
    pub fn save_with(
        &self,
        index: u64,
        write: impl FnOnce(&mut dyn Write) -> Result<(), String>,
    ) -> Result<u64, String> {
        let name = Self::name(index);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
        let written = (|| {
            let file = fs::File::create(&tmp).map_err(|e| io("create", e))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, PiecewiseSync { file, unsynced: 0, written: 0 });
            write(&mut out).map_err(|e| format!("write {}: {e}", tmp.display()))?;
            let out = out.into_inner().map_err(|e| io("write", e.into_error()))?;
            out.file.sync_all().map_err(|e| io("write", e))?;
            fs::rename(&tmp, self.dir.join(&name)).map_err(|e| io("rename", e))?;
            Ok::<_, String>(out.written)
        })()
        .inspect_err(|_| {
            // A snapshot's worth of disk otherwise; the previous snapshot stays the newest.
            let _ = fs::remove_file(&tmp);
        })?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync directory of", e))?;
        for old in self.list().map_err(|e| format!("list {}: {e}", self.dir.display()))? {
            if old.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
                let _ = fs::remove_file(old);
            }
        }
        Ok(written)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_save_leaves_no_temporary_file_and_keeps_the_previous_snapshot() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let dir = SnapshotDir::open(tmp.path()).expect("open");
        dir.save(5, b"five").expect("save");
        let failed = dir.save_with(9, |out| {
            out.write_all(b"half of a snapshot").map_err(|e| e.to_string())?;
            Err("encoding failed".into())
        });
        assert!(failed.expect_err("the encoder failed").contains("encoding failed"));
        assert_eq!(files(tmp.path()), [SnapshotDir::name(5)]);
        assert_eq!(dir.load_latest().expect("load"), Some(b"five".to_vec()));
    }

    #[test]
    fn opening_deletes_what_a_crashed_save_left() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        SnapshotDir::open(tmp.path()).expect("open").save(5, b"five").expect("save");
        let left = tmp.path().join(format!("{}.tmp", SnapshotDir::name(9)));
        fs::write(&left, b"half of a snapshot").expect("write");
        let dir = SnapshotDir::open(tmp.path()).expect("reopen");
        assert_eq!(files(tmp.path()), [SnapshotDir::name(5)]);
        assert_eq!(dir.load_latest().expect("load"), Some(b"five".to_vec()));
    }
}
