//! The leader's read lease (`raft/read_lease.rs`) on real processes: linearizable reads on the
//! leader are answered without a heartbeat round while a quorum has recently acknowledged it,
//! none is answered once the voters' lease has run out without a quorum, and `--read-lease
//! false` turns it off.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::assert_no_panics;
use crate::health::{grown, metrics_cluster, metrics_cluster_with, scrape};

const READS: usize = 200;
/// openraft's leader lease with the default election timeout (2 x 150 ms): a voter that heard
/// from the leader refuses to vote for this long.
const VOTER_LEASE: Duration = Duration::from_millis(300);

/// Reads `lease/k` `READS` times on the leader; returns how many read indexes the leader
/// answered from its lease meanwhile.
async fn leased_reads(env: Vec<(String, String)>) -> Result<f64> {
    let (c, metrics) = metrics_cluster_with(env).await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let client = c.client_of(leader).await?;
    client.put("lease/k", "v1").await?;
    let before = scrape(&metrics, leader).await?;
    for _ in 0..READS {
        assert_eq!(client.get("lease/k").await?.map(|kv| kv.value), Some(b"v1".to_vec()));
    }
    let after = scrape(&metrics, leader).await?;
    assert_no_panics(&c);
    Ok(grown(&before, &after, "conclave_read_index_leased_total"))
}

#[tokio::test(flavor = "multi_thread")]
async fn linearizable_reads_on_the_leader_are_answered_from_the_lease() -> Result<()> {
    let leased = leased_reads(Vec::new()).await?;
    // Heartbeats renew the lease every 50 ms; a read may still miss it on a loaded machine.
    assert!(leased >= (READS / 2) as f64, "only {leased} of {READS} reads were answered from the lease");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_lease_off_every_read_confirms_with_a_quorum() -> Result<()> {
    let leased = leased_reads(vec![("CONCLAVE_READ_LEASE".into(), "false".into())]).await?;
    assert_eq!(leased, 0.0, "--read-lease false, yet reads were answered from the lease");
    Ok(())
}

/// The lease never outlives the voters' own: with both followers stopped (SIGSTOP), a read on
/// the leader issued after the voters' lease has run out is not answered until they return.
#[tokio::test(flavor = "multi_thread")]
async fn no_read_is_answered_from_an_expired_lease() -> Result<()> {
    let (mut c, _metrics) = metrics_cluster().await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let client = c.client_of(leader).await?;
    client.put("lease/k", "v1").await?;
    assert!(client.get("lease/k").await?.is_some());
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        c.pause(*id)?;
    }
    let paused = Instant::now();
    // The condition is time itself: the voters' lease must have run out.
    tokio::time::sleep_until((paused + VOTER_LEASE).into()).await;
    let read = tokio::time::timeout(Duration::from_secs(1), client.get("lease/k")).await;
    let answered = matches!(read, Ok(Ok(_)));
    for id in &followers {
        c.resume(*id)?;
    }
    assert!(!answered, "a linearizable read was answered {:?} after the followers stopped", paused.elapsed());
    let back = conclave_testkit::wait_for("a read once the followers are back", Duration::from_secs(30), || {
        let client = &client;
        async move { client.get("lease/k").await.ok().flatten() }
    })
    .await?;
    assert_eq!(back.value, b"v1".to_vec());
    assert_no_panics(&c);
    Ok(())
}
