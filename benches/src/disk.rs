//! Slow-disk mode: every member's data directory on `conclave-faultfs`, a FUSE passthrough
//! (this repository's power-loss filesystem) that answers each fsync, fdatasync and directory
//! fsync a fixed delay late, as a disk whose cache flush takes that long. All targets get the
//! same layer, so the FUSE cost itself (every read and write goes through user space) is paid
//! by all; `0` measures that cost alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::targets::{ChildGuard, STOP_GRACE};

/// Where the members' data directories live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disk {
    /// The machine's own disk.
    Native,
    /// `conclave-faultfs` adding this many milliseconds to every fsync.
    FsyncDelayMs(u32),
}

impl FromStr for Disk {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("native") {
            return Ok(Disk::Native);
        }
        match s.parse::<u32>() {
            Ok(ms) if ms <= 10_000 => Ok(Disk::FsyncDelayMs(ms)),
            _ => Err(format!("`{s}`: expected `native` or milliseconds of fsync delay (0 to 10000)")),
        }
    }
}

impl fmt::Display for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disk::Native => write!(f, "native disk"),
            Disk::FsyncDelayMs(ms) => write!(f, "FUSE, fsync +{ms} ms"),
        }
    }
}

/// A mounted `conclave-faultfs`; dropping it unmounts (SIGTERM, then waits for the process).
/// Drop the servers using it first.
pub struct SlowDisk {
    process: ChildGuard,
    mountpoint: PathBuf,
}

/// Whether `path` is a mount point now (by `/proc/self/mountinfo`).
fn mounted(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(target.as_ref())))
}

impl SlowDisk {
    /// Mounts `binary` over `<dir>/backing` at `<dir>/mnt` with `delay_ms` added to each fsync,
    /// and waits (up to 10 s) until the mount is there; its log is `<dir>/faultfs.log`.
    ///
    /// # Errors
    /// When the binary is missing, exits (no /dev/fuse, not root: see its log) or the mount
    /// does not appear in time.
    pub async fn mount(binary: &Path, dir: &Path, delay_ms: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.is_file(),
            "{} not found (build it: cargo build --release -p conclave-faultfs)",
            binary.display()
        );
        let mountpoint = dir.join("mnt");
        std::fs::create_dir_all(&mountpoint)?;
        let log = dir.join("faultfs.log");
        let mut cmd = Command::new(binary);
        cmd.args(["mount", "--fsync-delay-ms", &delay_ms.to_string()]).arg(dir.join("backing")).arg(&mountpoint);
        let mut disk = Self { process: ChildGuard::spawn(cmd, &log)?, mountpoint };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mounted(&disk.mountpoint) {
            if disk.process.exited() || Instant::now() >= deadline {
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("conclave-faultfs did not mount {}: {}", disk.mountpoint.display(), why.trim());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(disk)
    }

    /// Where the data directories go.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        // A clean unmount writes the cached state to the backing directory first.
        self.process.terminate(STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("native".parse(), Ok(Disk::Native));
        assert_eq!("5".parse(), Ok(Disk::FsyncDelayMs(5)));
        assert!("-1".parse::<Disk>().is_err());
        assert!("fast".parse::<Disk>().is_err());
        assert_eq!(Disk::FsyncDelayMs(1).to_string(), "FUSE, fsync +1 ms");
    }
}
