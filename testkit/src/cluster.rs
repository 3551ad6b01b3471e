//! A cluster of `conclave` processes.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use conclave_client::proto::StatusResponse;
use conclave_client::{Client, ClientConfig, ClientTls};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::node::NodeProcess;
use crate::wait_for;

/// How long [`Cluster::stop`] waits for a node to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Settings of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Extra flags for every node (e.g. `--snapshot-logs 50`).
    pub extra_args: Vec<String>,
    /// Binary to run (default: [`crate::conclave_binary`]).
    pub binary: Option<PathBuf>,
    /// Parent for the data directories (default: a temp dir removed on drop).
    pub base_dir: Option<PathBuf>,
    /// First address octet to try (127.0.0.x); default random per process.
    pub first_ip_octet: Option<u8>,
    /// Extra environment variables for every node process; `{id}` in a value is replaced by the
    /// node's id (e.g. a per-node `FAKETIME_TIMESTAMP_FILE`) and `{ip}` by the loopback IP it
    /// binds (e.g. `CONCLAVE_ZK_ADDR={ip}:21810`). Kept across restarts.
    pub env: Vec<(String, String)>,
    /// TLS of the cluster's own clients ([`Cluster::client`], status polls) when the nodes
    /// serve TLS on the client port (see [`crate::tls::TestCerts`]).
    pub client_tls: Option<ClientTls>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            extra_args: Vec::new(),
            binary: None,
            base_dir: None,
            first_ip_octet: None,
            env: Vec::new(),
            client_tls: None,
        }
    }
}

/// A running test cluster. Dropping it kills every process.
pub struct Cluster {
    nodes: Vec<NodeProcess>,
    binary: PathBuf,
    client_tls: Option<ClientTls>,
    _tmp: Option<TempDir>,
    /// Where data dirs and logs live.
    pub dir: PathBuf,
}

/// The first octet of a fresh block of 8 loopback IPs (127.0.0.2 to 127.0.0.249): the process
/// id picks where a process starts, then each cluster takes the next block.
fn next_ip_block() -> u8 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    2 + ((std::process::id().wrapping_add(n) % 31) * 8) as u8
}

/// `n` distinct ports the kernel has free on `ip`. Each stays bound until all are picked: picked
/// one at a time, the kernel may hand back the port it just released, and a node then got the
/// same port for its client and peer listeners and could not start.
///
/// # Errors
/// When nothing can bind on `ip`.
pub fn free_ports(ip: Ipv4Addr, n: usize) -> anyhow::Result<Vec<u16>> {
    let held = (0..n).map(|_| TcpListener::bind((ip, 0))).collect::<std::io::Result<Vec<_>>>()?;
    Ok(held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// `n` distinct `ip:port` addresses free on `ip` (for nodes started by hand); see [`free_ports`].
///
/// # Errors
/// When nothing can bind on `ip`.
pub fn free_addrs(ip: Ipv4Addr, n: usize) -> anyhow::Result<Vec<String>> {
    Ok(free_ports(ip, n)?.into_iter().map(|port| format!("{ip}:{port}")).collect())
}

impl Cluster {
    /// Starts `n` nodes with default options and waits for a leader.
    ///
    /// # Errors
    /// When the binary is missing or no leader is elected in time.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(ClusterOptions { nodes: n, ..ClusterOptions::default() }).await
    }

    /// Starts a cluster and waits until every node knows the same leader.
    ///
    /// # Errors
    /// When the binary is missing or no leader is elected in time.
    pub async fn start_with(opts: ClusterOptions) -> anyhow::Result<Self> {
        let binary = match opts.binary.clone() {
            Some(b) => b,
            None => crate::conclave_binary()?,
        };
        let (tmp, dir) = match &opts.base_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("conclave-test-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        // Distinct loopback IPs per node: 127.0.0.{base+i}, in a block of 8 of its own per
        // cluster, so clusters started side by side (parallel tests of one process, test
        // processes) rarely share an IP: a port picked free for one node cannot then be taken
        // by another cluster's node or by its outgoing connections before the node binds it.
        let base = opts.first_ip_octet.unwrap_or_else(next_ip_block);
        let mut addrs = Vec::new();
        for i in 0..opts.nodes {
            let ip = Ipv4Addr::new(127, 0, 0, base.wrapping_add(i as u8).max(2));
            let pair = free_addrs(ip, 2)?;
            addrs.push((pair[0].clone(), pair[1].clone()));
        }
        let initial: Vec<String> = addrs.iter().enumerate().map(|(i, (_, p))| format!("{}={p}", i + 1)).collect();
        let initial = initial.join(",");
        let mut nodes = Vec::new();
        for (i, (client, peer)) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = dir.join(format!("node{id}"));
            let mut args = vec![
                "--node-id".into(),
                id.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--client-addr".into(),
                client.clone(),
                "--peer-addr".into(),
                peer.clone(),
                "--initial-cluster".into(),
                initial.clone(),
            ];
            args.extend(opts.extra_args.iter().cloned());
            let ip = peer.rsplit_once(':').map_or("", |(ip, _)| ip);
            let env = opts
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.replace("{id}", &id.to_string()).replace("{ip}", ip)))
                .collect();
            nodes.push(NodeProcess {
                id,
                client_addr: client,
                peer_addr: peer,
                log_path: dir.join(format!("node{id}.log")),
                data_dir,
                args,
                child: None,
                paused: false,
                env,
            });
        }
        for n in &mut nodes {
            n.spawn(&binary)?;
        }
        let cluster = Self { nodes, binary, client_tls: opts.client_tls.clone(), _tmp: tmp, dir };
        if let Err(e) = cluster.wait_for_leader(Duration::from_secs(30)).await {
            let tails: Vec<String> =
                cluster.nodes.iter().map(|n| format!("node {}: {}", n.id, n.log_tail(5))).collect();
            anyhow::bail!("{e}; the members' last log lines:\n{}", tails.join("\n"));
        }
        Ok(cluster)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    /// One node by id (1-based).
    ///
    /// # Panics
    /// When no node has that id (a bug in the test).
    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut NodeProcess> {
        self.nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| anyhow::anyhow!("no node {id}"))
    }

    /// Every node's client address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    /// Client addresses of the nodes currently running.
    pub fn running_endpoints(&mut self) -> Vec<String> {
        self.nodes.iter_mut().filter_map(|n| (n.is_running() && !n.paused).then(|| n.client_addr.clone())).collect()
    }

    /// A client over every endpoint.
    ///
    /// # Errors
    /// On malformed endpoints.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::with_config(self.client_config(self.endpoints())).await?)
    }

    /// Client settings for `endpoints`, with the cluster's client TLS.
    pub fn client_config(&self, endpoints: Vec<String>) -> ClientConfig {
        let mut config = ClientConfig::new(endpoints);
        config.tls = self.client_tls.clone();
        config
    }

    /// A client pinned to one node's endpoint only (no discovery: every request goes to that
    /// node, which forwards to the leader when needed).
    ///
    /// # Errors
    /// On malformed endpoints.
    pub async fn client_of(&self, id: u64) -> anyhow::Result<Client> {
        let mut config = self.client_config(vec![self.node(id).client_addr.clone()]);
        config.discover = false;
        Ok(Client::with_config(config).await?)
    }

    /// A node's own status (its view).
    ///
    /// # Errors
    /// When it does not answer.
    pub async fn status(&self, id: u64) -> anyhow::Result<StatusResponse> {
        let client = Client::with_config(self.client_config(vec![self.node(id).client_addr.clone()])).await?;
        Ok(client.status_of(&self.node(id).client_addr).await?)
    }

    /// Waits until every running, unpaused node reports the same leader (itself running);
    /// returns its id.
    ///
    /// # Errors
    /// On timeout.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let ids: Vec<u64> = self.nodes.iter().filter(|n| n.child.is_some() && !n.paused).map(|n| n.id).collect();
        wait_for("an agreed leader", timeout, || {
            let ids = ids.clone();
            async move {
                let mut leader = None;
                for id in &ids {
                    let s = self.status(*id).await.ok()?;
                    if s.leader_id == 0 || !ids.contains(&s.leader_id) || leader.is_some_and(|l| l != s.leader_id) {
                        return None;
                    }
                    leader = Some(s.leader_id);
                }
                leader
            }
        })
        .await
    }

    /// Waits until a leader other than `old` is agreed.
    ///
    /// # Errors
    /// On timeout.
    pub async fn wait_for_new_leader(&self, old: u64, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let l = self.wait_for_leader(remaining).await?;
            if l != old {
                return Ok(l);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("leader is still {old}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied up to `revision`.
    ///
    /// # Errors
    /// On timeout.
    pub async fn wait_for_revision(&self, id: u64, revision: u64, timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("node {id} at revision {revision}"), timeout, || async move {
            let s = self.status(id).await.ok()?;
            (s.revision >= revision).then_some(())
        })
        .await
    }

    /// `kill -9` a node.
    ///
    /// # Errors
    /// When there is no such node.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        self.node_mut(id)?.kill9()
    }

    /// `kill -9` every node at once.
    pub fn kill_all(&mut self) {
        for n in &mut self.nodes {
            let _ = n.signal(Signal::SIGKILL);
        }
        for n in &mut self.nodes {
            let _ = n.kill9();
        }
    }

    /// Graceful stop (SIGTERM) and wait for exit, at most `STOP_GRACE` (Kubernetes' default
    /// termination grace period): a node still running then is killed and this is an error, so
    /// a shutdown that hangs fails its test instead of stalling the whole run.
    ///
    /// # Errors
    /// When there is no such node, or it did not exit within the grace period.
    pub fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        if n.signal(Signal::SIGTERM).is_err() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        while n.is_running() {
            if started.elapsed() >= STOP_GRACE {
                n.kill9()?;
                anyhow::bail!(
                    "node {id} did not exit within {STOP_GRACE:?} of SIGTERM (killed); see {}",
                    n.log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        n.child = None;
        Ok(())
    }

    /// SIGSTOP a node.
    ///
    /// # Errors
    /// When it is not running.
    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        n.signal(Signal::SIGSTOP)?;
        n.paused = true;
        Ok(())
    }

    /// SIGCONT a paused node.
    ///
    /// # Errors
    /// When it is not running.
    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        n.signal(Signal::SIGCONT)?;
        n.paused = false;
        Ok(())
    }

    /// Restarts a stopped or killed node from its data directory (same flags).
    ///
    /// # Errors
    /// When it is still running or cannot be spawned.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let binary = self.binary.clone();
        let n = self.node_mut(id)?;
        if n.is_running() {
            anyhow::bail!("node {id} is still running");
        }
        n.spawn(&binary)
    }

    /// Sets (`Some`) or removes (`None`) an environment variable of node `id` from its next
    /// start on ([`Cluster::restart`]).
    ///
    /// # Errors
    /// When no node has that id.
    pub fn set_env(&mut self, id: u64, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        n.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            n.env.push((key.to_owned(), v.to_owned()));
        }
        Ok(())
    }

    /// Whether node `id` is running (spawned and not exited or killed); false for unknown ids.
    pub fn node_is_running(&mut self, id: u64) -> bool {
        self.node_mut(id).map(|n| n.is_running()).unwrap_or(false)
    }

    /// Logs of every node that contain a panic.
    pub fn panics(&self) -> Vec<(u64, String)> {
        self.nodes.iter().filter(|n| n.log().contains("panicked")).map(|n| (n.id, n.log())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many rounds, so that picking ports one at a time (the kernel may give the one it just
    /// released back) would have repeated a port within a round.
    #[test]
    fn ports_picked_together_are_distinct() {
        let ip = Ipv4Addr::new(127, 0, 0, 250);
        for round in 0..20_000 {
            let ports = free_ports(ip, 3).expect("127.0.0.250 binds");
            let distinct: std::collections::HashSet<_> = ports.iter().collect();
            assert_eq!(distinct.len(), ports.len(), "round {round}: {ports:?}");
        }
    }
}
