//! The narrow storage trait the Raft log store needs, and its sled implementation.
//!
//! Contract: every mutating call is durable (fsynced) when it returns `Ok`, except
//! [`LogEngine::put_meta`] with `durable = false`. Another engine (redb, fjall) can replace sled
//! by implementing this trait.

use std::path::Path;

/// Errors from the engine.
pub type EngineResult<T> = Result<T, EngineError>;

/// A storage engine failure.
#[derive(Debug, thiserror::Error)]
#[error("storage engine: {0}")]
pub struct EngineError(pub String);

impl From<sled::Error> for EngineError {
    fn from(e: sled::Error) -> Self {
        Self(e.to_string())
    }
}

/// What the Raft log needs from a storage engine: an ordered map of log entries by index plus a
/// few metadata values.
pub trait LogEngine: Send + Sync + 'static {
    /// Reads a metadata value.
    fn get_meta(&self, key: &str) -> EngineResult<Option<Vec<u8>>>;
    /// Writes a metadata value; durable on return if `durable`.
    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> EngineResult<()>;
    /// Appends (or overwrites) entries by index, atomically and durably.
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()>;
    /// Entries with `start <= index < end`, in order.
    fn range(&self, start: u64, end: u64) -> EngineResult<Vec<(u64, Vec<u8>)>>;
    /// The entry with the highest index.
    fn last(&self) -> EngineResult<Option<(u64, Vec<u8>)>>;
    /// Removes entries with `index >= from`, durably.
    fn truncate_from(&self, from: u64) -> EngineResult<()>;
    /// Removes entries with `index <= upto` (not necessarily durable: callers record the purge
    /// point durably first).
    fn purge_upto(&self, upto: u64) -> EngineResult<()>;
    /// Whether [`Self::append_unsynced`] really defers the sync to [`Self::sync`]; when false
    /// the log store appends synchronously with [`Self::append`].
    fn defers_sync(&self) -> bool {
        false
    }
    /// Like [`Self::append`], but the entries are only written (readable, not yet durable):
    /// they are durable once a later [`Self::sync`] returns `Ok`. The default is [`Self::append`].
    fn append_unsynced(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        self.append(entries)
    }
    /// Makes everything written by [`Self::append_unsynced`] before this call durable, in every
    /// segment it touched. The default does nothing (every append was already durable).
    fn sync(&self) -> EngineResult<()> {
        Ok(())
    }
}

/// sled's page cache. The log is written once and read back once (replication) while recent,
/// so a small cache loses nothing; sled's default (1 GiB) would be most of a node's memory.
pub const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// sled-backed engine: tree `log` (index big-endian → entry), tree `meta`.
pub struct SledEngine {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl SledEngine {
    /// Opens (or creates) the engine under `dir`.
    ///
    /// # Errors
    /// When sled cannot open the directory.
    pub fn open(dir: &Path) -> EngineResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(None)
            .open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        Ok(Self { db, log, meta })
    }

    fn flush(&self) -> EngineResult<()> {
        self.db.flush()?;
        Ok(())
    }
}

impl LogEngine for SledEngine {
    fn get_meta(&self, key: &str) -> EngineResult<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> EngineResult<()> {
        self.meta.insert(key, value)?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            batch.insert(&index.to_be_bytes(), bytes);
        }
        self.log.apply_batch(batch)?;
        self.flush()
    }

    fn range(&self, start: u64, end: u64) -> EngineResult<Vec<(u64, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.log
            .range(start.to_be_bytes()..end.to_be_bytes())
            .map(|r| {
                let (k, v) = r?;
                Ok((decode_index(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn last(&self) -> EngineResult<Option<(u64, Vec<u8>)>> {
        match self.log.last()? {
            Some((k, v)) => Ok(Some((decode_index(&k)?, v.to_vec()))),
            None => Ok(None),
        }
    }

    fn truncate_from(&self, from: u64) -> EngineResult<()> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(from.to_be_bytes()..).keys() {
            batch.remove(key?);
        }
        self.log.apply_batch(batch)?;
        self.flush()
    }

    fn purge_upto(&self, upto: u64) -> EngineResult<()> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=upto.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }
}

fn decode_index(key: &[u8]) -> EngineResult<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| EngineError(format!("bad log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}
