//! `get_and_add` from 8 concurrent clients across a leader kill: every returned value is
//! distinct and the final value accounts for every acknowledged increment.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_client::Error;

use crate::{assert_no_panics, cluster};

#[tokio::test(flavor = "multi_thread")]
async fn counter_values_stay_unique_across_leader_kill() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        // Separate clients (separate client ids), as separate job managers would be.
        let client = c.client().await?;
        tasks.push(tokio::spawn(async move {
            let mut values = Vec::new();
            let mut unknown = 0u64;
            for _ in 0..150 {
                match client.counter_add("ckpt", 1).await {
                    Ok(v) => values.push(v),
                    Err(Error::Indeterminate(_)) => unknown += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok((values, unknown))
        }));
    }
    // Kill the leader once the increments are flowing.
    let probe = c.client().await?;
    conclave_testkit::wait_for("100 increments", Duration::from_secs(30), || {
        let probe = probe.clone();
        async move { probe.counter_get("ckpt", true).await.ok().filter(|r| r.value >= 100).map(|_| ()) }
    })
    .await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    c.kill(leader)?;

    let mut all = Vec::new();
    let mut unknown = 0;
    for t in tasks {
        let (values, u) = t.await??;
        all.extend(values);
        unknown += u;
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a value was returned twice");
    let client = c.client().await?;
    let final_value = client.counter_get("ckpt", false).await?.value;
    let acked = all.len() as u64;
    assert!(final_value >= acked, "final {final_value} < acknowledged {acked}: an increment was lost");
    assert!(
        final_value <= acked + unknown,
        "final {final_value} > acknowledged {acked} + unknown {unknown}: applied twice"
    );
    assert!(all.iter().all(|v| *v < final_value));
    assert_no_panics(&c);
    Ok(())
}
