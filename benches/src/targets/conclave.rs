//! Conclave: a 3-node cluster of the release `conclave` binary, started by `conclave-testkit`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_client::{Client, ClientConfig, GetOptions, Session, SessionState, WatchEvent, WatchOptions};
use conclave_proto::v1::kv_client::KvClient;
use conclave_proto::v1::{KeyRange, RangeRequest};
use conclave_testkit::{Cluster, ClusterOptions};
use tokio::sync::mpsc;

use super::generic::Connections;
use super::{AbortOnDrop, BoxFut, Kv, Notification, SessionHold, SessionRun, Target, TargetKind};

/// A running Conclave cluster.
pub struct ConclaveTarget {
    cluster: Mutex<Cluster>,
    endpoints: Vec<String>,
    data_dirs: Vec<PathBuf>,
    /// Which client [`Target::client`] hands out.
    kind: TargetKind,
    /// The generic users' channels (`ConclaveGeneric`).
    generic: Connections,
}

impl ConclaveTarget {
    /// Starts 3 members of `binary` under `dir` (default flags, fsync on, plus `extra_args`) and
    /// waits for a leader. `kind` picks the client profile of the KV workloads
    /// ([`TargetKind::Conclave`] or [`TargetKind::ConclaveGeneric`]); sessions, watches and the
    /// job managers always use Conclave's own client.
    ///
    /// # Errors
    /// When the binary is missing or no leader is elected.
    pub async fn start(binary: &Path, dir: &Path, extra_args: Vec<String>, kind: TargetKind) -> anyhow::Result<Self> {
        Self::start_with_env(binary, dir, extra_args, Vec::new(), kind).await
    }

    /// [`ConclaveTarget::start`] with extra environment variables for the members (`{ip}` in a
    /// value is the member's own loopback IP, see `conclave_testkit::ClusterOptions::env`).
    ///
    /// # Errors
    /// When the binary is missing or no leader is elected.
    pub async fn start_with_env(
        binary: &Path,
        dir: &Path,
        extra_args: Vec<String>,
        env: Vec<(String, String)>,
        kind: TargetKind,
    ) -> anyhow::Result<Self> {
        let mut extra_args = extra_args;
        if let Some(tls) = super::tls::get() {
            extra_args.extend(tls.certs.server_args(false));
        }
        let opts = ClusterOptions {
            nodes: 3,
            extra_args,
            binary: Some(binary.to_path_buf()),
            base_dir: Some(dir.to_path_buf()),
            client_tls: super::tls::get().map(|t| t.client.clone()),
            env,
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start_with(opts).await?;
        let endpoints = cluster.endpoints();
        let data_dirs = cluster.nodes().iter().map(|n| n.data_dir.clone()).collect();
        let generic = Connections::new(&endpoints);
        let target = Self { cluster: Mutex::new(cluster), endpoints, data_dirs, kind, generic };
        // Every member must know every other's client address before clients spread out.
        target.wait_whole(Duration::from_secs(30)).await?;
        Ok(target)
    }

    async fn client_now(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.endpoints.clone());
        config.tls = super::tls::get().map(|t| t.client.clone());
        Ok(Client::with_config(config).await?)
    }

    /// Waits until every member reports the same leader among them.
    async fn wait_whole(&self, timeout: Duration) -> anyhow::Result<usize> {
        let probe = self.client_now().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for e in &self.endpoints {
                if let Ok(s) = probe.status_of(e).await {
                    leaders.push(s.leader_id);
                }
            }
            if leaders.len() == self.endpoints.len()
                && leaders[0] != 0
                && leaders.iter().all(|l| *l == leaders[0])
                && (leaders[0] as usize) <= self.endpoints.len()
            {
                return Ok(leaders[0] as usize - 1);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("Conclave: no agreed leader within {timeout:?} (saw {leaders:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The members' own loopback IPs, in member order.
    pub fn member_ips(&self) -> Vec<std::net::IpAddr> {
        self.lock().nodes().iter().filter_map(|n| n.ip()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct ConclaveKv {
    client: Client,
}

impl Kv for ConclaveKv {
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.client.put(key, value).await?;
            Ok(())
        })
    }

    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let opts = GetOptions { serializable: !linearizable, ..GetOptions::default() };
            let r = self.client.get_with(key, opts).await?;
            anyhow::ensure!(!r.kvs.is_empty(), "key not found");
            Ok(())
        })
    }

    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        Box::pin(async move {
            self.client.counter_add(&counter, 1).await?;
            Ok(1)
        })
    }
}

struct ConclaveSessions {
    sessions: Vec<Session>,
}

impl SessionHold for ConclaveSessions {
    fn lost(&self) -> BoxFut<'_, u64> {
        Box::pin(async move {
            self.sessions
                .iter()
                .filter(|s| matches!(s.state(), SessionState::Expired | SessionState::Suspended))
                .count() as u64
        })
    }
}

/// The file a member keeps in its data dir while it rejoins (`server/src/node/rejoin.rs`).
const REJOIN_MARKER: &str = "rejoin.pending";

/// Clients the session and watch workloads spread their sessions and watchers over.
const SHARED_CLIENTS: usize = 64;

impl Target for ConclaveTarget {
    fn kind(&self) -> TargetKind {
        self.kind
    }

    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    fn pids(&self) -> Vec<u32> {
        self.lock().nodes().iter().filter_map(|n| n.pid()).collect()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        self.data_dirs.clone()
    }

    fn client(&self, n: usize) -> BoxFut<'_, anyhow::Result<Arc<dyn Kv>>> {
        Box::pin(async move {
            if self.kind == TargetKind::ConclaveGeneric {
                return Ok(Arc::new(self.generic.conclave_user(n)?) as Arc<dyn Kv>);
            }
            // The Conclave client follows the leader by itself; where it starts does not matter.
            Ok(Arc::new(ConclaveKv { client: self.client_now().await? }) as Arc<dyn Kv>)
        })
    }

    fn leader(&self) -> BoxFut<'_, anyhow::Result<usize>> {
        Box::pin(self.wait_whole(Duration::from_secs(30)))
    }

    fn kill(&self, member: usize) -> anyhow::Result<()> {
        self.lock().kill(member as u64 + 1)
    }

    fn stop(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move { tokio::task::block_in_place(|| self.lock().stop(member as u64 + 1)) })
    }

    fn restart(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.lock().restart(member as u64 + 1)?;
            self.wait_whole(Duration::from_secs(60)).await?;
            Ok(())
        })
    }

    /// README "Membership changes": a member whose disk was lost needs no command; restarted
    /// with its usual flags on an empty data dir, it is recognized by the others (they hold its
    /// registration), kept out of elections, re-added as a learner and promoted back.
    fn wipe(&self, member: usize) -> BoxFut<'_, anyhow::Result<String>> {
        Box::pin(async move {
            self.kill(member)?;
            super::empty_dir(&self.data_dirs[member], &[])?;
            Ok("Conclave: data dir emptied, member restarted with its usual flags (--initial-cluster; no manual \
                step): the others recognize it, it rejoins as a learner, catches up from the leader and is \
                promoted back to a voter"
                .to_owned())
        })
    }

    /// The same command line as at the first start (`conclave-testkit` keeps it): on an empty
    /// data dir `--initial-cluster` makes the member ask the others first, and it bootstraps
    /// only when a majority answers that none has seen it take part, which members that hold
    /// its registration never answer.
    fn start_wiped(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move { self.lock().restart(member as u64 + 1) })
    }

    fn read_local<'a>(&'a self, member: usize, key: &'a str) -> BoxFut<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let channel = super::channel(&self.endpoints[member])?;
            let range = KeyRange { key: key.as_bytes().to_vec(), ..KeyRange::default() };
            let req = RangeRequest { range: Some(range), serializable: true, ..RangeRequest::default() };
            let r = tokio::time::timeout(Duration::from_secs(2), KvClient::new(channel).range(req)).await??;
            Ok(!r.into_inner().kvs.is_empty())
        })
    }

    /// Waits until the member's rejoin is over (its marker file gone: it saw itself a learner,
    /// then a voter again) with the member list agreeing, and every member agrees on the leader;
    /// fails when the member's cluster id is not the leader's (it initialized a cluster of its own).
    fn rebuilt(&self, member: usize) -> BoxFut<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let id = member as u64 + 1;
            let client = self.client_now().await?;
            let deadline = Instant::now() + Duration::from_secs(120);
            let pending = self.data_dirs[member].join(REJOIN_MARKER);
            loop {
                let listed = client.member_list().await.map(|ms| ms.iter().find(|m| m.id == id).map(|m| m.voter));
                let rejoining = pending.exists();
                if matches!(listed, Ok(Some(true))) && !rejoining {
                    break;
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "Conclave: member {id} not a voter again within 120 s (member list: {listed:?}; {} {})",
                        pending.display(),
                        if rejoining { "still there" } else { "gone" }
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let leader = self.wait_whole(Duration::from_secs(60)).await?;
            let (mine, theirs) =
                (client.status_of(&self.endpoints[member]).await?, client.status_of(&self.endpoints[leader]).await?);
            // A member that had initialized a cluster of its own on the empty data dir would
            // carry a cluster id of its own (`raft/cluster_id.rs`).
            anyhow::ensure!(
                !mine.cluster_id.is_empty() && mine.cluster_id == theirs.cluster_id,
                "Conclave: member {id} reports cluster id {:?}, the leader {:?}: it did not rejoin the cluster",
                mine.cluster_id,
                theirs.cluster_id
            );
            let mut notes = vec![format!(
                "Conclave: the member rejoined as a learner and was promoted back (cluster id {} as the leader's)",
                mine.cluster_id
            )];
            notes.push(if mine.snapshot_index > 0 {
                format!(
                    "Conclave: the member holds a snapshot at log index {} (the leader's: {}, last log index {})",
                    mine.snapshot_index, theirs.snapshot_index, theirs.last_log_index
                )
            } else {
                format!(
                    "Conclave: no snapshot on the member: it caught up from the leader's log (the leader's last log \
                     index {}, snapshot index {}; a snapshot every --snapshot-logs entries)",
                    theirs.last_log_index, theirs.snapshot_index
                )
            });
            Ok(notes)
        })
    }

    fn backup<'a>(&'a self, path: &'a Path) -> BoxFut<'a, Option<anyhow::Result<u64>>> {
        Box::pin(async move {
            let saved = async {
                let client = self.client_now().await?;
                let leader = self.wait_whole(Duration::from_secs(10)).await?;
                Ok(client.snapshot_save(&self.endpoints[leader], path).await?.size)
            };
            Some(saved.await)
        })
    }

    fn raft_log_index(&self) -> BoxFut<'_, Option<u64>> {
        Box::pin(async move {
            let probe = self.client_now().await.ok()?;
            let leader = self.wait_whole(Duration::from_secs(10)).await.ok()?;
            probe.status_of(&self.endpoints[leader]).await.ok().map(|s| s.last_log_index)
        })
    }

    fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> BoxFut<'_, anyhow::Result<(SessionRun, Box<dyn SessionHold>)>> {
        Box::pin(async move {
            let mut clients = Vec::new();
            for _ in 0..SHARED_CLIENTS {
                clients.push(self.client_now().await?);
            }
            let started = Instant::now();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for client in clients {
                let (tx, next) = (tx.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
                        let _ = tx.send(Session::open(&client, ttl).await);
                    }
                }));
            }
            drop(tx);
            let mut run = SessionRun::default();
            let mut sessions = Vec::with_capacity(n);
            while let Some(r) = rx.recv().await {
                match r {
                    Ok(s) => sessions.push(s),
                    Err(_) => run.errors += 1,
                }
            }
            run.opened = sessions.len() as u64;
            run.open_time = started.elapsed();
            Ok((run, Box::new(ConclaveSessions { sessions }) as Box<dyn SessionHold>))
        })
    }

    fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> BoxFut<'_, anyhow::Result<Box<dyn Send>>> {
        Box::pin(async move {
            if self.kind == TargetKind::ConclaveGeneric {
                return super::generic::start_watchers(&self.endpoints, n, key, tx, super::generic::WatchApi::Conclave);
            }
            let mut clients = Vec::new();
            for _ in 0..SHARED_CLIENTS.min(n.max(1)) {
                clients.push(self.client_now().await?);
            }
            let mut tasks = Vec::new();
            for i in 0..n {
                let mut watcher = clients[i % clients.len()].watch(key.clone(), WatchOptions::default());
                let tx = tx.clone();
                tasks.push(AbortOnDrop(tokio::spawn(async move {
                    while let Some(ev) = watcher.next().await {
                        if let Ok(WatchEvent::Changes { .. }) = ev {
                            if tx.send((i, Instant::now())).is_err() {
                                return;
                            }
                        }
                    }
                })));
            }
            Ok(Box::new((tasks, clients)) as Box<dyn Send>)
        })
    }
}
