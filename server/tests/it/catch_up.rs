//! A follower that missed a burst of large writes catches up from the log once restarted
//! (issue 17, finding 4): replication requests are bounded by bytes and given a timeout that fits
//! their size, instead of timing out on the same huge range forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_testkit::wait_for;

use crate::{assert_no_panics, cluster};

const WRITERS: usize = 32;
const VALUE_BYTES: usize = 64 * 1024;
const WRITE_FOR: Duration = Duration::from_secs(6);
const CATCH_UP_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_behind_large_writes_catches_up_within_10s() -> anyhow::Result<()> {
    // A short history keeps the members' memory small; it does not change what is replicated.
    let mut c = cluster(3, &["--history-revisions", "200"]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let lagging = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let client = c.client().await?;
    client.put("before", "1").await?;
    c.kill(lagging)?;

    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + WRITE_FOR;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, acked, failed) = (client.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                let value = vec![b'a' + (w % 26) as u8; VALUE_BYTES];
                let mut i = 0;
                while Instant::now() < until {
                    match client.put(format!("w{w}/k{}", i % 8), &value).await {
                        Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("first failed write: {e}");
                            }
                            1
                        }
                    };
                    i += 1;
                }
            })
        })
        .collect();
    for w in writers {
        w.await?;
    }
    let (acked, failed) = (acked.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(acked > 0, "no write was acknowledged ({failed} failed)");

    // Every acknowledged write is applied on the leader; that index is the target.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let target = c.status(leader).await?.applied_index;
    c.restart(lagging)?;
    let restarted = Instant::now();
    let reached = wait_for(&format!("node {lagging} to apply index {target}"), CATCH_UP_WITHIN, || async {
        let s = c.status(lagging).await.ok()?;
        (s.applied_index >= target).then_some(s.applied_index)
    })
    .await;
    let behind = c.status(lagging).await.map(|s| s.applied_index).unwrap_or_default();
    eprintln!(
        "{acked} writes of {VALUE_BYTES} bytes acknowledged ({failed} failed); leader applied index {target}; \
         follower {lagging} at {behind} after {:?}",
        restarted.elapsed()
    );
    reached?;
    assert_no_panics(&c);
    Ok(())
}
