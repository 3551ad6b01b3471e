//! Isolation: every run re-executes this program inside a private network namespace (and a
//! private PID namespace whose init it is, so every node dies with it), with `lo` up. All
//! iptables rules live in that namespace; the host's network setup is never touched.

use std::process::Command;
use std::time::{Duration, Instant};

/// Environment variable telling the re-executed program which network namespace the host's is.
const MARKER: &str = "CONCLAVE_JEPSEN_HOST_NETNS";

fn current_netns() -> anyhow::Result<String> {
    Ok(std::fs::read_link("/proc/self/ns/net")?.display().to_string())
}

/// Whether this process runs in the private namespace its parent made.
pub fn inside() -> bool {
    match (std::env::var(MARKER), current_netns()) {
        (Ok(host), Ok(mine)) => host != mine,
        _ => false,
    }
}

/// Refuses to go on outside the private namespace (protects the host's iptables).
///
/// # Errors
/// When not inside it.
pub fn ensure_private() -> anyhow::Result<()> {
    if !inside() {
        anyhow::bail!("refusing to change iptables outside the run's private network namespace");
    }
    Ok(())
}

/// Brings `lo` up (a new namespace starts with it down).
///
/// # Errors
/// When `ip` fails.
pub fn bring_up_loopback() -> anyhow::Result<()> {
    ensure_private()?;
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status()?;
    if !status.success() {
        anyhow::bail!("`ip link set lo up` failed");
    }
    Ok(())
}

/// Runs this program again with the same arguments in new network and PID namespaces and
/// returns its exit code. Kills it if it outlives `watchdog`.
///
/// # Errors
/// When `unshare` cannot be started (not root, util-linux missing).
pub fn reexec(watchdog: Duration) -> anyhow::Result<i32> {
    // unshare's own failures exit with 1, which would read as "invalid": probe first.
    let probe = Command::new("unshare").args(["--net", "--pid", "--fork", "--mount-proc", "true"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => anyhow::bail!(
            "cannot create private namespaces (run as root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => anyhow::bail!("cannot run unshare (util-linux): {e}"),
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARKER, current_netns()?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run unshare (util-linux, needs root): {e}"))?;
    let deadline = Instant::now() + watchdog;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code().unwrap_or(255));
        }
        if Instant::now() >= deadline {
            eprintln!("jepsen: run exceeded its {watchdog:?} watchdog; killing it");
            let _ = child.kill();
            let _ = child.wait();
            return Ok(255);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
