//! A follower stopped while the others write past a snapshot and log compaction catches up by
//! snapshot when restarted.

use std::time::Duration;

use crate::{assert_no_panics, cluster};

#[tokio::test(flavor = "multi_thread")]
async fn lagging_follower_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut c =
        cluster(3, &["--snapshot-logs", "20", "--logs-kept-after-snapshot", "5", "--history-revisions", "50"]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let lagging = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let client = c.client().await?;
    client.put("before", "1").await?;
    c.kill(lagging)?;
    let mut last = 0;
    for i in 0..300 {
        last = client.put(format!("k{}", i % 40), format!("{i}")).await?;
    }
    let st = c.status(leader).await?;
    assert!(st.snapshot_index > 0, "leader took a snapshot");
    assert!(st.compact_revision > 0, "history was compacted");
    c.restart(lagging)?;
    c.wait_for_revision(lagging, last, Duration::from_secs(30)).await?;
    let st = c.status(lagging).await?;
    assert!(st.snapshot_index > 0, "the follower installed a snapshot");
    // Its local (serializable) view equals the leader's.
    let local = c.client_of(lagging).await?;
    let kv = local
        .get_with("k", conclave_client::GetOptions { prefix: true, serializable: true, ..Default::default() })
        .await?;
    assert_eq!(kv.count, 40);
    assert!(local.get("before").await?.is_some());
    // The follower, restarted again from its snapshot + log, is still consistent.
    c.kill(lagging)?;
    c.restart(lagging)?;
    c.wait_for_revision(lagging, last, Duration::from_secs(30)).await?;
    assert_no_panics(&c);
    Ok(())
}
