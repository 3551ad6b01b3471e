//! The FUSE side: translates kernel requests into [`Model`] calls.
//!
//! Every reply carries a zero cache TTL and every open is `direct_io`, so the kernel caches
//! neither names, attributes nor data: after a power cut the next access sees the durable
//! state. Owner and times are not modelled (the mounting user, the mount's start time).
//!
//! With an fsync delay, a successful fsync/fsyncdir is performed at once (the data is durable
//! from then on) but answered only after the delay, by a timer thread, so that the request
//! loop keeps serving other requests meanwhile: like a disk whose cache flush takes that long.

use std::ffi::OsStr;
use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Model, Stat};

const TTL: Duration = Duration::ZERO;

/// The mounted filesystem: the model behind a mutex shared with the mount handle.
pub(crate) struct FaultFsInner {
    pub(crate) model: Arc<Mutex<Model>>,
    uid: u32,
    gid: u32,
    started: SystemTime,
    /// Answers successful syncs after the fsync delay (`None`: no delay, answered at once).
    delayed: Option<Sender<(Instant, ReplyEmpty)>>,
    fsync_delay: Duration,
}

/// Answers each queued sync reply at its deadline. Deadlines come in order (one fixed delay),
/// so a FIFO is a timer queue; the thread ends when the filesystem (the sender) is dropped.
fn spawn_delayer() -> io::Result<Sender<(Instant, ReplyEmpty)>> {
    let (tx, rx) = mpsc::channel::<(Instant, ReplyEmpty)>();
    std::thread::Builder::new().name("faultfs-fsync-delay".into()).spawn(move || {
        while let Ok((at, reply)) = rx.recv() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            reply.ok();
        }
    })?;
    Ok(tx)
}

impl FaultFsInner {
    /// The filesystem over `model`; every successful fsync/fsyncdir is answered `fsync_delay`
    /// after it was performed.
    ///
    /// # Errors
    /// When the timer thread of a non-zero delay cannot be started.
    pub(crate) fn new(model: Arc<Mutex<Model>>, fsync_delay: Duration) -> io::Result<Self> {
        Ok(Self {
            model,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            started: SystemTime::now(),
            delayed: if fsync_delay.is_zero() { None } else { Some(spawn_delayer()?) },
            fsync_delay,
        })
    }

    /// Answers a sync: errors at once, success after the fsync delay.
    fn reply_sync(&self, result: io::Result<()>, reply: ReplyEmpty) {
        match (result, &self.delayed) {
            (Err(e), _) => reply.error(err(&e)),
            (Ok(()), None) => reply.ok(),
            (Ok(()), Some(tx)) => {
                if let Err(mpsc::SendError((_, reply))) = tx.send((Instant::now() + self.fsync_delay, reply)) {
                    reply.ok(); // the timer thread is gone (unmounting): answer undelayed
                }
            }
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attr(&self, s: Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(s.ino),
            size: s.size,
            blocks: s.size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: if s.dir { FileType::Directory } else { FileType::RegularFile },
            perm: s.perm,
            nlink: if s.dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

fn err(e: &io::Error) -> Errno {
    Errno::from(io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem for FaultFsInner {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Every open is direct_io; without this, the kernel refuses shared mmap of such files
        // (ENODEV), which databases that read through mmap (etcd's bbolt) need. Older kernels
        // (< 6.6) lack the flag: mounting still works, shared mmap does not.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.model().lookup(parent.0, name) {
            Ok(s) => reply.entry(&TTL, &self.attr(s), Generation(0)),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().stat(ino.0) {
            Ok(s) => reply.attr(&TTL, &self.attr(s)),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.model();
        let result = (|| {
            if let Some(size) = size {
                m.file_mut(ino.0)?.set_size(size);
            }
            if let Some(mode) = mode {
                m.set_perm(ino.0, perm(mode, 0))?;
            }
            m.stat(ino.0)
        })();
        match result {
            Ok(s) => reply.attr(&TTL, &self.attr(s)),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.model().mkdir(parent.0, name, perm(mode, umask)) {
            Ok(s) => reply.entry(&TTL, &self.attr(s), Generation(0)),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        match self.model().rename(parent.0, name, newparent.0, newname) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut m = self.model();
        let truncated = if flags.0 & libc::O_TRUNC != 0 { m.file_mut(ino.0).map(|f| f.set_size(0)) } else { Ok(()) };
        match truncated.and_then(|()| m.open(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut m = self.model();
        let result = m.handle(fh.0).and_then(|ino| m.file_mut(ino)?.read(offset, u64::from(size)));
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut m = self.model();
        let result = m.handle(fh.0).and_then(|ino| m.file_mut(ino)?.write(offset, data));
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = {
            let mut m = self.model();
            m.handle(fh.0).and_then(|ino| m.fsync(ino))
        };
        self.reply_sync(result, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err(&e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let m = self.model();
        let entries = match m.handle(fh.0).and_then(|_| m.readdir(ino.0)) {
            Ok(v) => v,
            Err(e) => return reply.error(err(&e)),
        };
        for (i, (child, dir, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            let kind = if dir { FileType::Directory } else { FileType::RegularFile };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.model().release(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = {
            let mut m = self.model();
            m.handle(fh.0).and_then(|ino| m.fsyncdir(ino))
        };
        self.reply_sync(result, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.model().create(parent.0, name, perm(mode, umask)) {
            Ok((s, fh)) => {
                reply.created(&TTL, &self.attr(s), Generation(0), FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
            }
            Err(e) => reply.error(err(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut m = self.model();
        let result = m.handle(fh.0).and_then(|ino| {
            let f = m.file_mut(ino)?;
            match mode {
                // Allocation is not modelled: only the size change is (volatile, like any other).
                0 => f.set_size(f.size.max(offset.saturating_add(length))),
                libc::FALLOC_FL_KEEP_SIZE => {}
                _ => return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        }
    }
}
