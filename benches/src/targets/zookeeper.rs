//! ZooKeeper 3.8: a 3-member ensemble of `zkServer.sh start-foreground` on 127.0.2.x, driven by
//! the `zookeeper-client` crate (a native async client speaking ZooKeeper's protocol) through
//! [`ZkClients`], the client side shared with Conclave's ZooKeeper port.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::zk_client::ZkClients;
use super::{free_ports, BoxFut, ChildGuard, Kv, Notification, SessionHold, SessionRun, Target, TargetKind};

/// Where Debian's `zookeeper` package installs the server script.
pub const DEFAULT_SCRIPT: &str = "/usr/share/zookeeper/bin/zkServer.sh";

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
    zk: ZkClients,
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
            let ports = free_ports(ip, 3)?;
            servers.push(format!("server.{}={ip}:{}:{}", i + 1, ports[0], ports[1]));
            clients.push((ip, ports[2]));
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
        let endpoints: Vec<String> = members.iter().map(|m| m.client_addr.clone()).collect();
        let data_dirs = members.iter().map(|m| m.data_dir.clone()).collect();
        let zk = ZkClients::new(endpoints.clone());
        let target = Self { script: script.to_path_buf(), members: Mutex::new(members), endpoints, data_dirs, zk };
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
        Box::pin(self.zk.client(n))
    }

    fn client_on(&self, member: usize) -> BoxFut<'_, Option<anyhow::Result<Arc<dyn Kv>>>> {
        Box::pin(async move { Some(self.zk.client_on(member).await) })
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

    /// Snapshots, transaction logs and epoch files go; `myid` (configuration) stays.
    fn wipe(&self, member: usize) -> BoxFut<'_, anyhow::Result<String>> {
        Box::pin(async move {
            self.kill(member)?;
            super::empty_dir(&self.data_dirs[member], &["myid"])?;
            Ok("ZooKeeper: snapshot and transaction-log files deleted (myid kept), member restarted with its \
                config: it syncs the whole state from the leader"
                .to_owned())
        })
    }

    fn start_wiped(&self, member: usize) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move { self.spawn(member) })
    }

    fn read_local<'a>(&'a self, member: usize, key: &'a str) -> BoxFut<'a, anyhow::Result<bool>> {
        Box::pin(self.zk.read_on(member, key))
    }

    /// Waits until the ensemble serves with one leader; notes the member's snapshot and log
    /// files (ZooKeeper logs nothing here, having no SLF4J binding, to tell SNAP from DIFF): a
    /// snapshot at the leader's zxid and no transaction log before it is a SNAP.
    fn rebuilt(&self, member: usize) -> BoxFut<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            self.wait_whole(Duration::from_secs(90)).await?;
            let zxids = |prefix: &str| -> Vec<u64> {
                std::fs::read_dir(self.data_dirs[member].join("version-2")).map_or_else(
                    |_| Vec::new(),
                    |d| {
                        d.filter_map(Result::ok)
                            .filter_map(|e| {
                                let name = e.file_name().to_string_lossy().into_owned();
                                u64::from_str_radix(name.strip_prefix(prefix)?, 16).ok()
                            })
                            .collect()
                    },
                )
            };
            let snapshot = zxids("snapshot.").into_iter().max().unwrap_or(0);
            let first_log = zxids("log.").into_iter().min();
            Ok(vec![match first_log {
                _ if snapshot == 0 => "ZooKeeper: the member holds no snapshot but the empty one".to_owned(),
                Some(l) if l <= snapshot => format!(
                    "ZooKeeper: the member holds a snapshot at zxid {snapshot:#x} and a transaction log from \
                     {l:#x} (before it: replayed, a DIFF)"
                ),
                _ => format!(
                    "ZooKeeper: the member holds a snapshot at zxid {snapshot:#x} and no transaction log before it: \
                     it received the leader's snapshot (SNAP)"
                ),
            }])
        })
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
