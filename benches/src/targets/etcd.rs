//! etcd 3.4: three `etcd` processes on 127.0.1.x, and a small leader-following client written
//! against etcd's own gRPC API (the same calls `clientv3` makes).

use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_client::GrpcChannel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::etcd_counter::{counter_outcome, counter_state, counter_txn};
use super::generic::{spawn_watchers, watch_stream, WatchApi};
use super::AbortOnDrop;
use super::{channel, free_ports, BoxFut, ChildGuard, Kv, Notification, SessionHold, SessionRun, Target, TargetKind};
use crate::etcdpb::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::maintenance_client::MaintenanceClient;

/// Where Debian's `etcd-server` package installs the server.
pub const DEFAULT_BINARY: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
    /// Re-added to the running cluster (`member add`) after losing its data: starts with
    /// `--initial-cluster-state existing`.
    existing: bool,
}

/// A running 3-member etcd cluster.
pub struct EtcdTarget {
    binary: PathBuf,
    initial_cluster: String,
    members: Mutex<Vec<Member>>,
    endpoints: Vec<String>,
    data_dirs: Vec<PathBuf>,
    /// `Etcd` or `EtcdGeneric`: the client profile of the KV workloads.
    kind: TargetKind,
    /// The generic users' channels (`EtcdGeneric`).
    generic: super::generic::Connections,
}

impl EtcdTarget {
    /// Starts 3 members under `dir` with default settings (fsync on) and waits for a leader.
    /// `kind` picks the client profile of the KV workloads (`EtcdGeneric`: the generic gRPC
    /// client, [`super::generic::GenericEtcdKv`]).
    ///
    /// # Errors
    /// When a member cannot be started or no leader is elected in time.
    pub async fn start(binary: &Path, dir: &Path, kind: TargetKind) -> anyhow::Result<Self> {
        let mut members = Vec::new();
        for i in 0..3u8 {
            let ip = Ipv4Addr::new(127, 0, 1, 11 + i);
            let scheme = if super::tls::get().is_some() { "https" } else { "http" };
            let ports = free_ports(ip, 2)?;
            let m = Member {
                name: format!("m{}", i + 1),
                client_url: format!("{scheme}://{ip}:{}", ports[0]),
                peer_url: format!("{scheme}://{ip}:{}", ports[1]),
                data_dir: dir.join(format!("etcd{}", i + 1)),
                log: dir.join(format!("etcd{}.log", i + 1)),
                process: None,
                existing: false,
            };
            members.push(m);
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let endpoints: Vec<String> =
            members.iter().map(|m| m.client_url.split_once("://").map_or("", |(_, a)| a).to_owned()).collect();
        let data_dirs = members.iter().map(|m| m.data_dir.clone()).collect();
        let target = Self {
            binary: binary.to_path_buf(),
            initial_cluster,
            members: Mutex::new(members),
            generic: super::generic::Connections::new(&endpoints),
            endpoints,
            data_dirs,
            kind,
        };
        for i in 0..3 {
            target.spawn(i)?;
        }
        target.wait_whole(Duration::from_secs(60)).await?;
        Ok(target)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, i: usize) -> anyhow::Result<()> {
        let mut members = self.lock();
        let m = &mut members[i];
        let mut cmd = Command::new(&self.binary);
        let state = if m.existing { "existing" } else { "new" };
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url, "--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url, "--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "conclave-bench", "--logger", "zap", "--log-level", "warn"]);
        if let Some(tls) = super::tls::get() {
            // As Conclave's --tls setup: server TLS for clients, mutual TLS between members.
            let c = &tls.certs;
            cmd.arg("--cert-file").arg(&c.node_client.0).arg("--key-file").arg(&c.node_client.1);
            cmd.arg("--peer-cert-file").arg(&c.node_peer.0).arg("--peer-key-file").arg(&c.node_peer.1);
            cmd.arg("--peer-trusted-ca-file").arg(c.pki.ca()).arg("--peer-client-cert-auth");
        }
        m.process = Some(ChildGuard::spawn(cmd, &m.log)?);
        Ok(())
    }

    /// Waits until every running member reports the same leader; returns its index.
    async fn wait_whole(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(i) = self.leader_once().await {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("etcd: no agreed leader within {timeout:?} (logs in {:?})", self.lock()[0].log.parent());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn leader_once(&self) -> anyhow::Result<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for e in &self.endpoints {
            let mut c = MaintenanceClient::new(channel(e)?);
            let s = tokio::time::timeout(Duration::from_secs(1), c.status(pb::StatusRequest {})).await??.into_inner();
            ids.push(s.header.map_or(0, |h| h.member_id));
            leaders.push(s.leader);
        }
        anyhow::ensure!(leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]), "no agreed leader");
        ids.iter().position(|id| *id == leaders[0]).ok_or_else(|| anyhow::anyhow!("leader is not a member"))
    }
}

/// One etcd client: a channel per member, pinned to one until it fails, then the next (as
/// `clientv3` fails over); every call retries until a 10 s deadline.
pub struct EtcdKv {
    channels: Vec<GrpcChannel>,
    current: AtomicUsize,
}

impl EtcdKv {
    /// A client over `endpoints`, starting at member `start`.
    ///
    /// # Errors
    /// On malformed endpoints.
    pub fn new(endpoints: &[String], start: usize) -> anyhow::Result<Self> {
        let channels = endpoints.iter().map(|e| channel(e)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { channels, current: AtomicUsize::new(start % endpoints.len()) })
    }

    /// Runs `attempt` against the current member, moving to the next on failure.
    ///
    /// # Errors
    /// A final error from the server, or the last failure at the deadline.
    pub async fn call<T, F, Fut>(&self, attempt: F) -> anyhow::Result<T>
    where
        F: Fn(GrpcChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut backoff = Duration::from_millis(10);
        loop {
            let idx = self.current.load(Ordering::Relaxed);
            let err = match tokio::time::timeout(Duration::from_secs(2), attempt(self.channels[idx].clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if matches!(s.code(), Code::InvalidArgument | Code::NotFound | Code::OutOfRange) => {
                    return Err(s.into());
                }
                Ok(Err(s)) => anyhow::anyhow!("etcd {}: {s}", idx + 1),
                Err(_) => anyhow::anyhow!("etcd {}: attempt timed out", idx + 1),
            };
            let _ = self.current.compare_exchange(
                idx,
                (idx + 1) % self.channels.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Moves to the next member.
    pub fn rotate(&self) {
        let idx = self.current.load(Ordering::Relaxed);
        self.current.store((idx + 1) % self.channels.len(), Ordering::Relaxed);
    }

    /// The channel currently in use.
    pub fn current_channel(&self) -> GrpcChannel {
        self.channels[self.current.load(Ordering::Relaxed)].clone()
    }

    async fn range(&self, key: &str, serializable: bool) -> anyhow::Result<pb::RangeResponse> {
        let req = pb::RangeRequest { key: key.as_bytes().to_vec(), serializable, ..Default::default() };
        self.call(|ch| {
            let r = req.clone();
            async move { KvClient::new(ch).range(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }
}

impl Kv for EtcdKv {
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let req = pb::PutRequest { key: key.into_bytes(), value, ..Default::default() };
            self.call(|ch| {
                let r = req.clone();
                async move { KvClient::new(ch).put(r).await }
            })
            .await?;
            Ok(())
        })
    }

    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let r = self.range(&key, !linearizable).await?;
            anyhow::ensure!(!r.kvs.is_empty(), "key not found");
            Ok(())
        })
    }

    /// The compare-and-swap loop on `mod_revision` (what `clientv3`'s STM does): read, then a
    /// transaction "if mod_revision unchanged, put value + 1, else read it again".
    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        Box::pin(async move {
            let key = counter.into_bytes();
            let first = self.range(std::str::from_utf8(&key)?, false).await?;
            let (mut value, mut mod_rev) = counter_state(&first.kvs);
            for attempt in 1..=10_000u32 {
                let req = counter_txn(&key, value, mod_rev);
                let resp = self
                    .call(|ch| {
                        let r = req.clone();
                        async move { KvClient::new(ch).txn(r).await.map(tonic::Response::into_inner) }
                    })
                    .await?;
                match counter_outcome(resp) {
                    None => return Ok(attempt),
                    Some(seen) => (value, mod_rev) = seen,
                }
            }
            anyhow::bail!("counter increment did not succeed in 10,000 attempts")
        })
    }
}

/// What the keep-alive streams learned about each lease.
#[derive(Default)]
pub struct LeaseBook {
    /// When each lease was last confirmed alive (granted or renewed).
    last_ok: Mutex<HashMap<i64, Instant>>,
    /// Renewals answered with "lease not found" (TTL <= 0).
    expired: AtomicU64,
}

impl LeaseBook {
    fn confirm(&self, id: i64) {
        self.last_ok.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, Instant::now());
    }

    /// Leases reported gone, or not confirmed alive for a whole `ttl`.
    pub fn lost(&self, ttl: Duration) -> u64 {
        let stale = self
            .last_ok
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|t| t.elapsed() > ttl)
            .count() as u64;
        stale.max(self.expired.load(Ordering::Relaxed))
    }
}

/// Leases kept alive the way `clientv3` does: one keep-alive stream per client, each lease
/// renewed every TTL / 3 (checked every 500 ms).
struct EtcdLeases {
    _tasks: Vec<AbortOnDrop>,
    book: Arc<LeaseBook>,
    ttl: Duration,
}

impl SessionHold for EtcdLeases {
    fn lost(&self) -> BoxFut<'_, u64> {
        Box::pin(async move { self.book.lost(self.ttl) })
    }
}

/// Keeps `leases` alive over one stream on `channel`: each renewed every TTL / 3 (checked every
/// 500 ms, as `clientv3` does), the stream re-opened if it breaks; answers go to `book`.
pub async fn keep_leases_alive(channel: GrpcChannel, leases: Vec<i64>, ttl: Duration, book: Arc<LeaseBook>) {
    let interval = ttl / 3;
    for id in &leases {
        book.confirm(*id);
    }
    let leases = Arc::new(leases);
    loop {
        let (tx, rx) = mpsc::channel(1024);
        // The sender runs first: etcd answers the call's headers only with the first renewal.
        let sender = {
            let leases = leases.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut due: Vec<(i64, Instant)> = leases.iter().map(|id| (*id, Instant::now())).collect();
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    for (id, next) in &mut due {
                        if *next <= now {
                            if tx.send(pb::LeaseKeepAliveRequest { id: *id }).await.is_err() {
                                return;
                            }
                            *next = now + interval;
                        }
                    }
                }
            }))
        };
        if let Ok(s) = LeaseClient::new(channel.clone()).lease_keep_alive(ReceiverStream::new(rx)).await {
            let mut stream = s.into_inner();
            while let Ok(Some(r)) = stream.message().await {
                if r.ttl <= 0 {
                    book.expired.fetch_add(1, Ordering::Relaxed);
                } else {
                    book.confirm(r.id);
                }
            }
        }
        drop(sender);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Target for EtcdTarget {
    fn kind(&self) -> TargetKind {
        self.kind
    }

    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    fn pids(&self) -> Vec<u32> {
        self.lock().iter().filter_map(|m| m.process.as_ref().and_then(ChildGuard::pid)).collect()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        self.data_dirs.clone()
    }

    fn client(&self, n: usize) -> BoxFut<'_, anyhow::Result<Arc<dyn Kv>>> {
        Box::pin(async move {
            if self.kind == TargetKind::EtcdGeneric {
                return Ok(Arc::new(self.generic.etcd_user(n)?) as Arc<dyn Kv>);
            }
            Ok(Arc::new(EtcdKv::new(&self.endpoints, n)?) as Arc<dyn Kv>)
        })
    }

    fn leader(&self) -> BoxFut<'_, anyhow::Result<usize>> {
        Box::pin(self.wait_whole(Duration::from_secs(30)))
    }

    /// `Maintenance.Snapshot` from the leader (what `etcdctl snapshot save` streams), written to
    /// `path` and fsynced.
    fn backup<'a>(&'a self, path: &'a Path) -> BoxFut<'a, Option<anyhow::Result<u64>>> {
        Box::pin(async move {
            let saved = async {
                use std::io::Write;
                let leader = self.wait_whole(Duration::from_secs(10)).await?;
                let mut c =
                    MaintenanceClient::new(channel(&self.endpoints[leader])?).max_decoding_message_size(64 << 20);
                let mut stream = c.snapshot(pb::SnapshotRequest {}).await?.into_inner();
                let mut file = std::fs::File::create(path)?;
                let mut size = 0u64;
                while let Some(chunk) = stream.message().await? {
                    file.write_all(&chunk.blob)?;
                    size += chunk.blob.len() as u64;
                }
                file.sync_all()?;
                Ok(size)
            };
            Some(saved.await)
        })
    }

    fn kill(&self, member: usize) -> anyhow::Result<()> {
        if let Some(mut p) = self.lock()[member].process.take() {
            p.kill();
        }
        Ok(())
    }

    fn stop(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let process = self.lock()[member].process.take();
            super::process::terminate(process).await
        })
    }

    fn restart(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            // On an existing data dir etcd ignores the initial-cluster flags.
            self.spawn(member)?;
            self.wait_whole(Duration::from_secs(60)).await?;
            Ok(())
        })
    }

    /// etcd cannot take a member back on an empty data dir under its old id: `member remove`,
    /// `member add` with the same peer URL, then (in [`Target::start_wiped`]) a start with
    /// `--initial-cluster-state existing`.
    fn wipe(&self, member: usize) -> BoxFut<'_, anyhow::Result<String>> {
        Box::pin(async move {
            self.kill(member)?;
            let peer_url = self.lock()[member].peer_url.clone();
            super::empty_dir(&self.data_dirs[member], &[])?;
            let t0 = Instant::now();
            let others: Vec<String> =
                self.endpoints.iter().enumerate().filter(|(i, _)| *i != member).map(|(_, e)| e.clone()).collect();
            let (old, new) = super::etcd_membership::replace_member(&others, &peer_url).await?;
            self.lock()[member].existing = true;
            Ok(format!(
                "etcd: member removed (id {old:x}) and re-added with the same peer URL (id {new:x}) in {:.2} s, \
                 started on an empty data dir with --initial-cluster-state existing",
                t0.elapsed().as_secs_f64()
            ))
        })
    }

    fn start_wiped(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move { self.spawn(member) })
    }

    fn read_local<'a>(&'a self, member: usize, key: &'a str) -> BoxFut<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let req = pb::RangeRequest { key: key.as_bytes().to_vec(), serializable: true, ..Default::default() };
            let mut kv = KvClient::new(channel(&self.endpoints[member])?);
            let r = tokio::time::timeout(Duration::from_secs(2), kv.range(req)).await??;
            Ok(!r.into_inner().kvs.is_empty())
        })
    }

    /// Waits until every member agrees on the leader; notes whether the member holds a Raft
    /// snapshot file (it received the leader's snapshot) or caught up from the log alone.
    fn rebuilt(&self, member: usize) -> BoxFut<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            self.wait_whole(Duration::from_secs(60)).await?;
            Ok(vec![super::etcd_membership::snapshot_note(&self.data_dirs[member])])
        })
    }

    fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> BoxFut<'_, anyhow::Result<(SessionRun, Box<dyn SessionHold>)>> {
        Box::pin(async move {
            const CLIENTS: usize = 64;
            let clients: Vec<Arc<EtcdKv>> =
                (0..CLIENTS).map(|i| EtcdKv::new(&self.endpoints, i).map(Arc::new)).collect::<anyhow::Result<_>>()?;
            let started = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let ttl_s = ttl.as_secs().max(1) as i64;
            let mut tasks = Vec::new();
            for c in &clients {
                let (c, next) = (c.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let (mut ids, mut errors) = (Vec::new(), 0u64);
                    while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                        let r = c
                            .call(|ch| async move {
                                LeaseClient::new(ch).lease_grant(pb::LeaseGrantRequest { ttl: ttl_s, id: 0 }).await
                            })
                            .await;
                        match r {
                            Ok(resp) => ids.push(resp.into_inner().id),
                            Err(_) => errors += 1,
                        }
                    }
                    (ids, errors)
                }));
            }
            let mut run = SessionRun::default();
            let book = Arc::new(LeaseBook::default());
            let mut keepers = Vec::new();
            for (c, t) in clients.iter().zip(tasks) {
                let (ids, errors) = t.await?;
                run.opened += ids.len() as u64;
                run.errors += errors;
                keepers.push(AbortOnDrop(tokio::spawn(keep_leases_alive(c.current_channel(), ids, ttl, book.clone()))));
            }
            run.open_time = started.elapsed();
            Ok((run, Box::new(EtcdLeases { _tasks: keepers, book, ttl }) as Box<dyn SessionHold>))
        })
    }

    fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> BoxFut<'_, anyhow::Result<Box<dyn Send>>> {
        Box::pin(async move {
            if self.kind == TargetKind::EtcdGeneric {
                return super::generic::start_watchers(&self.endpoints, n, key, tx, WatchApi::Etcd);
            }
            const CLIENTS: usize = 64;
            let channels = (0..CLIENTS.min(n.max(1)))
                .map(|i| channel(&self.endpoints[i % 3]))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(spawn_watchers(channels, n, key, tx, WatchApi::Etcd, watch_stream::<GrpcChannel>))
        })
    }
}
