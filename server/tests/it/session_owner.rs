//! `--auth`: a session belongs to the user who opened it. Another user, on any member, may not
//! keep it alive, close it, read its status or bind keys and leases to it; the owner and root
//! may. Real processes, the other user on a follower.

use std::time::Duration;

use conclave_client::proto::{self as pb, PermissionType};
use conclave_client::{Client, Reason};

use crate::assert_no_panics;
use crate::auth::{auth_cluster, client_as, denied, root, user_with_prefix};

/// Asserts a refusal for using session `id` of another user, and that it names the session.
fn not_yours<T: std::fmt::Debug>(r: Result<T, conclave_client::Error>, id: u64) {
    let e = denied(r);
    let text = e.to_string();
    assert!(text.contains(&format!("session {id}")) && text.contains("another user"), "{e}");
}

/// A transaction that puts `key` bound to `session`.
fn txn_put(key: &str, session: u64) -> pb::TxnRequest {
    let put = pb::PutRequest { key: key.into(), value: b"t".to_vec(), session_id: session, ..Default::default() };
    pb::TxnRequest {
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::Put(put)) }],
        ..Default::default()
    }
}

async fn user_on(c: &conclave_testkit::Cluster, endpoint: &str, user: &str) -> anyhow::Result<Client> {
    client_as(c, vec![endpoint.to_owned()], user, &format!("{user}-pw")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_opener_or_root_may_use_a_session() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(3, &[]).await?;
    let root = root(&c).await?;
    for user in ["a", "b"] {
        user_with_prefix(&root, user, PermissionType::Readwrite, &format!("/{user}/")).await?;
    }
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = c.nodes().iter().find(|n| n.id != leader).expect("a follower");
    let a = user_on(&c, &c.node(leader).client_addr, "a").await?;
    let b = user_on(&c, &follower.client_addr, "b").await?;

    // a's session, with an ephemeral key and a lease. Long enough not to expire on a loaded
    // machine while b tries (a keeps it alive below, b's attempts must not).
    let sa = a.session_open(Duration::from_secs(60)).await?;
    a.put_ephemeral("/a/e", "mine", sa).await?;
    assert!(a.lease_acquire("/a/l", sa, b"a", 0).await?.granted);

    // b, on a follower, may touch neither a's session nor bind its own keys / leases to it
    // (b has write on /b/, so only the session refuses).
    not_yours(b.keep_alive(&[sa]).await, sa);
    not_yours(b.session_info(sa).await, sa);
    not_yours(b.put_ephemeral("/b/e", "theirs", sa).await, sa);
    not_yours(b.txn(txn_put("/b/t", sa)).await, sa);
    not_yours(b.lease_acquire("/b/l", sa, b"b", 0).await, sa);
    not_yours(b.lease_acquire("/b/w", sa, b"b", 500).await, sa);
    not_yours(b.session_close(sa).await, sa);
    assert_eq!(b.get("/b/e").await?, None, "nothing bound to a's session was written");
    assert_eq!(b.get("/b/t").await?, None);
    assert!(!b.lease_get("/b/l", false).await?.held);

    // a's session is untouched: alive, its key and lease still there.
    assert!(a.keep_alive(&[sa]).await?.iter().all(|r| r.alive));
    let status = a.session_info(sa).await?;
    assert_eq!((status.keys, status.leases), (vec![b"/a/e".to_vec()], vec!["/a/l".to_owned()]));
    let lease = a.lease_get("/a/l", false).await?;
    assert_eq!(lease.holder.map(|h| h.session_id), Some(sa));

    // b's own session works the same way on the follower (the refusals are about ownership).
    let sb = b.session_open(Duration::from_secs(60)).await?;
    b.put_ephemeral("/b/e", "mine", sb).await?;
    assert!(b.lease_acquire("/b/l", sb, b"b", 0).await?.granted);
    assert!(b.keep_alive(&[sb]).await?.iter().all(|r| r.alive));
    not_yours(a.keep_alive(&[sa, sb]).await, sb);
    b.session_close(sb).await?;

    // The owner closes its session; root may use and close anyone's (through the follower).
    assert_eq!(a.session_close(sa).await?.released_leases, vec!["/a/l".to_owned()]);
    assert_eq!(a.get("/a/e").await?, None, "closing the session deleted its ephemeral key");
    // A session the follower does not know (here: closed) is no one's: the write goes on and
    // gets the usual answer.
    // Asked right after the owner's close was acknowledged, the follower may not have applied
    // it yet; its answer is still the closed session's, never a refusal on the stale owner.
    let e = b.session_close(sa).await.expect_err("closed already");
    assert_eq!(e.reason(), Some(Reason::SessionNotFound), "{e}");
    for _ in 0..20 {
        let s = a.session_open(Duration::from_secs(60)).await?;
        a.session_close(s).await?;
        let e = b.session_close(s).await.expect_err("closed already");
        assert_eq!(e.reason(), Some(Reason::SessionNotFound), "session {s}: {e}");
    }
    let sa2 = a.session_open(Duration::from_secs(60)).await?;
    let root_on_follower =
        client_as(&c, vec![follower.client_addr.clone()], "root", crate::auth::ROOT_PASSWORD).await?;
    assert!(root_on_follower.keep_alive(&[sa2]).await?.iter().all(|r| r.alive));
    root_on_follower.put_ephemeral("/r/e", "root's", sa2).await?;
    assert_eq!(root_on_follower.session_info(sa2).await?.keys, vec![b"/r/e".to_vec()]);
    root_on_follower.session_close(sa2).await?;
    assert_eq!(root.get("/r/e").await?, None);
    assert_no_panics(&c);
    Ok(())
}

/// A client keeping alive its own session and (by mistake) another user's: the keep-alives
/// share requests, yet only the other user's session fails; its own stays connected.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_session_in_shared_keep_alives_fails_alone() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &[]).await?;
    let root = root(&c).await?;
    for user in ["a", "b"] {
        user_with_prefix(&root, user, PermissionType::Readwrite, &format!("/{user}/")).await?;
    }
    let endpoint = c.nodes()[0].client_addr.clone();
    let a = user_on(&c, &endpoint, "a").await?;
    let b = user_on(&c, &endpoint, "b").await?;
    let ttl = Duration::from_secs(3);
    let sa = a.session_open(Duration::from_secs(60)).await?;
    // Both renew every second, so their keep-alives fall into shared requests.
    let own = conclave_client::Session::open(&b, ttl).await?;
    let foreign = conclave_client::Session::attach(&b, sa, ttl);
    let mut states = foreign.subscribe();
    conclave_testkit::wait_for("the foreign session's keep-alive to fail", Duration::from_secs(20), || {
        let seen = *states.borrow_and_update();
        async move { (seen != conclave_client::SessionState::Connected).then_some(()) }
    })
    .await?;
    assert_eq!(own.state(), conclave_client::SessionState::Connected, "b's own session failed with it");
    assert!(b.keep_alive(&[own.id()]).await?.iter().all(|r| r.alive));
    own.close().await?;
    drop(foreign);
    assert_no_panics(&c);
    Ok(())
}
