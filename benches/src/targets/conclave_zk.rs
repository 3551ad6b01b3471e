//! "Conclave (ZooKeeper protocol)": the Conclave cluster of [`ConclaveTarget`], every member also
//! serving ZooKeeper's protocol (`--zk-addr`, default tick), driven by exactly the ZooKeeper
//! client code of the ZooKeeper target ([`ZkClients`]). Members are started, stopped and killed
//! as in the `conclave` target.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::conclave::ConclaveTarget;
use super::zk_client::ZkClients;
use super::{free_ports, BoxFut, Kv, Notification, SessionHold, SessionRun, Target, TargetKind};

/// A running Conclave cluster, driven through its ZooKeeper ports.
pub struct ConclaveZkTarget {
    inner: ConclaveTarget,
    zk_endpoints: Vec<String>,
    zk: ZkClients,
}

impl ConclaveZkTarget {
    /// Starts 3 members of `binary` as [`ConclaveTarget::start`] does, each also listening for
    /// ZooKeeper clients on one port of its own IP, and waits until every ZooKeeper port accepts.
    ///
    /// # Errors
    /// When the cluster does not start or a ZooKeeper port does not open within 30 s.
    pub async fn start(binary: &Path, dir: &Path, extra_args: Vec<String>) -> anyhow::Result<Self> {
        // Each member binds its own loopback IP: a port free on 127.0.0.1 is free on them too,
        // but for a race with another process (the start then fails with the member's message).
        let port = free_ports(Ipv4Addr::LOCALHOST, 1)?[0];
        let env = vec![("CONCLAVE_ZK_ADDR".to_owned(), format!("{{ip}}:{port}"))];
        let inner = ConclaveTarget::start_with_env(binary, dir, extra_args, env, TargetKind::ConclaveZk).await?;
        let zk_endpoints: Vec<String> = inner.member_ips().iter().map(|ip| format!("{ip}:{port}")).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for e in &zk_endpoints {
            while tokio::net::TcpStream::connect(e).await.is_err() {
                anyhow::ensure!(Instant::now() < deadline, "Conclave: ZooKeeper port {e} not open within 30 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let zk = ZkClients::new(zk_endpoints.clone());
        Ok(Self { inner, zk_endpoints, zk })
    }
}

impl Target for ConclaveZkTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::ConclaveZk
    }

    fn endpoints(&self) -> Vec<String> {
        self.zk_endpoints.clone()
    }

    fn pids(&self) -> Vec<u32> {
        self.inner.pids()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        self.inner.data_dirs()
    }

    fn client(&self, n: usize) -> BoxFut<'_, anyhow::Result<Arc<dyn Kv>>> {
        Box::pin(self.zk.client(n))
    }

    fn client_on(&self, member: usize) -> BoxFut<'_, Option<anyhow::Result<Arc<dyn Kv>>>> {
        Box::pin(async move { Some(self.zk.client_on(member).await) })
    }

    fn leader(&self) -> BoxFut<'_, anyhow::Result<usize>> {
        self.inner.leader()
    }

    fn kill(&self, member: usize) -> anyhow::Result<()> {
        self.inner.kill(member)
    }

    fn restart(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        self.inner.restart(member)
    }

    fn stop(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        self.inner.stop(member)
    }

    fn wipe(&self, member: usize) -> BoxFut<'_, anyhow::Result<String>> {
        self.inner.wipe(member)
    }

    fn start_wiped(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        self.inner.start_wiped(member)
    }

    /// Through the member's ZooKeeper port, as the ZooKeeper target reads.
    fn read_local<'a>(&'a self, member: usize, key: &'a str) -> BoxFut<'a, anyhow::Result<bool>> {
        Box::pin(self.zk.read_on(member, key))
    }

    fn rebuilt(&self, member: usize) -> BoxFut<'_, anyhow::Result<Vec<String>>> {
        self.inner.rebuilt(member)
    }

    fn raft_log_index(&self) -> BoxFut<'_, Option<u64>> {
        self.inner.raft_log_index()
    }

    fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> BoxFut<'_, anyhow::Result<(SessionRun, Box<dyn SessionHold>)>> {
        Box::pin(self.zk.open_sessions(n, ttl, deadline))
    }

    fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> BoxFut<'_, anyhow::Result<Box<dyn Send>>> {
        Box::pin(self.zk.start_watchers(n, key, tx))
    }
}
