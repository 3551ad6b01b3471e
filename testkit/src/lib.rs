//! Shared test-cluster helper: runs real `conclave` processes on free loopback addresses.
//!
//! Used by the integration tests, `jepsen/` and `benches/`. Each node gets its own IP
//! (127.0.0.x, x from a per-process random base) and ports the kernel reports free, so
//! parallel test binaries do not collide. Nothing sleeps for a fixed time: every wait polls a
//! condition with a deadline.

mod cluster;
mod node;
pub mod tls;

pub use cluster::{free_addrs, free_ports, Cluster, ClusterOptions};
pub use node::NodeProcess;

use std::path::PathBuf;
use std::time::Duration;

/// Finds the `conclave` binary: `$CONCLAVE_BIN`, else next to the running test executable
/// (`target/<profile>/conclave`).
///
/// # Errors
/// When it cannot be found (build it with `cargo build -p conclave-server`).
pub fn conclave_binary() -> anyhow::Result<PathBuf> {
    sibling_binary("CONCLAVE_BIN", "conclave")
}

/// Finds the `conclavectl` binary like [`conclave_binary`] (`$CONCLAVECTL_BIN`).
///
/// # Errors
/// When it cannot be found (build it with `cargo build -p conclave-client`).
pub fn conclavectl_binary() -> anyhow::Result<PathBuf> {
    sibling_binary("CONCLAVECTL_BIN", "conclavectl")
}

fn sibling_binary(env: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "cannot find the `{name}` binary near {}; build it first (cargo build --bins) or set {env}",
        exe.display()
    )
}

/// Polls `cond` every few milliseconds until it returns `Some` or `timeout` passes.
///
/// # Errors
/// On timeout, with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        // A probe that hangs (a call without a deadline) is given up too: at the deadline, but
        // never sooner than 10 s after it started, so one slow probe near the end still counts.
        let bound = deadline.max(tokio::time::Instant::now() + Duration::from_secs(10));
        if let Ok(Some(v)) = tokio::time::timeout_at(bound, cond()).await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}
