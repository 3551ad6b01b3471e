//! Prompt elections (server/src/raft/prompt_election.rs): when the leader dies under writes,
//! the surviving voter that can win campaigns first, once the leader lease has expired, so the
//! first election (the very next term) succeeds; openraft's own timer would often start with
//! the follower whose log is shorter, get rejected and need another term.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{assert_no_panics, cluster};

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill_under_writes_is_won_in_the_next_term_by_a_prompt_campaign() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let term = c.status(leader).await?.term;
    // Writers keep entries in flight, so the followers' logs often differ at the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = c.client().await?;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                let _ = client.put(format!("w{w}-{}", i % 8), "v").await;
                i += 1;
            }
        }));
    }
    c.wait_for_revision(leader, 200, Duration::from_secs(20)).await?;
    c.kill(leader)?;
    let new_leader = c.wait_for_new_leader(leader, Duration::from_secs(10)).await?;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let new_term = c.status(new_leader).await?.term;
    assert_eq!(new_term, term + 1, "the first campaign after the kill should win");
    let log = c.node(new_leader).log();
    assert!(log.contains("campaigning now"), "node {new_leader} was not elected by a prompt campaign:\n{log}");
    // Writes flow again through the new leader.
    c.client().await?.put("after", "kill").await?;
    assert_no_panics(&c);
    Ok(())
}
