//! The client side of every ZooKeeper-protocol target: one implementation of the workloads'
//! operations (setData, getData with or without `sync`, Curator's SharedCount loop, create,
//! sessions, persistent watches) through the `zookeeper-client` crate, used unchanged against
//! ZooKeeper 3.8 and against Conclave's ZooKeeper port. The targets differ only in how their
//! cluster is started, stopped and killed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zookeeper_client as zk;

use super::AbortOnDrop;
use super::{BoxFut, Kv, Notification, SessionHold, SessionRun};

/// Session timeout of the load clients (Curator's default is 60 s; failover does not wait for
/// it: a client reconnects to another member within its session).
const CLIENT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A session through connect string `cs`, within 20 s.
async fn connect(cs: &str, timeout: Duration) -> anyhow::Result<zk::Client> {
    Ok(tokio::time::timeout(Duration::from_secs(20), zk::Client::connector().with_session_timeout(timeout).connect(cs))
        .await??)
}

/// ZooKeeper clients of one cluster (3 members), given their client addresses.
pub struct ZkClients {
    endpoints: Vec<String>,
}

impl ZkClients {
    /// Clients of the members serving ZooKeeper's protocol at `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints }
    }

    /// A connect string starting at member `start` (the client tries them in order first).
    fn connect_string(&self, start: usize) -> String {
        let n = self.endpoints.len();
        (0..n).map(|i| self.endpoints[(start + i) % n].clone()).collect::<Vec<_>>().join(",")
    }

    async fn session(&self, start: usize, timeout: Duration) -> anyhow::Result<zk::Client> {
        connect(&self.connect_string(start), timeout).await
    }

    /// One load client (its own session), starting at member `n % 3`.
    ///
    /// # Errors
    /// When no member completes the handshake within 20 s.
    pub async fn client(&self, n: usize) -> anyhow::Result<Arc<dyn Kv>> {
        Ok(Arc::new(ZkKv { client: self.session(n, CLIENT_SESSION_TIMEOUT).await? }) as Arc<dyn Kv>)
    }

    /// A load client whose session lives on member `member` only (its connect string names
    /// no other).
    ///
    /// # Errors
    /// When the member does not complete the handshake within 20 s.
    pub async fn client_on(&self, member: usize) -> anyhow::Result<Arc<dyn Kv>> {
        let endpoint = self.endpoints.get(member).ok_or_else(|| anyhow::anyhow!("no member {member}"))?;
        Ok(Arc::new(ZkKv { client: connect(endpoint, CLIENT_SESSION_TIMEOUT).await? }) as Arc<dyn Kv>)
    }

    /// One `getData` of `key` on member `member` alone, through a new session that tries that
    /// member once (a member that is not serving yet fails at once instead of being retried):
    /// `Ok(true)` when it has the node, `Ok(false)` when it answers `NoNode`.
    ///
    /// # Errors
    /// When the member does not complete the handshake or answer within 2 s.
    pub async fn read_on(&self, member: usize, key: &str) -> anyhow::Result<bool> {
        let endpoint = self.endpoints.get(member).ok_or_else(|| anyhow::anyhow!("no member {member}"))?;
        let read = async {
            let connector = zk::Client::connector().with_session_timeout(CLIENT_SESSION_TIMEOUT).with_fail_eagerly();
            let client = connector.connect(endpoint).await?;
            match client.get_data(&path(key)).await {
                Ok(_) => Ok(true),
                Err(zk::Error::NoNode) => Ok(false),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), read)
            .await
            .map_err(|_| anyhow::anyhow!("ZooKeeper member {} did not answer within 2 s", member + 1))?
    }

    /// Opens `n` sessions with `ttl` (one client per session, 64 at a time), kept alive by the
    /// client's own pings until the handle is dropped.
    ///
    /// # Errors
    /// Never (failed sessions are counted in [`SessionRun::errors`]).
    pub async fn open_sessions(
        &self,
        n: usize,
        ttl: Duration,
        deadline: Instant,
    ) -> anyhow::Result<(SessionRun, Box<dyn SessionHold>)> {
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
    }

    /// Starts `n` watchers of `key`, one session each (persistent watches).
    ///
    /// # Errors
    /// When a session cannot be opened or a watch not registered.
    pub async fn start_watchers(
        &self,
        n: usize,
        key: String,
        tx: mpsc::UnboundedSender<Notification>,
    ) -> anyhow::Result<Box<dyn Send>> {
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
    }
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

    /// `create` of a persistent znode; `NodeExists` after a retried call whose answer was lost
    /// is the same create having happened.
    fn create(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let p = path(&key);
            let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            with_retry(|| async {
                match self.client.create(&p, &value, &opts).await {
                    Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                    Err(e) => Err(e),
                }
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
