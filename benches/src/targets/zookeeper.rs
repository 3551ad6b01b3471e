//! ZooKeeper 3.8: a 3-member ensemble of `zkServer.sh start-foreground` on 127.0.2.x, driven by
//! the `zookeeper-client` crate (a native async client speaking ZooKeeper's protocol).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zookeeper_client as zk;

use super::conclave::AbortOnDrop;
use super::{free_port, BoxFut, ChildGuard, Kv, Notification, SessionHold, SessionRun, Target, TargetKind};

/// Where Debian's `zookeeper` package installs the server script.
pub const DEFAULT_SCRIPT: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// Session timeout of the load clients (Curator's default is 60 s; failover does not wait for
/// it: a client reconnects to another member within its session).
const CLIENT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

struct Member {
    client_addr: String,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
}

/// A running 3-member ZooKeeper ensemble.
pub struct ZookeeperTarget {
    script: PathBuf,
    members: Mutex<Vec<Member>>,
    endpoints: Vec<String>,
    data_dirs: Vec<PathBuf>,
}

impl ZookeeperTarget {
    /// Writes each member's config (default tickTime and fsync; no connection limit per IP, as
    /// every client here comes from 127.0.0.1) and starts the ensemble.
    ///
    /// # Errors
    /// When a member cannot be started or the ensemble does not form in time.
    pub async fn start(script: &Path, dir: &Path) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let ip = Ipv4Addr::new(127, 0, 2, 11 + i);
            servers.push(format!("server.{}={ip}:{}:{}", i + 1, free_port(ip)?, free_port(ip)?));
            clients.push((ip, free_port(ip)?));
        }
        let mut members = Vec::new();
        for (i, (ip, port)) in clients.iter().enumerate() {
            let home = dir.join(format!("zk{}", i + 1));
            let data_dir = home.join("data");
            std::fs::create_dir_all(&data_dir)?;
            std::fs::write(data_dir.join("myid"), format!("{}\n", i + 1))?;
            let config = home.join("zoo.cfg");
            let text = format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress={ip}\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n{}\n",
                data_dir.display(),
                servers.join("\n")
            );
            std::fs::write(&config, text)?;
            members.push(Member {
                client_addr: format!("{ip}:{port}"),
                config,
                data_dir,
                log: dir.join(format!("zk{}.log", i + 1)),
                process: None,
            });
        }
        let endpoints = members.iter().map(|m| m.client_addr.clone()).collect();
        let data_dirs = members.iter().map(|m| m.data_dir.clone()).collect();
        let target = Self { script: script.to_path_buf(), members: Mutex::new(members), endpoints, data_dirs };
        for i in 0..3 {
            target.spawn(i)?;
        }
        target.wait_whole(Duration::from_secs(90)).await?;
        Ok(target)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, i: usize) -> anyhow::Result<()> {
        let mut members = self.lock();
        let m = &mut members[i];
        let mut cmd = Command::new(&self.script);
        // `start-foreground` execs java: the child's pid is the server's.
        cmd.arg("start-foreground").arg(&m.config);
        m.process = Some(ChildGuard::spawn(cmd, &m.log)?);
        Ok(())
    }

    /// Waits until every member serves, one of them as leader; returns its index.
    async fn wait_whole(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut modes = Vec::new();
            for e in &self.endpoints {
                modes.push(
                    four_letter(e, "srvr")
                        .await
                        .ok()
                        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_owned))),
                );
            }
            let leaders: Vec<usize> =
                modes.iter().enumerate().filter(|(_, m)| m.as_deref() == Some("leader")).map(|(i, _)| i).collect();
            if modes.iter().all(Option::is_some) && leaders.len() == 1 {
                return Ok(leaders[0]);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("ZooKeeper: ensemble not formed within {timeout:?} (modes {modes:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A connect string starting at member `start` (the client tries them in order first).
    fn connect_string(&self, start: usize) -> String {
        (0..3).map(|i| self.endpoints[(start + i) % 3].clone()).collect::<Vec<_>>().join(",")
    }

    async fn session(&self, start: usize, timeout: Duration) -> anyhow::Result<zk::Client> {
        let cs = self.connect_string(start);
        let c = tokio::time::timeout(
            Duration::from_secs(20),
            zk::Client::connector().with_session_timeout(timeout).connect(&cs),
        )
        .await??;
        Ok(c)
    }
}

/// Sends a four-letter command and returns the answer.
async fn four_letter(addr: &str, cmd: &str) -> anyhow::Result<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(cmd.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(1), fut).await?
}

fn path(key: &str) -> String {
    format!("/{key}")
}

/// Errors worth retrying (the session reconnects to another member by itself).
fn transient(e: &zk::Error) -> bool {
    matches!(e, zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::SessionMoved)
}

/// Runs `op` until it succeeds, fails finally, or 10 s pass (Curator-style retry loop).
async fn with_retry<T, F, Fut>(mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, zk::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut backoff = Duration::from_millis(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if !transient(&e) => return Err(e.into()),
            Ok(Err(e)) if Instant::now() + backoff >= deadline => return Err(e.into()),
            Err(_) if Instant::now() + backoff >= deadline => anyhow::bail!("ZooKeeper call timed out"),
            _ => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

struct ZkKv {
    client: zk::Client,
}

impl Kv for ZkKv {
    /// `setData`, creating the node on first use.
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let p = path(&key);
            with_retry(|| async {
                match self.client.set_data(&p, &value, None).await {
                    Err(zk::Error::NoNode) => {
                        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                        match self.client.create(&p, &value, &opts).await {
                            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    r => r.map(|_| ()),
                }
            })
            .await
        })
    }

    /// Linearizable: `sync` then `getData` (ZooKeeper's documented recipe); else a local read.
    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let p = path(&key);
            with_retry(|| async {
                if linearizable {
                    self.client.sync(&p).await?;
                }
                self.client.get_data(&p).await.map(|_| ())
            })
            .await
        })
    }

    /// Curator's `SharedCount` loop: read value and version, `setData` with that version, and
    /// start over on `BadVersion`.
    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        Box::pin(async move {
            let p = path(&counter);
            for attempt in 1..=10_000u32 {
                let read = with_retry(|| self.client.get_data(&p)).await;
                let (value, version) = match read {
                    Ok((data, stat)) => (
                        std::str::from_utf8(&data).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0),
                        Some(stat.version),
                    ),
                    Err(e) if matches!(e.downcast_ref::<zk::Error>(), Some(zk::Error::NoNode)) => (0, None),
                    Err(e) => return Err(e),
                };
                let next = (value + 1).to_string().into_bytes();
                let r = match version {
                    Some(v) => self.client.set_data(&p, &next, Some(v)).await.map(|_| ()),
                    None => {
                        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                        self.client.create(&p, &next, &opts).await.map(|_| ())
                    }
                };
                match r {
                    Ok(()) => return Ok(attempt),
                    Err(zk::Error::BadVersion | zk::Error::NodeExists) => {}
                    Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(e) => return Err(e.into()),
                }
            }
            anyhow::bail!("counter increment did not succeed in 10,000 attempts")
        })
    }
}

struct ZkSessions {
    clients: Vec<zk::Client>,
}

impl SessionHold for ZkSessions {
    fn lost(&self) -> BoxFut<'_, u64> {
        Box::pin(
            async move { self.clients.iter().filter(|c| c.state() != zk::SessionState::SyncConnected).count() as u64 },
        )
    }
}

impl Target for ZookeeperTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Zookeeper
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
        Box::pin(
            async move { Ok(Arc::new(ZkKv { client: self.session(n, CLIENT_SESSION_TIMEOUT).await? }) as Arc<dyn Kv>) },
        )
    }

    fn leader(&self) -> BoxFut<'_, anyhow::Result<usize>> {
        Box::pin(self.wait_whole(Duration::from_secs(30)))
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
            self.spawn(member)?;
            self.wait_whole(Duration::from_secs(90)).await?;
            Ok(())
        })
    }

    fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> BoxFut<'_, anyhow::Result<(SessionRun, Box<dyn SessionHold>)>> {
        Box::pin(async move {
            // A ZooKeeper session is a connection: one client per session.
            let started = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let (next, tx) = (next.clone(), tx.clone());
                let cs: Vec<String> = (0..3).map(|s| self.connect_string(s)).collect();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || Instant::now() >= deadline {
                            return;
                        }
                        let c = tokio::time::timeout(
                            Duration::from_secs(20),
                            zk::Client::connector().with_session_timeout(ttl).connect(&cs[i % 3]),
                        )
                        .await;
                        let _ = tx.send(c.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)));
                    }
                }));
            }
            drop(tx);
            let mut run = SessionRun::default();
            let mut clients = Vec::with_capacity(n);
            while let Some(r) = rx.recv().await {
                match r {
                    Ok(c) => clients.push(c),
                    Err(_) => run.errors += 1,
                }
            }
            run.opened = clients.len() as u64;
            run.open_time = started.elapsed();
            Ok((run, Box::new(ZkSessions { clients }) as Box<dyn SessionHold>))
        })
    }

    fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> BoxFut<'_, anyhow::Result<Box<dyn Send>>> {
        Box::pin(async move {
            // ZooKeeper delivers one notification per session and path: a watcher is a session.
            let p = path(&key);
            let mut tasks = Vec::new();
            for i in 0..n {
                let client = self.session(i, CLIENT_SESSION_TIMEOUT).await?;
                let mut watcher = with_retry(|| client.watch(&p, zk::AddWatchMode::Persistent)).await?;
                let tx = tx.clone();
                tasks.push(AbortOnDrop(tokio::spawn(async move {
                    let _client = client;
                    loop {
                        let ev = watcher.changed().await;
                        match ev.event_type {
                            zk::EventType::NodeDataChanged | zk::EventType::NodeCreated
                                if tx.send((i, Instant::now())).is_err() =>
                            {
                                return;
                            }
                            zk::EventType::Session if ev.session_state.is_terminated() => return,
                            _ => {}
                        }
                    }
                })));
            }
            Ok(Box::new(tasks) as Box<dyn Send>)
        })
    }
}
