//! A stalled leader must not expire sessions whose clients keep sending keep-alives (issue 17,
//! finding 3): SIGSTOP a majority that includes the leader, or every node, for 1.5 x the TTL
//! under write load, SIGCONT, and every session must still be alive with its ephemeral key.

use std::time::{Duration, Instant};

use conclave_client::Client;
use tokio::sync::watch;

use crate::{assert_no_panics, cluster};

/// The minimum session TTL.
const TTL: Duration = Duration::from_secs(2);
/// How long the paused nodes stay stopped: 1.5 x TTL, longer than any deadline.
const PAUSE: Duration = Duration::from_millis(3_000);
const SESSIONS: usize = 4;
/// Between resuming the leader and the first follower: longer than the expiry tick, shorter than
/// a TTL.
const RESUME_GAP: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread")]
async fn pausing_a_majority_with_the_leader_expires_no_kept_alive_session() -> anyhow::Result<()> {
    stall(false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn pausing_every_node_expires_no_kept_alive_session() -> anyhow::Result<()> {
    stall(true).await
}

/// Pauses the leader and one follower (`all`: every node, leader first) for [`PAUSE`] while
/// clients keep their sessions alive and a writer writes; then checks for a TTL and a half that
/// every keep-alive still reports its session alive and every ephemeral key is still there.
async fn stall(all: bool) -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let term_before = c.status(leader).await?.term;
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut keepers = Vec::new();
    let mut keys = Vec::new();
    for i in 0..SESSIONS {
        // Pinned to the leader: its keep-alives wait in the leader's sockets during the stall
        // (and are forwarded if another node leads afterwards). A client that may sit on the
        // last node to resume could lose its session legitimately (no keep-alive reaching a
        // serving leader for a TTL), which is not what this test is about.
        let client = c.client_of(leader).await?;
        let id = client.session_open(TTL).await?;
        let key = format!("stall/{i}");
        client.put_ephemeral(&key, "x", id).await?;
        keys.push(key);
        keepers.push(tokio::spawn(keep_alive(client, id, stop_rx.clone())));
    }
    let writer = tokio::spawn(write_load(c.client().await?, stop_rx.clone()));

    let mut paused: Vec<u64> = vec![leader];
    paused.extend((1..=3).filter(|id| *id != leader).take(if all { 2 } else { 1 }));
    for id in &paused {
        c.pause(*id)?;
    }
    // The fault's duration, not a wait for a condition.
    tokio::time::sleep(PAUSE).await;
    // The leader first (its late expiry tick runs before any follower is back), then a follower:
    // with every node paused, these two are a quorum on their own; the last node comes back
    // once they have committed a write.
    c.resume(leader)?;
    tokio::time::sleep(RESUME_GAP).await;
    c.resume(paused[1])?;
    let probe = c.client_of(leader).await?;
    conclave_testkit::wait_for("a write committed after the stall", Duration::from_secs(15), || {
        let probe = probe.clone();
        async move { probe.put("settled", "1").await.ok() }
    })
    .await?;
    for id in &paused[2..] {
        c.resume(*id)?;
    }

    let after = c.wait_for_leader(Duration::from_secs(15)).await?;
    let term_after = c.status(after).await?.term;
    eprintln!("paused {paused:?} for {PAUSE:?}; leader {leader} (term {term_before}) -> {after} (term {term_after})");

    // The keep-alives go on: for a TTL and a half, every key must stay.
    let client = c.client().await?;
    let until = Instant::now() + TTL * 3 / 2;
    while Instant::now() < until {
        for key in &keys {
            let present = client.get(key).await?.is_some();
            assert!(present, "{key} deleted after the stall although its session's keep-alives went on");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true)?;
    for keeper in keepers {
        let (id, outcome) = keeper.await?;
        assert_eq!(outcome, Ok(()), "session {id} was expired while its client kept sending keep-alives");
    }
    let writes = writer.await?;
    eprintln!("{writes} writes acknowledged under the stall test");
    assert!(writes > 0, "the write load made progress");
    assert_no_panics(&c);
    Ok(())
}

/// Renews one session every TTL / 3 (each attempt bounded by TTL / 3, so attempts keep going out
/// while the cluster is stalled) until `stop`; returns `Err` with the time of the first
/// keep-alive answered "not alive".
async fn keep_alive(client: Client, id: u64, mut stop: watch::Receiver<bool>) -> (u64, Result<(), String>) {
    let started = Instant::now();
    while !*stop.borrow() {
        if let Ok(Ok(results)) = tokio::time::timeout(TTL / 3, client.keep_alive(&[id])).await {
            if results.iter().any(|r| r.session_id == id && !r.alive) {
                return (id, Err(format!("reported expired {:?} into the test", started.elapsed())));
            }
        }
        let _ = tokio::time::timeout(TTL / 3, stop.changed()).await;
    }
    (id, Ok(()))
}

/// Puts to one key until `stop`; returns the number of acknowledged writes.
async fn write_load(client: Client, stop: watch::Receiver<bool>) -> u64 {
    let mut acked = 0;
    while !*stop.borrow() {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), client.put("load", "v")).await {
            acked += 1;
        }
    }
    acked
}
