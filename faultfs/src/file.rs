//! One regular file under the page-cache model: its durable content lives in a backing object
//! file; writes and size changes since the last fsync live in memory as dirty pages.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the in-memory cache (a write dirties whole pages, as in the kernel's).
const PAGE: u64 = 4096;

/// A regular file: durable bytes in `object`, volatile changes in `dirty`.
pub(crate) struct FileNode {
    /// The backing object: exactly the durable content (what survives a power cut).
    object: File,
    /// Bytes `[0, keep)` of the object are still visible; beyond, a shrink since the last
    /// fsync hid them (they read as zeros if the file grew again).
    keep: u64,
    /// The object's length (the durable size).
    durable_len: u64,
    /// The size readers see now.
    pub(crate) size: u64,
    /// Pages written since the last fsync, each a full page of the visible content. Bytes
    /// past `size` are zero.
    dirty: BTreeMap<u64, Vec<u8>>,
    /// Permission bits.
    pub(crate) perm: u16,
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break, // past the object's end: the rest stays zero
            n => done += n,
        }
    }
    Ok(())
}

impl FileNode {
    /// A file whose durable content is `object` (of `len` bytes).
    pub(crate) fn new(object: File, len: u64, perm: u16) -> Self {
        Self { object, keep: len, durable_len: len, size: len, dirty: BTreeMap::new(), perm }
    }

    /// Bytes `[offset, offset + len)` as readers see them (short at the end of the file).
    pub(crate) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let from_object = end.min(self.keep);
        if offset < from_object {
            read_full_at(&self.object, &mut buf[..(from_object - offset) as usize], offset)?;
        }
        for (page, bytes) in self.dirty.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = page * PAGE;
            let lo = start.max(offset);
            let hi = (start + PAGE).min(end);
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
        }
        Ok(buf)
    }

    /// Writes `data` at `offset` into the cache (growing the file as needed).
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        if data.is_empty() {
            return Ok(());
        }
        for page in offset / PAGE..=(end - 1) / PAGE {
            let start = page * PAGE;
            if !self.dirty.contains_key(&page) {
                let mut bytes = self.read(start, PAGE)?;
                bytes.resize(PAGE as usize, 0);
                self.dirty.insert(page, bytes);
            }
            let bytes = self.dirty.get_mut(&page).ok_or_else(|| io::Error::other("page vanished"))?;
            let lo = start.max(offset);
            let hi = (start + PAGE).min(end);
            bytes[(lo - start) as usize..(hi - start) as usize]
                .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size (truncate or extend with zeros), in the cache.
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            self.dirty.retain(|page, _| page * PAGE < size);
            if let Some(bytes) = self.dirty.get_mut(&(size / PAGE)) {
                bytes[(size % PAGE) as usize..].fill(0);
            }
            self.keep = self.keep.min(size);
        }
        self.size = size;
    }

    /// Whether anything changed since the last fsync.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.keep != self.size || self.durable_len != self.size
    }

    /// fsync: the visible content becomes the durable content.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if !self.is_dirty() {
            return Ok(());
        }
        self.object.set_len(self.keep)?;
        self.object.set_len(self.size)?;
        for (page, bytes) in &self.dirty {
            let start = page * PAGE;
            let n = (self.size - start).min(PAGE) as usize;
            self.object.write_all_at(&bytes[..n], start)?;
        }
        self.dirty.clear();
        self.keep = self.size;
        self.durable_len = self.size;
        Ok(())
    }
}
