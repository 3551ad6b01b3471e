//! Writes sent to a follower, on real processes: the follower forwards them to the leader, and
//! the writes that wait there together share peer calls (`raft/forward.rs`); each still gets
//! its own result.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;

use crate::assert_no_panics;
use crate::health::{grown, metrics_cluster, scrape};

const WRITES: usize = 400;

/// A 3-member cluster serving metrics, its leader and one follower.
async fn cluster_with_a_follower() -> Result<(conclave_testkit::Cluster, BTreeMap<u64, String>, u64, u64)> {
    let (c, metrics) = metrics_cluster().await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // A member registers its client address through the leader once it knows one: a forwarded
    // write of its own. Wait until the follower has applied every registration (its retry loop
    // ends then), so the tests' counts hold only their own writes.
    let probe = c.client_of(follower).await?;
    conclave_testkit::wait_for(
        "every client address registered, as the follower sees it",
        Duration::from_secs(30),
        || {
            let probe = &probe;
            async move {
                let members = probe.member_list().await.ok()?;
                (members.len() == 3 && members.iter().all(|m| !m.client_addr.is_empty())).then_some(())
            }
        },
    )
    .await?;
    Ok((c, metrics, leader, follower))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_through_a_follower_share_peer_calls_and_each_gets_its_result() -> Result<()> {
    let (c, metrics, leader, follower) = cluster_with_a_follower().await?;
    // Only the follower's address, no discovery: every write goes through it.
    let via_follower = c.client_of(follower).await?;
    let before = scrape(&metrics, follower).await?;

    let revisions: Vec<u64> = futures::stream::iter(0..WRITES)
        .map(|i| {
            let client = &via_follower;
            async move { client.put(format!("fw/{i:04}"), format!("v{i}")).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let distinct: BTreeSet<u64> = revisions.iter().copied().collect();
    assert_eq!(distinct.len(), WRITES, "every write has a revision of its own");

    let after = scrape(&metrics, follower).await?;
    let writes = grown(&before, &after, "conclave_forwarded_writes_total");
    let calls = grown(&before, &after, "conclave_forward_calls_total");
    assert_eq!(writes, WRITES as f64, "the follower forwarded every write");
    assert!(calls >= 1.0 && calls < writes, "{writes} writes went in {calls} peer calls: none shared");

    // Each write landed with its own value.
    let leader_client = c.client_of(leader).await?;
    for i in (0..WRITES).step_by(37) {
        let got = leader_client.get(format!("fw/{i:04}")).await?.map(|kv| kv.value);
        assert_eq!(got, Some(format!("v{i}").into_bytes()), "fw/{i:04}");
    }
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn linearizable_reads_through_a_follower_share_read_index_calls_and_see_every_acknowledged_write() -> Result<()> {
    let (c, metrics, leader, follower) = cluster_with_a_follower().await?;
    let via_follower = c.client_of(follower).await?;
    let via_leader = c.client_of(leader).await?;
    let before = scrape(&metrics, follower).await?;

    // Reads keep read-index calls in flight on the follower while a writer checks, write after
    // write, that a read begun after the write's acknowledgement sees it (a read that joined a
    // call sent before it would miss it).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let background = async {
        let mut reads = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let batch = futures::stream::iter(0..32)
                .map(|_| via_follower.get("reg"))
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
            for r in batch {
                r?;
                reads += 1;
            }
        }
        anyhow::Ok(reads)
    };
    let checker = async {
        for i in 0..100u32 {
            via_leader.put("reg", i.to_string()).await?;
            let seen = via_follower.get("reg").await?.map(|kv| kv.value);
            anyhow::ensure!(seen == Some(i.to_string().into_bytes()), "write {i} acknowledged, then read {seen:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        anyhow::Ok(())
    };
    let (reads, checked) = tokio::join!(background, checker);
    checked?;
    let reads = reads? + 100;

    let after = scrape(&metrics, follower).await?;
    let asked = grown(&before, &after, "conclave_forwarded_read_indexes_total");
    let calls = grown(&before, &after, "conclave_read_index_calls_total");
    // The member's readiness check asks the leader for a read index too, in the same calls.
    assert!(asked >= reads as f64, "{reads} linearizable reads on the follower, {asked} read indexes asked");
    assert!(calls >= 1.0 && calls < reads as f64, "{reads} reads went in {calls} peer calls: none shared");
    assert_no_panics(&c);
    Ok(())
}
