//! Test hook: hold a member's synchronous log appends, as a disk stuck in fsync would.
//!
//! With `CONCLAVE_TEST_HOLD_APPENDS=<file>` set, a follower's append whose last index is at or
//! above the index written in `<file>` waits while that file holds it (the test rewrites or
//! removes the file to let it go). Such appends run on a pool thread, as on a slow disk
//! (`append_policy`), so the member keeps serving meanwhile. Unset (always, outside tests),
//! this costs one cached environment lookup per append. A hold ends by itself after
//! [`LONGEST_HOLD`].

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming the hold file.
pub const ENV: &str = "CONCLAVE_TEST_HOLD_APPENDS";

/// A hold never lasts longer than this, whatever the file says.
pub const LONGEST_HOLD: Duration = Duration::from_secs(60);

/// The hold file, if the hook is on.
pub fn file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(ENV).filter(|v| !v.is_empty()).map(PathBuf::from)).as_ref()
}

/// Waits while the hold file names an index at or below `last` (on a pool thread).
pub fn wait(file: &std::path::Path, last: u64) {
    let started = Instant::now();
    let held = || {
        std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse::<u64>().ok()).is_some_and(|from| last >= from)
    };
    while held() && started.elapsed() < LONGEST_HOLD {
        std::thread::sleep(Duration::from_millis(5));
    }
}
