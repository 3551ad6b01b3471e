//! The ZooKeeper protocol on real processes: a 3-member cluster with `--zk-addr`, driven by a
//! minimal jute client written here from ZooKeeper's record layouts (kazoo's own suite runs
//! through `server/tests/zk/run_kazoo.sh`). Checks exact Stat fields and error codes, watches
//! delivered by another member before the data, sessions re-attached on another member,
//! expired sessions answered with timeout 0, stale clients refused, and four-letter words.

use std::time::Duration;

use conclave_proto::zookeeper::{event, op, Code};
use conclave_server::zk::codec::{frame, open_acl, ConnectRequest, ConnectResponse, Reader, Writer};
use conclave_testkit::{Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{assert_no_panics, binary};

/// A cluster whose members serve ZooKeeper on `port` of their own loopback IPs.
pub(crate) struct ZkCluster {
    pub(crate) c: Cluster,
    port: u16,
}

/// Clusters of one test process share loopback IPs: each gets its own ZooKeeper port.
static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

async fn zk_cluster() -> anyhow::Result<ZkCluster> {
    zk_cluster_with(&[]).await
}

/// A 3-member cluster serving ZooKeeper, with extra flags.
pub(crate) async fn zk_cluster_with(extra: &[&str]) -> anyhow::Result<ZkCluster> {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    zk_cluster_tls(extra, None).await
}

/// A 3-member cluster serving ZooKeeper, with extra flags and the client TLS the cluster's own
/// client uses (when the flags turn TLS on).
pub(crate) async fn zk_cluster_tls(
    extra: Vec<String>,
    client_tls: Option<conclave_client::ClientTls>,
) -> anyhow::Result<ZkCluster> {
    let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let port = 20_000 + (std::process::id() % 2_000) as u16 * 10 + n;
    let c = Cluster::start_with(ClusterOptions {
        nodes: 3,
        binary: Some(binary()),
        env: vec![("CONCLAVE_ZK_ADDR".into(), format!("{{ip}}:{port}"))],
        extra_args: extra,
        client_tls,
        ..ClusterOptions::default()
    })
    .await?;
    Ok(ZkCluster { c, port })
}

pub(crate) fn zk_addr(z: &ZkCluster, id: u64) -> String {
    format!("{}:{}", z.c.node(id).ip().expect("node ip"), z.port)
}

/// A reply: header fields and body.
pub(crate) struct Reply {
    pub(crate) zxid: i64,
    pub(crate) err: i32,
    pub(crate) body: Vec<u8>,
}

/// A minimal ZooKeeper client: one request at a time, events collected on the side.
pub(crate) struct Zk {
    stream: TcpStream,
    xid: i32,
    pub(crate) session: ConnectResponse,
    pub(crate) last_zxid: i64,
    pub(crate) events: Vec<(i32, String)>,
}

pub(crate) async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<Vec<u8>> {
    let len = s.read_i32().await?;
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Connects (retrying while the member is still starting) and runs the handshake.
async fn handshake(addr: &str, req: &ConnectRequest) -> anyhow::Result<(TcpStream, anyhow::Result<ConnectResponse>)> {
    let mut stream = conclave_testkit::wait_for("the ZooKeeper port", Duration::from_secs(20), || async {
        TcpStream::connect(addr).await.ok()
    })
    .await?;
    stream.write_all(&frame(&req.encode())).await?;
    let resp = match tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream)).await {
        Ok(Ok(buf)) => Ok(ConnectResponse::decode(&buf)?),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(anyhow::anyhow!("no connect response")),
    };
    Ok((stream, resp))
}

pub(crate) fn new_session() -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 10_000,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: false,
    }
}

impl Zk {
    /// Connects, retrying (as real clients do) while the member closes the connection
    /// unanswered (no leader to open the session yet, on a loaded machine).
    pub(crate) async fn connect(addr: &str, req: ConnectRequest) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (stream, session) = loop {
            let (stream, resp) = handshake(addr, &req).await?;
            match resp {
                Ok(session) => break (stream, session),
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        anyhow::ensure!(session.timeout_ms > 0, "session refused as expired");
        Ok(Self { stream, xid: 0, session, last_zxid: req.last_zxid_seen, events: Vec::new() })
    }

    pub(crate) async fn call(&mut self, opcode: i32, body: impl FnOnce(&mut Writer)) -> anyhow::Result<Reply> {
        self.xid += 1;
        let mut w = Writer::default();
        w.int(self.xid).int(opcode);
        body(&mut w);
        self.stream.write_all(&frame(&w.into_inner())).await?;
        loop {
            let buf = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.stream)).await??;
            let mut r = Reader::new(&buf);
            let (xid, zxid, err) = (r.int()?, r.long()?, r.int()?);
            if xid == -1 {
                let (kind, _state, path) = (r.int()?, r.int()?, r.string()?);
                self.events.push((kind, path));
                continue;
            }
            anyhow::ensure!(xid == self.xid, "reply xid {xid} for request {}", self.xid);
            anyhow::ensure!(zxid >= self.last_zxid, "zxid went backwards: {zxid} < {}", self.last_zxid);
            self.last_zxid = zxid;
            let start = buf.len() - r.remaining();
            return Ok(Reply { zxid, err, body: buf[start..].to_vec() });
        }
    }

    pub(crate) async fn create(&mut self, opcode: i32, path: &str, data: &[u8], flags: i32) -> anyhow::Result<Reply> {
        self.call(opcode, |w| {
            w.string(path).buffer(data).acls(&[open_acl()]).int(flags);
        })
        .await
    }

    pub(crate) async fn read(&mut self, opcode: i32, path: &str, watch: bool) -> anyhow::Result<Reply> {
        self.call(opcode, |w| {
            w.string(path).bool(watch);
        })
        .await
    }
}

/// Stat as (czxid, mzxid, version, cversion, ephemeralOwner, dataLength, numChildren, pzxid).
pub(crate) type StatFields = (i64, i64, i32, i32, i64, i32, i32, i64);

pub(crate) fn stat(r: &mut Reader<'_>) -> anyhow::Result<StatFields> {
    let (czxid, mzxid, _ctime, _mtime) = (r.long()?, r.long()?, r.long()?, r.long()?);
    let (version, cversion, _aversion, owner) = (r.int()?, r.int()?, r.int()?, r.long()?);
    Ok((czxid, mzxid, version, cversion, owner, r.int()?, r.int()?, r.long()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_clients_get_exact_stats_codes_watches_and_sessions() -> anyhow::Result<()> {
    let z = zk_cluster().await?;
    let c = &z;
    let mut a = Zk::connect(&zk_addr(c, 1), new_session()).await?;
    assert_eq!(a.session.timeout_ms, 10_000, "10 s is inside [2, 20] ticks of 2 s");

    // create2 returns the path and an exact Stat.
    let r = a.create(op::CREATE2, "/app", b"v0", 0).await?;
    assert_eq!(r.err, 0);
    let mut rd = Reader::new(&r.body);
    assert_eq!(rd.string()?, "/app");
    let (czxid, mzxid, version, cversion, owner, len, children, pzxid) = stat(&mut rd)?;
    assert_eq!((czxid, mzxid, pzxid, r.zxid), (czxid, czxid, czxid, czxid), "created at the reply's zxid");
    assert_eq!((version, cversion, owner, len, children), (0, 0, 0, 2, 0));

    // Ephemeral sequential children: 10-digit suffix from the parent's cversion.
    let r = a.create(op::CREATE2, "/app/lock-", b"", 3).await?;
    let mut rd = Reader::new(&r.body);
    assert_eq!(rd.string()?, "/app/lock-0000000000");
    let (_, _, _, _, owner, ..) = stat(&mut rd)?;
    assert_eq!(owner, a.session.session_id, "ephemeralOwner is the session");
    let r = a.read(op::GET_CHILDREN2, "/app", false).await?;
    let mut rd = Reader::new(&r.body);
    assert_eq!(rd.strings()?, vec!["lock-0000000000"]);
    let (_, mzxid2, _, cversion, _, _, children, pzxid) = stat(&mut rd)?;
    assert_eq!((mzxid2, cversion, children), (mzxid, 1, 1), "a child changes cversion, not mzxid");
    assert!(pzxid > czxid);

    // ZooKeeper's own error codes; the connection stays usable after each.
    assert_eq!(a.create(op::CREATE2, "/app", b"", 0).await?.err, Code::NodeExists.value());
    assert_eq!(a.create(op::CREATE, "/none/x", b"", 0).await?.err, Code::NoNode.value());
    assert_eq!(a.create(op::CREATE, "bad", b"", 0).await?.err, Code::BadArguments.value());
    let delete = |v: i32| {
        move |w: &mut Writer| {
            w.string("/app").int(v);
        }
    };
    assert_eq!(a.call(op::DELETE, delete(-1)).await?.err, Code::NotEmpty.value());
    assert_eq!(a.call(op::DELETE, delete(7)).await?.err, Code::BadVersion.value());
    assert_eq!(a.call(999, |_| {}).await?.err, Code::Unimplemented.value());
    assert_eq!(a.call(op::PING, |_| {}).await?.err, 0);

    // A watch set through member 2 fires before member 2 answers with the newer data.
    let mut b = Zk::connect(&zk_addr(c, 2), new_session()).await?;
    let synced = b.call(op::SYNC, |w| {
        w.string("/app");
    });
    assert_eq!(synced.await?.err, 0, "a new session on member 2 syncs before reading A's writes");
    assert_eq!(b.read(op::GET_DATA, "/app", true).await?.err, 0);
    let set = a.call(op::SET_DATA, |w| {
        w.string("/app").buffer(b"v1").int(0);
    });
    assert_eq!(set.await?.err, 0);
    let again = a.call(op::SET_DATA, |w| {
        w.string("/app").buffer(b"v2").int(0);
    });
    assert_eq!(again.await?.err, Code::BadVersion.value(), "versioned setData");
    // Member 2 may not have applied the write yet (ZooKeeper allows that stale read): sync, then
    // read. The event must arrive before the first reply at the new zxid.
    let synced = b.call(op::SYNC, |w| {
        w.string("/app");
    });
    assert_eq!(synced.await?.err, 0);
    assert_eq!(b.events, vec![(event::NODE_DATA_CHANGED, "/app".to_string())], "the event came before the data");
    let r = b.read(op::GET_DATA, "/app", false).await?;
    assert_eq!(Reader::new(&r.body).buffer()?.map(<[u8]>::to_vec), Some(b"v1".to_vec()));

    // A failed multi changes nothing and reports per-op codes.
    let r = a
        .call(op::MULTI, |w| {
            w.int(op::CREATE).bool(false).int(-1).string("/m").buffer(b"").acls(&[open_acl()]).int(0);
            w.int(op::CHECK).bool(false).int(-1).string("/app").int(99);
            w.int(-1).bool(true).int(-1);
        })
        .await?;
    assert_eq!(r.err, 0);
    let mut rd = Reader::new(&r.body);
    let mut codes = Vec::new();
    loop {
        let (kind, done, err) = (rd.int()?, rd.bool()?, rd.int()?);
        if done {
            break;
        }
        assert_eq!(kind, -1);
        codes.push((err, rd.int()?));
    }
    assert_eq!(codes, vec![(0, 0), (Code::BadVersion.value(), Code::BadVersion.value())]);
    assert_eq!(b.read(op::EXISTS, "/m", false).await?.err, Code::NoNode.value());

    // Re-attach A's session on member 3 (password checked); a wrong password is expired.
    let reattach = ConnectRequest {
        session_id: a.session.session_id,
        passwd: a.session.passwd.clone(),
        last_zxid_seen: a.last_zxid,
        ..new_session()
    };
    let mut a3 = Zk::connect(&zk_addr(c, 3), reattach.clone()).await?;
    assert_eq!((a3.session.session_id, a3.session.timeout_ms), (a.session.session_id, 10_000));
    let bad = ConnectRequest { passwd: vec![1; 16], ..reattach.clone() };
    let (_, resp) = handshake(&zk_addr(c, 2), &bad).await?;
    assert_eq!(resp?.timeout_ms, 0, "a wrong password is answered as expired");

    // A client that has seen more than the cluster ever wrote is refused (closed, no answer).
    let ahead = ConnectRequest { last_zxid_seen: 1 << 40, ..new_session() };
    let (_, resp) = handshake(&zk_addr(c, 1), &ahead).await?;
    assert!(resp.is_err(), "a stale member must not accept a client that saw newer state");

    // Closing the session deletes its ephemerals; the old session is then expired everywhere.
    b.read(op::GET_CHILDREN, "/app", true).await?;
    assert_eq!(a3.call(op::CLOSE_SESSION, |_| {}).await?.err, 0);
    // Another client sees it after a sync (ZooKeeper's rule for reads across sessions).
    let synced = b.call(op::SYNC, |w| {
        w.string("/app");
    });
    assert_eq!(synced.await?.err, 0);
    let r = b.read(op::GET_CHILDREN2, "/app", false).await?;
    assert_eq!(Reader::new(&r.body).strings()?, Vec::<String>::new());
    assert!(b.events.contains(&(event::NODE_CHILDREN_CHANGED, "/app".to_string())));
    for id in 1..=3 {
        let (_, resp) = handshake(&zk_addr(c, id), &reattach).await?;
        assert_eq!(resp?.timeout_ms, 0, "member {id} answers the closed session as expired");
    }

    // Four-letter words on the same port.
    for (word, expect) in [("ruok", "imok"), ("envi", "zookeeper.version=3.9."), ("srvr", "Mode: ")] {
        let mut s = TcpStream::connect(zk_addr(c, 2)).await?;
        s.write_all(word.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        assert!(out.contains(expect), "{word}: {out}");
    }
    assert_no_panics(&z.c);
    Ok(())
}

/// A ZooKeeper session connected to a follower survives a leader kill while its client pings
/// (ZooKeeper ephemerals stay), and its ephemerals go within the timeout once the client is gone.
#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_sessions_survive_a_leader_kill_and_expire_when_the_client_goes() -> anyhow::Result<()> {
    let mut z = zk_cluster().await?;
    let leader = z.c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let watcher_node = (1..=3).find(|id| *id != leader && *id != follower).expect("a third member");
    let mut a = Zk::connect(&zk_addr(&z, follower), ConnectRequest { timeout_ms: 4_000, ..new_session() }).await?;
    assert_eq!(a.session.timeout_ms, 4_000);
    assert_eq!(a.create(op::CREATE, "/owner", b"a", 1).await?.err, 0);

    z.c.kill(leader)?;
    z.c.wait_for_new_leader(leader, Duration::from_secs(15)).await?;
    // Ping for two timeouts: the session (and its ephemeral) must live on.
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < until {
        assert_eq!(a.call(op::PING, |_| {}).await?.err, 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = a.read(op::EXISTS, "/owner", false).await?;
    assert_eq!(r.err, 0, "the ephemeral outlived the leader change");
    let (_, _, _, _, owner, ..) = stat(&mut Reader::new(&r.body))?;
    assert_eq!(owner, a.session.session_id);

    // The client goes silent: its ephemeral is deleted and a watcher elsewhere is told.
    let mut w = Zk::connect(&zk_addr(&z, watcher_node), new_session()).await?;
    let synced = w.call(op::SYNC, |b| {
        b.string("/owner");
    });
    assert_eq!(synced.await?.err, 0);
    assert_eq!(w.read(op::EXISTS, "/owner", true).await?.err, 0);
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while w.read(op::EXISTS, "/owner", false).await?.err != Code::NoNode.value() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the ephemeral outlived its silent client");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.events.contains(&(event::NODE_DELETED, "/owner".to_string())), "events: {:?}", w.events);
    assert_no_panics(&z.c);
    Ok(())
}

/// Watches survive a reconnect to another member: `setWatches` from the client's last zxid
/// fires what changed while it was away (data, exists and child watches), and re-registers the
/// rest so later changes fire too.
#[tokio::test(flavor = "multi_thread")]
async fn set_watches_after_a_reconnect_replays_what_changed_meanwhile() -> anyhow::Result<()> {
    let z = zk_cluster().await?;
    let mut a = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    for path in ["/w", "/still", "/dir"] {
        assert_eq!(a.create(op::CREATE, path, b"0", 0).await?.err, 0);
    }
    let seen = a.last_zxid;
    let session = ConnectRequest {
        session_id: a.session.session_id,
        passwd: a.session.passwd.clone(),
        last_zxid_seen: seen,
        ..new_session()
    };
    drop(a);
    // While the client is away: /w changes, /new appears, /dir gets a child.
    let mut b = Zk::connect(&zk_addr(&z, 3), new_session()).await?;
    let set = b.call(op::SET_DATA, |w| {
        w.string("/w").buffer(b"1").int(-1);
    });
    assert_eq!(set.await?.err, 0);
    assert_eq!(b.create(op::CREATE, "/new", b"", 0).await?.err, 0);
    assert_eq!(b.create(op::CREATE, "/dir/c", b"", 0).await?.err, 0);

    let mut a = Zk::connect(&zk_addr(&z, 2), session).await?;
    let r = a
        .call(op::SET_WATCHES, |w| {
            w.long(seen).strings(&["/w", "/still"]).strings(&["/new", "/absent"]).strings(&["/dir"]);
        })
        .await?;
    assert_eq!(r.err, 0);
    // Member 2 may apply B's writes after answering: what setWatches did not replay, the
    // re-registered watches fire from history. Either way exactly these three events come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.events.len() < 3 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "missed changes: {:?}", a.events);
        a.call(op::PING, |_| {}).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = a.events.clone();
    events.sort();
    let expected = vec![
        (event::NODE_CREATED, "/new".to_string()),
        (event::NODE_DATA_CHANGED, "/w".to_string()),
        (event::NODE_CHILDREN_CHANGED, "/dir".to_string()),
    ];
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(events, sorted, "exactly what changed since zxid {seen}");
    // The unchanged ones were registered again: a later change fires them.
    let set = b.call(op::SET_DATA, |w| {
        w.string("/still").buffer(b"1").int(-1);
    });
    assert_eq!(set.await?.err, 0);
    assert_eq!(b.create(op::CREATE, "/absent", b"", 0).await?.err, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.events.len() < 5 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "re-registered watches did not fire: {:?}", a.events);
        a.call(op::PING, |_| {}).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.events[3..].iter().cloned().collect::<std::collections::BTreeSet<_>>(),
        [(event::NODE_DATA_CHANGED, "/still".to_string()), (event::NODE_CREATED, "/absent".to_string())].into()
    );
    assert_no_panics(&z.c);
    Ok(())
}

/// Malformed input never panics or stalls the member: garbage before and after the handshake,
/// truncated records and oversized frames end that connection (or get MARSHALLINGERROR) while
/// other clients are served.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_are_refused_without_harm() -> anyhow::Result<()> {
    let z = zk_cluster().await?;
    let addr = zk_addr(&z, 1);
    for junk in
        [vec![0xff, 0xff, 0xff, 0xf0], vec![0x7f, 0xff, 0xff, 0xff], vec![0, 0, 0, 3, 1, 2, 3], b"xyzw".to_vec()]
    {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(&junk).await?;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the member closed the connection after {junk:?}");
    }
    let mut a = Zk::connect(&addr, new_session()).await?;
    // A create record cut short, and a getData with trailing junk in a short frame.
    assert_eq!(
        a.call(op::CREATE, |w| {
            w.string("/cut");
        })
        .await?
        .err,
        Code::MarshallingError.value()
    );
    assert_eq!(
        a.call(op::GET_DATA, |w| {
            w.int(-7);
        })
        .await?
        .err,
        Code::MarshallingError.value()
    );
    assert_eq!(a.create(op::CREATE, "/fine", b"", 0).await?.err, 0, "the connection still works");
    // A frame over jute.maxbuffer ends this connection only.
    a.stream.write_all(&(2 * 1024 * 1024i32).to_be_bytes()).await?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), a.stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an oversized frame closes the connection");
    let mut b = Zk::connect(&addr, new_session()).await?;
    assert_eq!(b.read(op::EXISTS, "/fine", false).await?.err, 0);
    assert_no_panics(&z.c);
    Ok(())
}
