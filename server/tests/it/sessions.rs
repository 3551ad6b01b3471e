//! Sessions: ephemeral keys survive a leader kill while keep-alives succeed, and vanish within
//! TTL + one election + a margin once they stop; watchers see the deletes.

use std::time::{Duration, Instant};

use conclave_client::{Session, SessionState, WatchEvent, WatchOptions};

use crate::{assert_no_panics, cluster};

const TTL: Duration = Duration::from_secs(2);
/// Documented bound after keep-alives stop with a stable leader: TTL + expiry tick + commit;
/// we allow one election (1 s) plus 1 s of margin on a loaded 2-core machine.
const EXPIRY_BOUND: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread")]
async fn session_survives_leader_kill_and_expires_after_keepalives_stop() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let client = c.client().await?;
    let session = Session::open(&client, TTL).await?;
    let mut states = session.subscribe();
    let created = client.put_ephemeral("eph/a", "1", session.id()).await?;
    client.put_ephemeral("eph/b", "2", session.id()).await?;
    let mut watcher =
        client.watch("eph/", WatchOptions { prefix: true, start_revision: created, ..Default::default() });

    let info = client.session_info(session.id()).await?;
    assert_eq!(info.keys.len(), 2);
    assert_eq!(info.ttl_ms, TTL.as_millis() as u64);

    // Kill the leader; the session must survive: keys stay for well over a TTL.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    c.kill(leader)?;
    c.wait_for_new_leader(leader, Duration::from_secs(15)).await?;
    let watch_until = Instant::now() + TTL * 2;
    while Instant::now() < watch_until {
        assert!(client.get("eph/a").await?.is_some(), "ephemeral key deleted while keep-alives succeed");
        assert_ne!(session.state(), SessionState::Expired);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(*states.borrow_and_update(), SessionState::Connected | SessionState::Reconnected));

    // Stop the keep-alives (as if the owner died): the keys go within the bound.
    let id = session.id();
    drop(session);
    let stopped = Instant::now();
    conclave_testkit::wait_for("ephemeral keys deleted", EXPIRY_BOUND + Duration::from_secs(5), || {
        let client = client.clone();
        async move { client.get("eph/a").await.ok().filter(Option::is_none).map(|_| ()) }
    })
    .await?;
    let took = stopped.elapsed();
    eprintln!("ephemeral keys deleted {took:?} after keep-alives stopped");
    assert!(took <= EXPIRY_BOUND, "expiry took {took:?}, documented bound {EXPIRY_BOUND:?}");
    assert!(client.get("eph/b").await?.is_none(), "all of a session's keys go together");
    let gone = client.session_info(id).await.expect_err("session is gone");
    assert_eq!(gone.code(), tonic::Code::NotFound);

    // The watcher saw both puts and then both deletes, the deletes at one revision.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), watcher.next()).await? {
            Some(Ok(WatchEvent::Changes { revision, events })) => seen.push((revision, events)),
            Some(Ok(_)) => {}
            other => anyhow::bail!("watch ended: {other:?}"),
        }
    }
    let (_, deletes) = &seen[2];
    assert_eq!(deletes.len(), 2, "both ephemeral keys deleted at one revision");
    assert!(deletes.iter().all(|e| e.r#type == conclave_client::proto::event::EventType::Delete as i32));
    c.restart(leader)?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_close_deletes_keys_and_bad_input_is_rejected() -> anyhow::Result<()> {
    let c = cluster(1, &[]).await?;
    let client = c.client().await?;
    let code = |r: Result<(), conclave_client::Error>| r.expect_err("rejected").code();
    // TTL out of range.
    let e = client.session_open(Duration::from_millis(100)).await.expect_err("too short");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("2000"), "message names the minimum: {e}");
    assert_eq!(code(client.session_open(Duration::from_secs(3601)).await.map(|_| ())), tonic::Code::InvalidArgument);
    // Unknown sessions.
    assert_eq!(code(client.put_ephemeral("k", "v", 999).await.map(|_| ())), tonic::Code::NotFound);
    assert_eq!(code(client.session_close(999).await.map(|_| ())), tonic::Code::NotFound);
    assert_eq!(code(client.lease_acquire("l", 999, b"", 0).await.map(|_| ())), tonic::Code::NotFound);
    assert!(client.get("k").await?.is_none(), "nothing written");

    let id = client.session_open(TTL).await?;
    client.put_ephemeral("s/1", "x", id).await?;
    client.put("s/plain", "y").await?;
    let before = client.session_list().await?;
    assert_eq!(before.iter().filter(|s| s.session_id == id).count(), 1);
    let closed = client.session_close(id).await?;
    assert_eq!(closed.deleted_keys, 1);
    assert!(client.get("s/1").await?.is_none());
    assert!(client.get("s/plain").await?.is_some(), "keys not bound to the session stay");
    assert!(client.session_list().await?.iter().all(|s| s.session_id != id));
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_list_pages_in_id_order() -> anyhow::Result<()> {
    let c = cluster(1, &[]).await?;
    let client = c.client().await?;
    let mut opened = Vec::new();
    for _ in 0..25 {
        opened.push(client.session_open(TTL).await?);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let (page, more) = client.session_list_page(after, 10).await?;
        pages.push((page.len(), more));
        after = page.last().map_or(after, |s| s.session_id);
        seen.extend(page.iter().map(|s| s.session_id));
        if !more {
            break;
        }
    }
    assert_eq!(pages, vec![(10, true), (10, true), (5, false)]);
    opened.sort_unstable();
    assert_eq!(seen, opened, "every session once, in id order");
    let all: Vec<u64> = client.session_list().await?.iter().map(|s| s.session_id).collect();
    assert_eq!(all, opened);
    let e = client.session_list_page(0, 10_001).await.expect_err("page over the maximum");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("10000"), "{e}");
    assert_no_panics(&c);
    Ok(())
}

/// The keep-alives of many sessions of one client share requests: 300 sessions kept alive for
/// about three rounds (TTL 3 s: a renewal each second) take far fewer `KeepAlive` calls than
/// one round of one call per session, which is what they took before coalescing (~900).
#[tokio::test(flavor = "multi_thread")]
async fn keep_alives_of_many_sessions_of_one_client_share_requests() -> anyhow::Result<()> {
    const N: usize = 300;
    let (c, metrics) = crate::health::metrics_cluster().await?;
    let client = c.client().await?;
    let opens = (0..N).map(|_| Session::open(&client, Duration::from_secs(3)));
    let sessions = futures::future::try_join_all(opens).await?;
    let calls = || async {
        let mut total = 0.0;
        for id in 1..=3 {
            let s = crate::health::scrape(&metrics, id).await?;
            total += crate::health::sum(&s, "conclave_grpc_server_handled_total", &["/conclave.v1.Session/KeepAlive"]);
        }
        anyhow::Ok(total)
    };
    let before = calls().await?;
    // A window of time is what is measured here: three renewal rounds.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let during = calls().await? - before;
    println!("{N} sessions, ~3 renewal rounds: {during} KeepAlive calls");
    // Alive on the cluster (a renewal late on a loaded machine may have shown `Suspended` for
    // a moment: not what is measured here).
    assert!(sessions.iter().all(|s| s.state() != SessionState::Expired), "a session expired");
    assert_eq!(client.session_list().await?.len(), N, "every session is alive on the cluster");
    assert!(during >= 1.0, "the keep-alives were counted");
    assert!(during < N as f64, "{during} KeepAlive calls for {N} sessions over ~3 rounds: not coalesced");
    futures::future::try_join_all(sessions.into_iter().map(Session::close)).await?;
    assert_no_panics(&c);
    Ok(())
}
