//! `conclave-faultfs`: a FUSE passthrough over a backing directory that loses, on a simulated
//! power cut, every write that was not made durable, as a disk with a volatile cache does
//! (the idea of LazyFS, used in Jepsen's etcd and Redpanda analyses).
//!
//! # The model
//! - **File data and size** (write, truncate, `fallocate`) are cached in memory, in 4 KiB
//!   pages; reads see them. An `fsync` or `fdatasync` of the file makes its whole current
//!   content and size durable. `close` makes nothing durable.
//! - **Names** (create, mkdir, unlink, rmdir, rename) change at once for readers, but a
//!   directory's entries become durable only when *that directory* is fsynced. This is
//!   stricter than ext4: an fsync of a new file does not make its name durable; a rename
//!   between two directories needs both fsynced; a directory created under a parent that is
//!   never fsynced vanishes on a cut, with everything in it.
//! - **A power cut** discards every change that is not durable, all at once (no torn
//!   subset of the unsynced pages survives), and invalidates every open handle (later
//!   operations on it fail with EIO; new opens see the durable state). The backing
//!   directory then holds exactly what a disk would after the power loss.
//! - Since durable state changes only at an fsync, a cut *before* the n-th fsync/fsyncdir of
//!   an operation ([`FaultFs::power_cut_before_sync`]) enumerates every crash state it can
//!   leave, a cut at any other instant being equivalent to one of them.
//! - A renamed directory follows the rule for names: its new name is durable once the new
//!   parent is fsynced, its old one gone once the old parent is.
//! - Not modelled: hard links, symlinks, owners and times
//!   (the mounting user's; the mount's start time), extended attributes. Writes to the
//!   backing directory are not themselves fsynced: the model, not the host's disk, is tested.
//! - A clean unmount (dropping the handle) makes everything durable, as `sync; umount` does.
//!
//! The durable content of each file is an object under `<backing>/.faultfs-objects/`, hard
//! linked from each of its durable names; that directory is removed on a cut and on unmount
//! (and on mount, if a crashed process left it).
//!
//! # Slow disks
//! [`Options::fsync_delay`] answers every successful fsync, fdatasync and directory fsync
//! that much later (the sync itself is done at once, other requests are served meanwhile), so
//! a benchmark can put a data directory on a disk with a known flush latency.
//!
//! # Requirements
//! `/dev/fuse`; as root the mount is a plain `mount(2)`. Otherwise fuser calls `fusermount3`
//! (Debian package `fuse3`).

mod file;
mod fs;
mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use model::Model;

pub use model::OBJECTS;

/// A mounted fault filesystem. Dropping it unmounts (after making everything durable).
pub struct FaultFs {
    model: Arc<Mutex<Model>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

/// Why the mount cannot work here, naming what to install.
fn preflight() -> io::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(io::Error::other(
            "faultfs: /dev/fuse is missing (load the kernel module `fuse`; in a container, pass the device)",
        ));
    }
    Ok(())
}

fn has_fusermount() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false)
}

/// Mount options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Added to every successful fsync, fdatasync and directory fsync (zero: none).
    pub fsync_delay: Duration,
}

impl FaultFs {
    /// Mounts a fault filesystem over `backing` (created if missing) at `mountpoint`.
    ///
    /// # Errors
    /// When `/dev/fuse` is missing, the mount is refused (not root and no `fusermount3`:
    /// Debian package `fuse3`), or the backing directory cannot be read.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Self> {
        Self::mount_with(backing, mountpoint, Options::default())
    }

    /// [`FaultFs::mount`] with `options`.
    ///
    /// # Errors
    /// As [`FaultFs::mount`]; also when the fsync delay's timer thread cannot be started.
    pub fn mount_with(backing: &Path, mountpoint: &Path, options: Options) -> io::Result<Self> {
        preflight()?;
        std::fs::create_dir_all(mountpoint)?;
        let model = Arc::new(Mutex::new(Model::load_from(backing)?));
        let inner = fs::FaultFsInner::new(model.clone(), options.fsync_delay)?;
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("conclave-faultfs".into())];
        if nix::unistd::geteuid().is_root() {
            config.acl = fuser::SessionACL::All;
        }
        let session = fuser::spawn_mount(inner, mountpoint, &config).map_err(|e| {
            let hint = if has_fusermount() { "" } else { " (not root and no fusermount3: apt-get install -y fuse3)" };
            io::Error::new(e.kind(), format!("faultfs: cannot mount {}: {e}{hint}", mountpoint.display()))
        })?;
        Ok(Self { model, session: Some(session), mountpoint: mountpoint.to_path_buf() })
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power now: every change not yet durable is lost, open handles go stale.
    /// Kill the processes using the mount first, as a real power loss would.
    ///
    /// # Errors
    /// When the backing directory cannot be reloaded.
    pub fn power_cut(&self) -> io::Result<()> {
        self.model().power_cut()
    }

    /// Arms a power cut that happens instead of the `n`-th next fsync or fsyncdir (1: the
    /// next one); that call fails with EIO, as do later calls on handles opened before.
    pub fn power_cut_before_sync(&self, n: u64) {
        self.model().arm(n);
    }

    /// How many fsync/fsyncdir calls it has served (to count those of an operation).
    pub fn syncs(&self) -> u64 {
        self.model().syncs
    }

    /// How many power cuts happened (direct or armed).
    pub fn cuts(&self) -> u64 {
        self.model().cuts
    }

    /// Unmounts, making everything durable first as a clean shutdown would.
    ///
    /// # Errors
    /// When the unmount fails (a process still uses the mount: it is then detached lazily)
    /// or the backing directory cannot be written.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let unmounted = session.umount_and_join();
        if let Err(e) = &unmounted {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "faultfs: unmount failed; detaching lazily");
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
        self.model().shutdown()?;
        unmounted
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "faultfs: unmount");
        }
    }
}
