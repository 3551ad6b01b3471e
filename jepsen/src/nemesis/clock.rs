//! Wall-clock skew: every node runs under libfaketime with a per-node timestamp file holding its
//! offset in seconds; the library re-reads it every second. The monotonic clock is not faked
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`): a multi-threaded tokio program hangs otherwise, and
//! timers are not what we skew.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Where libfaketime may be installed (Debian's `faketime` package).
const CANDIDATES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

/// The per-node offset files of a run.
pub struct Clocks {
    dir: PathBuf,
    ids: Vec<u64>,
}

/// Finds libfaketime.
///
/// # Errors
/// When it is not installed (`apt-get install faketime`).
pub fn library() -> anyhow::Result<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("libfaketime not found: apt-get install -y faketime"))
}

impl Clocks {
    /// Creates zero offsets for nodes `ids` in `dir`; returns them with the environment every
    /// node must run with (`{id}` is replaced per node by the test kit).
    ///
    /// # Errors
    /// When libfaketime is missing or the files cannot be written.
    pub fn prepare(dir: &Path, ids: &[u64]) -> anyhow::Result<(Self, Vec<(String, String)>)> {
        let lib = library()?;
        let clocks = Self { dir: dir.to_path_buf(), ids: ids.to_vec() };
        clocks.reset()?;
        let file = dir.join("node{id}.faketime");
        let env = vec![
            ("LD_PRELOAD".to_owned(), lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE".to_owned(), file.display().to_string()),
            ("FAKETIME_CACHE_DURATION".to_owned(), "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ];
        Ok((clocks, env))
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.faketime"))
    }

    fn set(&self, id: u64, seconds: i64) -> anyhow::Result<()> {
        std::fs::write(self.path(id), format!("{seconds:+}\n"))?;
        Ok(())
    }

    /// Moves the clocks of a random non-empty subset of `ids` by random offsets of ±1 to ±128 s;
    /// returns (node, offset in seconds).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn bump_random(&self, ids: &[u64], rng: &mut ChaCha8Rng) -> anyhow::Result<Vec<(u64, i64)>> {
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(rng);
        let count = rng.random_range(1..=ids.len());
        let mut out = Vec::new();
        for &id in &shuffled[..count] {
            let magnitude = 1i64 << rng.random_range(0..8);
            let seconds = if rng.random::<bool>() { magnitude } else { -magnitude };
            self.set(id, seconds)?;
            out.push((id, seconds));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Sets every offset back to zero.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn reset(&self) -> anyhow::Result<()> {
        for &id in &self.ids {
            self.set(id, 0)?;
        }
        Ok(())
    }
}
