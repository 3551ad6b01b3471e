//! Child processes of etcd and ZooKeeper members (Conclave's are managed by `conclave-testkit`).

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process killed (SIGKILL) and reaped when dropped, so no member outlives the harness,
/// whether it ends normally, on error, on panic or on Ctrl-C.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// When the log cannot be opened or the program cannot be started.
    pub fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::options().create(true).append(true).open(log)?;
        let child = cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
        Ok(Self { child: Some(child) })
    }

    /// Wraps an already spawned child.
    pub fn from_child(child: Child) -> Self {
        Self { child: Some(child) }
    }

    /// Whether the process has exited (or was never started).
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits (blocking) for the exit; `kill -9` after `grace`.
    pub fn terminate(&mut self, grace: std::time::Duration) {
        let Some(mut c) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops `process` (if any) gracefully off the async runtime: SIGTERM, wait, `kill -9` after
/// [`super::STOP_GRACE`].
///
/// # Errors
/// When the blocking task fails.
pub async fn terminate(process: Option<ChildGuard>) -> anyhow::Result<()> {
    if let Some(mut p) = process {
        tokio::task::spawn_blocking(move || p.terminate(super::STOP_GRACE)).await?;
    }
    Ok(())
}
