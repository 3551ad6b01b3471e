//! [`FileEngine`]: the Raft log as append-only segment files, one `write` + `fdatasync` per
//! append, and metadata as small files replaced atomically.
//!
//! Why not sled for the log: a Raft log is written once at its end, read back while recent and
//! dropped from its start; sled's B-tree, page cache and database-wide flush (on a pool of IO
//! threads) cost ~2x a plain fdatasync per append and 60-80 MB of memory per node.
//!
//! Layout under the engine's directory:
//! - `log/<first index, 20 digits>.seg`: records `[u32 LE payload length][u32 LE crc32 of
//!   (index LE ‖ payload)][u64 LE index][payload]`, consecutive indexes, then zeros up to the
//!   preallocated size. A new segment starts when the active one passes [`SEGMENT_BYTES`] (at
//!   an append boundary).
//!
//! Preallocation: a segment file is `fallocate`d to [`SEGMENT_BYTES`] when created (and after
//! a cut), so an append does not grow the file and its `fdatasync` need not write the inode
//! as well: measured on ext4, 99 µs instead of 135 µs per synced append. The price is the
//! disk space of one segment per member from the start. A filesystem without `fallocate` gets
//! plain growing files. A header of zeros followed only by zeros is the end of the written
//! records (no valid header is all zeros: the crc of index 0 is not 0).
//! - `meta/<key>`: one file per metadata key, `[length][crc32][value]`; a durable write goes to
//!   `<key>.tmp`, fsynced and renamed over; a non-durable one overwrites in place.
//!
//! Guarantees: `append`, `truncate_from` and durable `put_meta` are on disk when they return
//! (data `fdatasync`ed; the directory fsynced whenever a file was created, renamed or
//! deleted; `open` fsyncs the parent of every directory it creates, and every segment, so what
//! a crash left in the page cache is durable before it is reported). `append_unsynced` only
//! writes (a new segment's name is made durable at once) and records the segment as unsynced;
//! the next `sync` fdatasyncs every segment so recorded, including one rotated away from, and
//! returns only after any sync started before it (`append` is `append_unsynced` + `sync`). A
//! truncation that deletes segments makes the deletions durable before it cuts the segment it
//! ends in, so a power loss at any instant leaves a log without a hole
//! (`server/tests/power_loss.rs` checks every crash point on a `conclave-faultfs` mount). Only
//! the positions of live entries are kept in memory, never their payloads.
//!
//! Crash recovery (`open`): every record is checked (length bound, crc, consecutive index). An
//! invalid record in the newest segment with nothing valid after it (only zeros or garbage) is
//! a torn append that was never acknowledged: the file is cut there. Anywhere else, including
//! an invalid record followed by a valid one in the newest segment, it is corruption of
//! acknowledged entries, and `open` fails with the file, the offset and what to do, rather
//! than serve a log with a hole or silently drop them. (Appends are fsynced one after the
//! other, so only the last can be torn; a disk that persisted a later page of a multi-page
//! last append but not an earlier one would also be refused: safe, though it needs an
//! operator.) Entries a crash brought back after a purge (deletion is not durable) are reported
//! again; the log store re-purges them at start-up from its durable purge point.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::engine::{EngineError, EngineResult, LogEngine};

mod format;
use format::{crc, decode_meta, encode_meta, parse_records, valid_record_after, HEADER, MAX_RECORD};

/// A segment file is closed for appends once it is larger than this; it is also the size a new
/// segment file is preallocated to.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Where a live entry is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    /// The segment's first index (its name).
    segment: u64,
    /// Offset of the record header in the segment file.
    offset: u64,
    /// Payload length.
    len: u32,
}

struct Segment {
    first: u64,
    file: Arc<File>,
    len: u64,
}

struct State {
    /// Ordered by first index; the last one takes appends.
    segments: Vec<Segment>,
    /// Live entries, `first_index..first_index + index.len()`.
    index: VecDeque<Loc>,
    first_index: u64,
    /// Segments written by `append_unsynced` since the last `sync` (by first index).
    unsynced: Vec<u64>,
}

/// Segment-file log engine. See the module documentation.
pub struct FileEngine {
    log_dir: PathBuf,
    meta_dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Held through every fsync of segment data ([`LogEngine::sync`]): a sync that returns knows
    /// that every sync started before it (the flusher's, say) has finished too.
    sync_lock: Mutex<()>,
    /// Open files of the metadata keys written in place (the committed index, written after
    /// every commit: an open and a close per commit cost the leader's thread ~4% of its time).
    in_place: Mutex<HashMap<String, File>>,
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> EngineError {
    EngineError(format!("{what}: {e}"))
}

fn sync_dir(dir: &Path) -> EngineResult<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(format_args!("fsync directory {}", dir.display()), e))
}

/// Replaces `dir/name` with `content` so that a power loss leaves either the old file or the
/// whole new one: written to `name.tmp`, fsynced, renamed over `name`, and the directory fsynced.
///
/// # Errors
/// When a step fails (the old file, if any, is then still in place).
pub fn write_file_durable(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// `create_dir_all` whose result survives a power loss: each directory it creates is made
/// durable by an fsync of its parent (a new name is durable only once its directory is).
///
/// # Errors
/// When a directory cannot be created or fsynced.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    fs::create_dir_all(dir)?;
    for created in missing {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Allocates the blocks of `file` up to `len` bytes (zeros beyond its data) where the filesystem
/// can; preallocation only saves work, so failing to do it is not an error.
fn preallocate(file: &File, len: u64, path: &Path) {
    if let Err(e) = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        tracing::debug!(segment = %path.display(), error = %e, "cannot preallocate; the segment grows with each append");
    }
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

impl FileEngine {
    /// Opens (or creates) the engine under `dir`, recovering from a crash as described in the
    /// module documentation.
    ///
    /// # Errors
    /// When the directory cannot be read or written, or a segment other than the newest is
    /// corrupt.
    pub fn open(dir: &Path) -> EngineResult<Self> {
        Self::open_with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// [`Self::open`] with segments of `segment_bytes` instead of [`SEGMENT_BYTES`] (tests use
    /// tiny segments to cross segment boundaries). A data dir must always be opened with the
    /// same size.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> EngineResult<Self> {
        let log_dir = dir.join("log");
        let meta_dir = dir.join("meta");
        for d in [&log_dir, &meta_dir] {
            create_dir_durable(d).map_err(|e| io(format_args!("create {}", d.display()), e))?;
        }
        let mut firsts: Vec<u64> = fs::read_dir(&log_dir)
            .map_err(|e| io(format_args!("list {}", log_dir.display()), e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse().ok()))
            .collect();
        firsts.sort_unstable();
        let mut state = State { segments: Vec::new(), index: VecDeque::new(), first_index: 0, unsynced: Vec::new() };
        for (i, first) in firsts.iter().enumerate() {
            let newest = i + 1 == firsts.len();
            let path = log_dir.join(segment_name(*first));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io(format_args!("open {}", path.display()), e))?;
            let len = Self::recover_segment(&path, &file, *first, newest, segment_bytes, &mut state)?;
            // What a crash (kill -9) left in the page cache is not on the disk yet: make it
            // durable before reporting it, since this member may acknowledge it to a leader.
            file.sync_data().map_err(|e| io(format_args!("fsync {}", path.display()), e))?;
            state.segments.push(Segment { first: *first, file: Arc::new(file), len });
        }
        Ok(Self {
            log_dir,
            meta_dir,
            segment_bytes,
            state: Mutex::new(state),
            sync_lock: Mutex::default(),
            in_place: Mutex::default(),
        })
    }

    /// Scans one segment into the index; returns its valid length (cutting a torn tail of the
    /// newest segment). Older segments that end before this one starts (a hole) hold only
    /// purged entries that a crash brought back: they are dropped.
    fn recover_segment(
        path: &Path,
        file: &File,
        first: u64,
        newest: bool,
        segment_bytes: u64,
        state: &mut State,
    ) -> EngineResult<u64> {
        let bytes = fs::read(path).map_err(|e| io(format_args!("read {}", path.display()), e))?;
        let (records, valid, bad) = parse_records(&bytes, first);
        if let Some(why) = bad {
            if !newest {
                return Err(EngineError(format!(
                    "{}: {why} at offset {valid}, and it is not the newest segment: the log is corrupt",
                    path.display()
                )));
            }
            let expected = first + records.len() as u64;
            if let Some((offset, index)) = valid_record_after(&bytes, valid, expected) {
                return Err(EngineError(format!(
                    "{}: {why} at offset {valid} (index {expected}), but a valid record follows at offset \
                     {offset} (index {index}): the log is corrupt (a torn append is always the last \
                     record), and cutting it here would drop acknowledged entries. Refusing to start. \
                     Restore this member's data dir from a backup, or move the data dir away and start \
                     the member empty while the other members form a majority, so it copies the log \
                     from them",
                    path.display()
                )));
            }
            tracing::warn!(segment = %path.display(), offset = valid, "{why}: cutting a torn append off the log's end");
            file.set_len(valid)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(format_args!("cut {}", path.display()), e))?;
            preallocate(file, segment_bytes, path);
        }
        if records.is_empty() {
            return Ok(valid);
        }
        let next = state.first_index + state.index.len() as u64;
        if state.index.is_empty() || next != first {
            state.index.clear();
            state.first_index = first;
        }
        state.index.extend(records);
        Ok(valid)
    }

    fn in_place_files(&self) -> MutexGuard<'_, HashMap<String, File>> {
        self.in_place.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.log_dir.join(segment_name(first))
    }

    /// Deletes a segment's file (the caller fsyncs the directory where that must be durable).
    fn remove_segment(&self, seg: Segment) -> EngineResult<()> {
        let path = self.segment_path(seg.first);
        fs::remove_file(&path).map_err(|e| io(format_args!("delete {}", path.display()), e))
    }

    fn read(&self, state: &State, loc: Loc) -> EngineResult<Vec<u8>> {
        let seg = state
            .segments
            .iter()
            .find(|s| s.first == loc.segment)
            .ok_or_else(|| EngineError(format!("segment {} of a live entry is missing", loc.segment)))?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset + HEADER)
            .map_err(|e| io(format_args!("read {}", self.segment_path(loc.segment).display()), e))?;
        Ok(buf)
    }

    /// Removes entries `>= from` from the files and the index, durably.
    ///
    /// Order matters for a power loss: the newer segments are deleted and the directory
    /// fsynced *before* the segment holding `from` is cut. Cut first, a crash could bring the
    /// deleted segments back after a shortened one; recovery would see a hole and drop the
    /// entries before it, which may be committed.
    fn truncate_locked(&self, state: &mut State, from: u64) -> EngineResult<()> {
        let last = state.first_index + state.index.len() as u64;
        if state.index.is_empty() || from >= last {
            return Ok(());
        }
        let keep = usize::try_from(from.saturating_sub(state.first_index)).unwrap_or(usize::MAX);
        let cut = state.index.get(keep).copied();
        state.index.truncate(keep);
        let Some(cut) = cut else { return Ok(()) };
        let mut deleted = false;
        // Newest first, so any prefix of the deletions that reaches the disk leaves a log
        // without a hole.
        while state.segments.last().is_some_and(|s| s.first > cut.segment) {
            if let Some(seg) = state.segments.pop() {
                self.remove_segment(seg)?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.log_dir)?;
        }
        if let Some(seg) = state.segments.last_mut().filter(|s| s.first == cut.segment) {
            seg.file
                .set_len(cut.offset)
                .and_then(|()| seg.file.sync_all())
                .map_err(|e| io(format_args!("truncate {}", self.segment_path(seg.first).display()), e))?;
            preallocate(&seg.file, self.segment_bytes, &self.segment_path(seg.first));
            seg.len = cut.offset;
        }
        Ok(())
    }
}

impl FileEngine {
    /// Appends `entries` and records their segment as unsynced; then, if `sync`, makes every
    /// unsynced segment durable ([`LogEngine::sync`]).
    fn write_entries(&self, entries: Vec<(u64, Vec<u8>)>, sync: bool) -> EngineResult<()> {
        let Some(first_new) = entries.first().map(|(i, _)| *i) else { return Ok(()) };
        let mut state = self.lock();
        self.truncate_locked(&mut state, first_new)?;
        let mut dir_changed = false;
        let next = state.first_index + state.index.len() as u64;
        if !state.index.is_empty() && first_new != next {
            return Err(EngineError(format!("append at index {first_new} leaves a gap after {}", next - 1)));
        }
        if state.index.is_empty() {
            // Whatever the files still hold is purged or truncated: start clean, so a segment
            // never holds records that are not consecutive.
            for seg in std::mem::take(&mut state.segments) {
                self.remove_segment(seg)?;
                dir_changed = true;
            }
        }
        if state.segments.last().is_none_or(|s| s.len >= self.segment_bytes) {
            let path = self.segment_path(first_new);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io(format_args!("create {}", path.display()), e))?;
            preallocate(&file, self.segment_bytes, &path);
            state.segments.push(Segment { first: first_new, file: Arc::new(file), len: 0 });
            dir_changed = true;
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|(_, b)| b.len() + HEADER as usize).sum());
        let mut locs = Vec::with_capacity(entries.len());
        let (seg_first, mut offset) = state.segments.last().map(|s| (s.first, s.len)).unwrap_or_default();
        for (i, (index, payload)) in entries.iter().enumerate() {
            if *index != first_new + i as u64 {
                return Err(EngineError(format!("append of non-consecutive indexes ({index} after {first_new})")));
            }
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| EngineError(format!("log entry of {} bytes is too large", payload.len())))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            locs.push(Loc { segment: seg_first, offset, len });
            offset += HEADER + u64::from(len);
        }
        let seg = state.segments.last_mut().ok_or_else(|| EngineError("no active segment".into()))?;
        let path = self.segment_path(seg.first);
        seg.file.write_all_at(&buf, seg.len).map_err(|e| io(format_args!("append to {}", path.display()), e))?;
        seg.len = offset;
        if !state.unsynced.contains(&seg_first) {
            state.unsynced.push(seg_first);
        }
        if dir_changed {
            sync_dir(&self.log_dir)?;
        }
        if state.index.is_empty() {
            state.first_index = first_new;
        }
        state.index.extend(locs);
        drop(state);
        if sync {
            self.sync()?;
        }
        Ok(())
    }
}

impl LogEngine for FileEngine {
    fn get_meta(&self, key: &str) -> EngineResult<Option<Vec<u8>>> {
        let path = self.meta_dir.join(key);
        let bytes = match fs::read(&path) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format_args!("read {}", path.display()), e)),
        };
        // A value written without fsync may be torn by a crash: then it is as if never written.
        Ok(decode_meta(&bytes))
    }

    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> EngineResult<()> {
        let path = self.meta_dir.join(key);
        let record = encode_meta(value)?;
        if !durable {
            let mut in_place = self.in_place_files();
            // In place, no fsync, no rename: openraft saves the committed index after every
            // commit, and a rename per commit would put a journal commit in every fdatasync.
            if !in_place.contains_key(key) {
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| io(format_args!("open {}", path.display()), e))?;
                in_place.insert(key.to_owned(), f);
            }
            let f = &in_place[key];
            return f.write_all_at(&record, 0).map_err(|e| io(format_args!("write {}", path.display()), e));
        }
        let tmp = self.meta_dir.join(format!("{key}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io(format_args!("create {}", tmp.display()), e))?;
        f.write_all(&record)
            .and_then(|()| f.sync_data())
            .map_err(|e| io(format_args!("write {}", tmp.display()), e))?;
        {
            // The rename replaces the file an open in-place handle writes to: drop the handle
            // under the same lock, so no in-place write lands in the replaced file.
            let mut in_place = self.in_place_files();
            in_place.remove(key);
            fs::rename(&tmp, &path).map_err(|e| io(format_args!("rename {}", tmp.display()), e))?;
        }
        sync_dir(&self.meta_dir)
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        self.write_entries(entries, true)
    }

    fn defers_sync(&self) -> bool {
        true
    }

    fn append_unsynced(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        self.write_entries(entries, false)
    }

    fn sync(&self) -> EngineResult<()> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let files: Vec<(u64, Arc<File>)> = {
            let mut state = self.lock();
            let dirty = std::mem::take(&mut state.unsynced);
            state.segments.iter().filter(|s| dirty.contains(&s.first)).map(|s| (s.first, s.file.clone())).collect()
        };
        for (first, file) in files {
            crate::ops::metrics::timed_fsync(|| file.sync_data())
                .map_err(|e| io(format_args!("fsync {}", self.segment_path(first).display()), e))?;
        }
        Ok(())
    }

    fn range(&self, start: u64, end: u64) -> EngineResult<Vec<(u64, Vec<u8>)>> {
        let state = self.lock();
        let from = start.max(state.first_index);
        let to = end.min(state.first_index + state.index.len() as u64);
        (from..to)
            .map(|i| {
                let loc = state.index[usize::try_from(i - state.first_index).unwrap_or(usize::MAX)];
                Ok((i, self.read(&state, loc)?))
            })
            .collect()
    }

    fn last(&self) -> EngineResult<Option<(u64, Vec<u8>)>> {
        let state = self.lock();
        match state.index.back() {
            Some(loc) => Ok(Some((state.first_index + state.index.len() as u64 - 1, self.read(&state, *loc)?))),
            None => Ok(None),
        }
    }

    fn truncate_from(&self, from: u64) -> EngineResult<()> {
        let mut state = self.lock();
        self.truncate_locked(&mut state, from)
    }

    fn purge_upto(&self, upto: u64) -> EngineResult<()> {
        let mut state = self.lock();
        let live_from = upto.saturating_add(1).max(state.first_index);
        let drop = usize::try_from(live_from - state.first_index).unwrap_or(usize::MAX).min(state.index.len());
        state.index.drain(..drop);
        state.first_index = live_from;
        // A segment goes when every entry in it is purged: the next one starts at or before
        // `upto + 1`, or it is the last one and nothing live is left.
        let live_segment = state.index.front().map(|l| l.segment);
        let mut kept = Vec::with_capacity(state.segments.len());
        for seg in std::mem::take(&mut state.segments) {
            let dead = match live_segment {
                Some(live) => seg.first < live,
                None => true,
            };
            if dead {
                self.remove_segment(seg)?;
            } else {
                kept.push(seg);
            }
        }
        state.segments = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
