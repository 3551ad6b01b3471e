//! The filesystem model: a namespace of directories and files whose current state lives in
//! memory and whose durable state is the backing directory, plus the power cut.
//!
//! Durability rules (see the crate documentation): file data and size become durable on an
//! fsync/fdatasync of that file; a directory's entries (create, mkdir, unlink, rmdir, rename)
//! become durable on an fsync of that directory. Durable file contents live in object files
//! under [`OBJECTS`]; a durable name is a hard link to its object, so the backing directory
//! (without [`OBJECTS`]) is always exactly what a disk would hold after a power loss.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::file::FileNode;

/// Hidden directory of the backing dir holding the objects (removed on a cut and on unmount).
pub const OBJECTS: &str = ".faultfs-objects";
/// The root directory's inode number.
pub(crate) const ROOT: u64 = 1;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A directory. `parent` and `name` are where it is now (a rename moves it).
pub(crate) struct DirNode {
    parent: u64,
    name: OsString,
    /// Entries as readers see them now.
    pub(crate) entries: BTreeMap<OsString, u64>,
    /// Entries as of the last fsync of this directory.
    durable: BTreeMap<OsString, u64>,
    pub(crate) perm: u16,
}

pub(crate) enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// What the FUSE layer reports of an inode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stat {
    pub ino: u64,
    pub dir: bool,
    pub size: u64,
    pub perm: u16,
}

/// The whole model. Not thread-safe by itself: the mount wraps it in a mutex.
pub(crate) struct Model {
    backing: PathBuf,
    objects: PathBuf,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Open file and directory handles: handle → inode. Emptied by a power cut, so handles
    /// opened before it fail with EIO.
    handles: HashMap<u64, u64>,
    next_fh: u64,
    /// Power-cut instead of the n-th next fsync/fsyncdir (1 = the next one).
    armed: Option<u64>,
    /// fsync and fsyncdir calls so far.
    pub(crate) syncs: u64,
    /// Power cuts so far.
    pub(crate) cuts: u64,
}

impl Model {
    /// Loads the backing directory (creating it if missing).
    pub(crate) fn load_from(backing: &Path) -> io::Result<Self> {
        fs::create_dir_all(backing)?;
        let backing = fs::canonicalize(backing)?;
        let objects = backing.join(OBJECTS);
        let mut m = Self {
            backing,
            objects,
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            armed: None,
            syncs: 0,
            cuts: 0,
        };
        m.load()?;
        Ok(m)
    }

    /// Rebuilds the in-memory state from the backing directory (start-up and power cut).
    fn load(&mut self) -> io::Result<()> {
        self.nodes.clear();
        self.handles.clear();
        match fs::remove_dir_all(&self.objects) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir(&self.objects)?;
        let perm = fs::metadata(&self.backing)?.permissions().mode() as u16 & 0o7777;
        let root =
            DirNode { parent: ROOT, name: OsString::new(), entries: BTreeMap::new(), durable: BTreeMap::new(), perm };
        self.nodes.insert(ROOT, Node::Dir(root));
        let backing = self.backing.clone();
        self.load_dir(ROOT, &backing)
    }

    fn load_dir(&mut self, dir: u64, path: &Path) -> io::Result<()> {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && name == OBJECTS {
                continue;
            }
            let meta = entry.metadata()?;
            let perm = meta.permissions().mode() as u16 & 0o7777;
            let ino = self.alloc_ino();
            if meta.is_dir() {
                let node = DirNode {
                    parent: dir,
                    name: name.clone(),
                    entries: BTreeMap::new(),
                    durable: BTreeMap::new(),
                    perm,
                };
                self.nodes.insert(ino, Node::Dir(node));
                self.load_dir(ino, &entry.path())?;
            } else if meta.is_file() {
                let object = self.objects.join(ino.to_string());
                fs::hard_link(entry.path(), &object)?;
                let file = OpenOptions::new().read(true).write(true).open(&object)?;
                self.nodes.insert(ino, Node::File(FileNode::new(file, meta.len(), perm)));
            } else {
                tracing::warn!(path = %entry.path().display(), "faultfs: ignoring what is neither a file nor a directory");
                continue;
            }
            let d = self.dir_mut(dir)?;
            d.entries.insert(name.clone(), ino);
            d.durable.insert(name, ino);
        }
        Ok(())
    }

    fn alloc_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    pub(crate) fn node(&self, ino: u64) -> io::Result<&Node> {
        self.nodes.get(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn dir(&self, ino: u64) -> io::Result<&DirNode> {
        match self.node(ino)? {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(errno(libc::ENOTDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    pub(crate) fn file_mut(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir(_)) => Err(errno(libc::EISDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    pub(crate) fn stat(&self, ino: u64) -> io::Result<Stat> {
        Ok(match self.node(ino)? {
            Node::File(f) => Stat { ino, dir: false, size: f.size, perm: f.perm },
            Node::Dir(d) => Stat { ino, dir: true, size: 4096, perm: d.perm },
        })
    }

    pub(crate) fn set_perm(&mut self, ino: u64, perm: u16) -> io::Result<()> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => f.perm = perm,
            Some(Node::Dir(d)) => d.perm = perm,
            None => return Err(errno(libc::ENOENT)),
        }
        Ok(())
    }

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<Stat> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or_else(|| errno(libc::ENOENT))?;
        self.stat(ino)
    }

    pub(crate) fn readdir(&self, ino: u64) -> io::Result<Vec<(u64, bool, OsString)>> {
        let d = self.dir(ino)?;
        let mut out = vec![(ino, true, OsString::from(".")), (d.parent, true, OsString::from(".."))];
        for (name, child) in &d.entries {
            out.push((*child, matches!(self.node(*child)?, Node::Dir(_)), name.clone()));
        }
        Ok(out)
    }

    /// Opens a handle on an inode.
    pub(crate) fn open(&mut self, ino: u64) -> io::Result<u64> {
        self.node(ino)?;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    pub(crate) fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// The inode of a handle; EIO for a handle opened before a power cut.
    pub(crate) fn handle(&self, fh: u64) -> io::Result<u64> {
        self.handles.get(&fh).copied().ok_or_else(|| errno(libc::EIO))
    }

    /// Creates a file (EEXIST if the name is taken) and opens it.
    pub(crate) fn create(&mut self, parent: u64, name: &OsStr, perm: u16) -> io::Result<(Stat, u64)> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(errno(libc::EEXIST));
        }
        let ino = self.alloc_ino();
        let object = self.objects.join(ino.to_string());
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&object)?;
        self.nodes.insert(ino, Node::File(FileNode::new(file, 0, perm)));
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        Ok((self.stat(ino)?, self.open(ino)?))
    }

    pub(crate) fn mkdir(&mut self, parent: u64, name: &OsStr, perm: u16) -> io::Result<Stat> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(errno(libc::EEXIST));
        }
        let ino = self.alloc_ino();
        let node = DirNode { parent, name: name.to_owned(), entries: BTreeMap::new(), durable: BTreeMap::new(), perm };
        self.nodes.insert(ino, Node::Dir(node));
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.stat(ino)
    }

    /// Removes a name: a file (`dir` false) or an empty directory (`dir` true).
    pub(crate) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> io::Result<()> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or_else(|| errno(libc::ENOENT))?;
        match (self.node(ino)?, dir) {
            (Node::File(_), true) => return Err(errno(libc::ENOTDIR)),
            (Node::Dir(_), false) => return Err(errno(libc::EISDIR)),
            (Node::Dir(d), true) if !d.entries.is_empty() => return Err(errno(libc::ENOTEMPTY)),
            _ => {}
        }
        self.dir_mut(parent)?.entries.remove(name);
        Ok(())
    }

    /// Renames a file (replacing a file at the target) or a directory (replacing an empty
    /// directory at the target; EINVAL into its own subtree). As for files, the new name
    /// becomes durable when the new parent is fsynced and the old one goes when the old parent
    /// is. Approximation: entries of a moved directory that are fsynced before its new parent
    /// is reach the backing directory only with that parent's fsync.
    pub(crate) fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) -> io::Result<()> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or_else(|| errno(libc::ENOENT))?;
        let moving_dir = matches!(self.node(ino)?, Node::Dir(_));
        if let Some(&target) = self.dir(new_parent)?.entries.get(new_name) {
            match (self.node(target)?, moving_dir) {
                _ if target == ino => return Ok(()),
                (Node::Dir(_), false) => return Err(errno(libc::EISDIR)),
                (Node::File(_), true) => return Err(errno(libc::ENOTDIR)),
                (Node::Dir(d), true) if !d.entries.is_empty() => return Err(errno(libc::ENOTEMPTY)),
                _ => {}
            }
        }
        if moving_dir {
            let mut up = new_parent;
            while up != ROOT {
                if up == ino {
                    return Err(errno(libc::EINVAL));
                }
                up = self.dir(up)?.parent;
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?.entries.insert(new_name.to_owned(), ino);
        if let Node::Dir(d) = self.nodes.get_mut(&ino).ok_or_else(|| errno(libc::ENOENT))? {
            d.parent = new_parent;
            d.name = new_name.to_owned();
        }
        Ok(())
    }

    /// Power-cuts here instead of performing the `n`-th next fsync or fsyncdir (1: the next).
    pub(crate) fn arm(&mut self, n: u64) {
        self.armed = Some(n.max(1));
    }

    /// Counts a sync call; performs the armed power cut when it is due (then the call fails).
    fn before_sync(&mut self) -> io::Result<()> {
        self.syncs += 1;
        match self.armed {
            Some(n) if n <= 1 => {
                self.armed = None;
                self.power_cut()?;
                Err(errno(libc::EIO))
            }
            Some(n) => {
                self.armed = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// fsync / fdatasync of a file: its content and size become durable.
    pub(crate) fn fsync(&mut self, ino: u64) -> io::Result<()> {
        self.before_sync()?;
        self.file_mut(ino)?.sync()
    }

    /// fsync of a directory: its entries become durable.
    pub(crate) fn fsyncdir(&mut self, ino: u64) -> io::Result<()> {
        self.before_sync()?;
        self.sync_dir(ino)
    }

    fn sync_dir(&mut self, ino: u64) -> io::Result<()> {
        let d = self.dir(ino)?;
        let (old, new) = (d.durable.clone(), d.entries.clone());
        if let Some(path) = self.durable_path(ino) {
            for (name, child) in &old {
                if new.get(name) != Some(child) {
                    remove_path(&path.join(name))?;
                }
            }
            self.dir_mut(ino)?.durable = new.clone();
            for (name, child) in &new {
                if old.get(name) != Some(child) {
                    self.materialize(&path.join(name), *child)?;
                }
            }
        } else {
            self.dir_mut(ino)?.durable = new;
        }
        Ok(())
    }

    /// Where a directory is in the backing dir, if every name up to the root is durable.
    fn durable_path(&self, ino: u64) -> Option<PathBuf> {
        if ino == ROOT {
            return Some(self.backing.clone());
        }
        let d = self.dir(ino).ok()?;
        let parent = self.dir(d.parent).ok()?;
        (parent.durable.get(&d.name) == Some(&ino)).then_some(())?;
        Some(self.durable_path(d.parent)?.join(&d.name))
    }

    /// Makes `ino` durable at `path`: a hard link to a file's object, or a directory with
    /// its durable entries.
    fn materialize(&self, path: &Path, ino: u64) -> io::Result<()> {
        remove_path(path)?;
        match self.node(ino)? {
            Node::File(_) => fs::hard_link(self.objects.join(ino.to_string()), path),
            Node::Dir(d) => {
                fs::create_dir(path)?;
                fs::set_permissions(path, fs::Permissions::from_mode(u32::from(d.perm)))?;
                for (name, child) in &d.durable {
                    self.materialize(&path.join(name), *child)?;
                }
                Ok(())
            }
        }
    }

    /// Loses every change that is not durable: the backing directory is left as a disk after
    /// a power loss, and the view is reloaded from it. Handles opened before fail with EIO.
    pub(crate) fn power_cut(&mut self) -> io::Result<()> {
        self.cuts += 1;
        self.armed = None;
        self.load()
    }

    /// Makes everything durable (a clean shutdown: `sync`).
    pub(crate) fn sync_everything(&mut self) -> io::Result<()> {
        let files: Vec<u64> = self.nodes.iter().filter(|(_, n)| matches!(n, Node::File(_))).map(|(i, _)| *i).collect();
        for ino in files {
            self.file_mut(ino)?.sync()?;
        }
        let mut dirs = vec![ROOT];
        while let Some(dir) = dirs.pop() {
            self.sync_dir(dir)?;
            for child in self.dir(dir)?.entries.values() {
                if matches!(self.node(*child)?, Node::Dir(_)) {
                    dirs.push(*child);
                }
            }
        }
        Ok(())
    }

    /// Clean unmount: everything made durable, the objects removed.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        self.sync_everything()?;
        self.nodes.clear();
        self.handles.clear();
        fs::remove_dir_all(&self.objects)
    }
}

/// Removes a file or a directory tree; a missing path is fine.
fn remove_path(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
