//! ZooKeeper features beyond the basics, on real processes: TTL nodes and containers deleted by
//! the leader's check, `/zookeeper/config`, the super digest, SASL refused, replies over
//! `--zk-max-response-bytes`, and native writes refused under the znode key prefix.

use std::time::Duration;

use conclave_proto::zookeeper::{op, Code};
use conclave_server::zk::codec::{open_acl, Acl, Reader};

use crate::assert_no_panics;
use crate::zookeeper::{stat, zk_addr, zk_cluster_with, Zk};

/// A new session whose connection may stay silent (this client does not ping) for 30 s.
fn new_session() -> conclave_server::zk::codec::ConnectRequest {
    conclave_server::zk::codec::ConnectRequest { timeout_ms: 30_000, ..crate::zookeeper::new_session() }
}

/// Waits until `path` no longer exists (as seen through `zk`).
async fn wait_gone(zk: &mut Zk, path: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = zk.read(op::EXISTS, path, false).await?;
        if r.err == Code::NoNode.value() {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{path} still exists after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sync`: later reads through `zk` see every write committed before it.
async fn sync(zk: &mut Zk, path: &str) -> anyhow::Result<()> {
    let r = zk.call(op::SYNC, |w| {
        w.string(path);
    });
    anyhow::ensure!(r.await?.err == 0, "sync failed");
    Ok(())
}

async fn create_ttl(zk: &mut Zk, path: &str, flags: i32, ttl: i64) -> anyhow::Result<crate::zookeeper::Reply> {
    zk.call(op::CREATE_TTL, |w| {
        w.string(path).buffer(b"t").acls(&[open_acl()]).int(flags).long(ttl);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_nodes_and_containers_go_at_the_leaders_check_and_config_lists_members() -> anyhow::Result<()> {
    let z = zk_cluster_with(&["--zk-container-check-ms", "100"]).await?;
    let mut a = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    let mut b = Zk::connect(&zk_addr(&z, 2), new_session()).await?;

    // ZooKeeper's TTL validation: a TTL mode needs 1..=2^40-1 ms, other modes none.
    for (flags, ttl) in [(5, 0), (5, -1), (6, 1 << 40), (0, 100)] {
        assert_eq!(create_ttl(&mut a, "/bad", flags, ttl).await?.err, Code::BadArguments.value(), "{flags} {ttl}");
    }
    assert_eq!(a.create(op::CREATE2, "/bad", b"", 5).await?.err, Code::BadArguments.value(), "TTL mode without TTL");

    let r = create_ttl(&mut a, "/ttl", 5, 3_000).await?;
    assert_eq!(r.err, 0);
    let mut rd = Reader::new(&r.body);
    assert_eq!(rd.string()?, "/ttl");
    let (_, _, _, _, owner, ..) = stat(&mut rd)?;
    assert_eq!(owner as u64, 0xff00_0000_0000_0bb8, "Stat.ephemeralOwner encodes the TTL like ZooKeeper");
    let r = create_ttl(&mut a, "/seq-", 6, 300).await?;
    let seq = Reader::new(&r.body).string()?;
    assert!(seq.starts_with("/seq-") && seq.len() == 15, "sequential TTL node: {seq}");
    assert_eq!(a.create(op::CREATE, "/ttl/child", b"", 0).await?.err, 0);
    assert_eq!(a.create(op::CREATE_CONTAINER, "/box", b"", 4).await?.err, 0);
    assert_eq!(a.create(op::CREATE, "/box/item", b"", 0).await?.err, 0);
    assert_eq!(a.create(op::CREATE_CONTAINER, "/unused", b"", 4).await?.err, 0);
    assert_eq!(a.create(op::CREATE, "/plain", b"", 0).await?.err, 0);
    sync(&mut b, "/box").await?; // b (member 2) reads after a's writes
    let r = b.read(op::EXISTS, "/box", false).await?;
    let (_, _, _, _, owner, ..) = stat(&mut Reader::new(&r.body))?;
    assert_eq!(owner as u64, 1 << 63, "a container's ephemeralOwner is ZooKeeper's CONTAINER_EPHEMERAL_OWNER");

    // The childless TTL node goes; the one with a child and the container with one stay until
    // emptied, then go at a later check.
    wait_gone(&mut b, &seq).await?;
    assert_eq!(b.read(op::EXISTS, "/ttl", false).await?.err, 0, "a TTL node with a child stays");
    assert_eq!(b.read(op::EXISTS, "/box", false).await?.err, 0, "a container with a child stays");
    for path in ["/ttl/child", "/box/item"] {
        let r = a.call(op::DELETE, |w| {
            w.string(path).int(-1);
        });
        assert_eq!(r.await?.err, 0);
    }
    wait_gone(&mut b, "/ttl").await?;
    wait_gone(&mut b, "/box").await?;
    assert_eq!(b.read(op::EXISTS, "/plain", false).await?.err, 0, "ordinary nodes stay");
    // The check that took /box saw /unused too: a container that never had a child stays
    // (ZooKeeper's default `znode.container.maxNeverUsedIntervalMs`, 0).
    assert_eq!(b.read(op::EXISTS, "/unused", false).await?.err, 0, "a never-used container stays");

    // /zookeeper/config: every member, ZooKeeper's dynamic-config format.
    let expected: Vec<String> = (1..=3).map(|id| format!(";{}", zk_addr(&z, id))).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let config = loop {
        let r = b.read(op::GET_DATA, "/zookeeper/config", false).await?;
        assert_eq!(r.err, 0);
        let text = String::from_utf8(Reader::new(&r.body).buffer()?.unwrap_or_default().to_vec())?;
        if expected.iter().all(|e| text.contains(e.as_str())) {
            break text;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "members missing from /zookeeper/config: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<&str> = config.lines().collect();
    assert_eq!(lines.len(), 4, "{config}");
    for (i, line) in lines[..3].iter().enumerate() {
        assert!(line.starts_with(&format!("server.{}=", i + 1)) && line.contains(":participant;"), "{line}");
    }
    assert!(lines[3].starts_with("version=") && u64::from_str_radix(&lines[3][8..], 16).is_ok(), "{config}");
    assert_no_panics(&z.c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn never_used_containers_go_after_the_configured_interval() -> anyhow::Result<()> {
    let z = zk_cluster_with(&["--zk-container-check-ms", "100", "--zk-container-never-used-ms", "300"]).await?;
    let mut a = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    let mut b = Zk::connect(&zk_addr(&z, 2), new_session()).await?;
    assert_eq!(a.create(op::CREATE_CONTAINER, "/kept", b"", 4).await?.err, 0);
    assert_eq!(a.create(op::CREATE, "/kept/item", b"", 0).await?.err, 0);
    assert_eq!(a.create(op::CREATE_CONTAINER, "/unused", b"", 4).await?.err, 0);
    wait_gone(&mut b, "/unused").await?;
    assert_eq!(b.read(op::EXISTS, "/kept", false).await?.err, 0, "a container with a child stays, however old");
    assert_no_panics(&z.c);
    Ok(())
}

/// `super:secret` as ZooKeeper's superDigest.
const SUPER_DIGEST: &str = "super:lK75jTNcA+U9vtVEw5vB51mj/w4=";

async fn add_auth(zk: &mut Zk, scheme: &str, credentials: &str) -> anyhow::Result<i32> {
    Ok(zk
        .call(op::AUTH, |w| {
            w.int(0).string(scheme).buffer(credentials.as_bytes());
        })
        .await?
        .err)
}

#[tokio::test(flavor = "multi_thread")]
async fn super_digest_sasl_reply_cap_and_native_writes_under_the_znode_prefix() -> anyhow::Result<()> {
    let z = zk_cluster_with(&["--zk-super-digest", SUPER_DIGEST, "--zk-max-response-bytes", "4096"]).await?;
    let mut alice = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    let mut other = Zk::connect(&zk_addr(&z, 2), new_session()).await?;

    // Only alice may read /guarded; the super digest passes every ACL.
    assert_eq!(add_auth(&mut alice, "digest", "alice:pw").await?, 0);
    let only_alice = Acl { perms: 31, scheme: "digest".into(), id: "alice:V55/p2T0OpjQ+low3NVAH4aLvm0=".into() };
    let r = alice.call(op::CREATE, |w| {
        w.string("/guarded").buffer(b"secret").acls(&[only_alice]).int(0);
    });
    assert_eq!(r.await?.err, 0);
    // sync: `other` (on member 2) reads after alice's create.
    sync(&mut other, "/guarded").await?;
    assert_eq!(other.read(op::GET_DATA, "/guarded", false).await?.err, Code::NoAuth.value());
    assert_eq!(add_auth(&mut other, "digest", "super:wrong").await?, 0, "any digest is accepted, as in ZooKeeper");
    assert_eq!(other.read(op::GET_DATA, "/guarded", false).await?.err, Code::NoAuth.value());
    assert_eq!(add_auth(&mut other, "digest", "super:secret").await?, 0);
    assert_eq!(other.read(op::GET_DATA, "/guarded", false).await?.err, 0, "the super user reads");
    let r = other.call(op::SET_DATA, |w| {
        w.string("/guarded").buffer(b"x").int(-1);
    });
    assert_eq!(r.await?.err, 0, "and writes (checked by apply on every replica)");

    // SASL is refused with AUTHFAILED, and the connection stays usable.
    let r = other.call(op::SASL, |w| {
        w.buffer(b"token");
    });
    assert_eq!(r.await?.err, Code::AuthFailed.value());
    assert_eq!(add_auth(&mut other, "sasl", "x").await?, Code::AuthFailed.value());
    assert_eq!(other.call(op::PING, |_| {}).await?.err, 0);

    // A reply over --zk-max-response-bytes is MARSHALLINGERROR, not a frame the client drops.
    assert_eq!(alice.create(op::CREATE, "/many", b"", 0).await?.err, 0);
    // A few multis (few requests: little exposure to a leader change on a loaded machine, which
    // closes the connection as ZooKeeper does), each reply under the cap.
    for batch in 0..5 {
        let r = alice.call(op::MULTI, |w| {
            for i in batch * 30..(batch + 1) * 30 {
                w.int(op::CREATE).bool(false).int(-1);
                let path = format!("/many/a-rather-long-child-name-{i:04}");
                w.string(&path).buffer(b"").acls(&[open_acl()]).int(0);
            }
            w.int(-1).bool(true).int(-1);
        });
        assert_eq!(r.await?.err, 0);
    }
    sync(&mut other, "/many").await?;
    for opcode in [op::GET_CHILDREN, op::GET_CHILDREN2] {
        assert_eq!(other.read(opcode, "/many", false).await?.err, Code::MarshallingError.value());
    }
    let r = other.call(op::GET_ALL_CHILDREN_NUMBER, |w| {
        w.string("/many");
    });
    assert_eq!(Reader::new(&r.await?.body).int()?, 150, "small replies still pass");
    assert_eq!(alice.create(op::CREATE, "/big", &[7u8; 5000], 0).await?.err, 0);
    sync(&mut other, "/big").await?;
    assert_eq!(other.read(op::GET_DATA, "/big", false).await?.err, Code::MarshallingError.value());
    assert_eq!(other.call(op::PING, |_| {}).await?.err, 0, "the connection stays usable");

    // Native writes cannot reach znode keys; native reads can.
    let client = z.c.client().await?;
    let refused = client.put("zk/many", "x").await.expect_err("a native put under zk/ is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.to_string().contains("ZooKeeper port"), "{refused}");
    let refused = client.delete("", true).await.expect_err("a delete of every key reaches znodes");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(client.get("zk/many").await?.is_some(), "native reads of znodes are allowed");
    client.put("zka", "fine").await?;
    assert_no_panics(&z.c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_re_attached_elsewhere_moves_and_the_old_connection_gets_session_moved() -> anyhow::Result<()> {
    let z = zk_cluster_with(&[]).await?;
    let mut old = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    assert_eq!(old.create(op::CREATE, "/before", b"", 0).await?.err, 0);
    let again = conclave_server::zk::codec::ConnectRequest {
        session_id: old.session.session_id,
        passwd: old.session.passwd.clone(),
        ..new_session()
    };
    let mut new = Zk::connect(&zk_addr(&z, 2), again).await?;
    assert_eq!(new.session.session_id, old.session.session_id, "re-attached, not a new session");
    // The stale connection: its next request is answered SESSIONMOVED, or it was already closed
    // when member 1 applied the re-attach; either way it cannot act for the session.
    match old.create(op::CREATE, "/from-old", b"", 1).await {
        Ok(r) => assert_eq!(r.err, Code::SessionMoved.value()),
        Err(e) => assert!(e.to_string().contains("end of file") || e.to_string().contains("reset"), "{e}"),
    }
    assert!(old.call(op::PING, |_| {}).await.is_err(), "the stale connection is closed");
    // The new owner serves the session; nothing was written by the stale one.
    let r = new.create(op::CREATE2, "/eph", b"", 1).await?;
    let mut rd = Reader::new(&r.body);
    assert_eq!(rd.string()?, "/eph");
    let (_, _, _, _, owner, ..) = stat(&mut rd)?;
    assert_eq!(owner, new.session.session_id);
    assert_eq!(new.read(op::EXISTS, "/from-old", false).await?.err, Code::NoNode.value());
    assert_no_panics(&z.c);
    Ok(())
}
