//! Cluster-wide settings are replicated (issue 17, finding 7): members started with different
//! `--history-revisions` compact history identically (the first leader's value), also after a
//! restart from a snapshot, and a member whose flag differs says so in its log.

use std::time::Duration;

use conclave_testkit::{wait_for, Cluster, ClusterOptions};

use crate::{assert_no_panics, binary};

/// Each member's compaction point once all have applied `revision`.
async fn compact_revisions(c: &Cluster, revision: u64) -> anyhow::Result<Vec<u64>> {
    let mut points = Vec::new();
    for id in 1..=3 {
        c.wait_for_revision(id, revision, Duration::from_secs(30)).await?;
        points.push(c.status(id).await?.compact_revision);
    }
    Ok(points)
}

#[tokio::test(flavor = "multi_thread")]
async fn members_with_different_history_flags_compact_identically() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(ClusterOptions {
        nodes: 3,
        // Node 1 keeps 10 revisions, node 2 20, node 3 30.
        env: vec![("CONCLAVE_HISTORY_REVISIONS".into(), "{id}0".into())],
        extra_args: ["--snapshot-logs", "40", "--logs-kept-after-snapshot", "10"].map(String::from).to_vec(),
        binary: Some(binary()),
        ..ClusterOptions::default()
    })
    .await?;
    let client = c.client().await?;
    let mut last = 0;
    for i in 0..150 {
        last = client.put(format!("k{}", i % 10), format!("{i}")).await?;
    }
    let points = compact_revisions(&c, last).await?;
    assert!(points[0] > 0, "history was compacted: {points:?}");
    assert!(points.iter().all(|p| *p == points[0]), "compaction points differ between members: {points:?}");
    let warned = |c: &Cluster| (1..=3).filter(|id| c.node(*id).log().contains("--history-revisions differs")).count();
    let two_warned =
        wait_for("two members warning", Duration::from_secs(10), || async { (warned(&c) >= 2).then_some(()) });
    assert!(two_warned.await.is_ok(), "the two members whose flag differs warn: {} did", warned(&c));
    assert_eq!(warned(&c), 2, "the member whose flag is the cluster's value does not warn");

    // A member restarted from its snapshot keeps the cluster's value, not its flag.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(1);
    c.kill(follower)?;
    c.restart(follower)?;
    let client = c.client().await?;
    for i in 0..150 {
        last = client.put(format!("k{}", i % 10), format!("{i}")).await?;
    }
    let points = compact_revisions(&c, last).await?;
    assert!(points.iter().all(|p| *p == points[0]), "after a restart, compaction points differ: {points:?}");
    assert!(c.status(follower).await?.snapshot_index > 0, "the restarted member loaded a snapshot");
    assert_no_panics(&c);
    Ok(())
}
