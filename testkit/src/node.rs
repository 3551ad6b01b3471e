//! One `conclave` process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A node of a test cluster: its addresses, data dir and (when running) its process.
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    /// Client (gRPC API) address.
    pub client_addr: String,
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// Data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Log file (appended across restarts).
    pub log_path: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) child: Option<Child>,
    pub(crate) paused: bool,
    /// Extra environment variables of the process.
    pub(crate) env: Vec<(String, String)>,
}

impl NodeProcess {
    pub(crate) fn spawn(&mut self, binary: &Path) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log_path)?;
        let child = Command::new(binary)
            .arg("serve")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Whether the process is running (not killed or exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the process was paused with SIGSTOP (and not resumed since).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The IP address the node binds (its peer address's host part).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
    }

    /// Process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn signal(&mut self, sig: Signal) -> anyhow::Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow::anyhow!("node {} is not running", self.id))?;
        kill(Pid::from_raw(pid as i32), sig)?;
        Ok(())
    }

    /// SIGKILL and reap.
    pub(crate) fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
        Ok(())
    }

    /// The last `n` lines of the node's log, on one line (for error messages). Backtrace frames
    /// are left out, so the error of a node that exited shows.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let frame = |l: &str| {
            let t = l.trim_start();
            t.starts_with("at ")
                || t.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let lines: Vec<&str> = log.lines().filter(|l| !frame(l)).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    /// The node's log so far (for diagnosing failures and checking for panics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
