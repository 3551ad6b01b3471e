//! Every acknowledged write survives kill -9 of the leader, and of every node at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{assert_no_panics, cluster};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill_keeps_writes_and_restarted_node_catches_up() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let client = c.client().await?;
    for i in 0..50 {
        client.put(format!("k{i}"), format!("v{i}")).await?;
    }
    let leader = c.wait_for_leader(T).await?;
    c.kill(leader)?;
    let new_leader = c.wait_for_new_leader(leader, T).await?;
    assert_ne!(new_leader, leader);
    // The new leader serves writes; old data is intact.
    let mut last = 0;
    for i in 50..80 {
        last = client.put(format!("k{i}"), format!("v{i}")).await?;
    }
    for i in 0..80 {
        let kv = client.get(format!("k{i}")).await?;
        assert_eq!(kv.map(|kv| kv.value), Some(format!("v{i}").into_bytes()), "k{i}");
    }
    // The killed node restarts from its data dir and reaches the same revision.
    c.restart(leader)?;
    c.wait_for_revision(leader, last, T).await?;
    let st = c.status(leader).await?;
    assert_eq!(st.revision, last);
    assert_eq!(st.leader_id, new_leader);
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_all_during_write_load_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let client = c.client().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = client.clone();
        let stop = stop.clone();
        let acked_so_far = acked_so_far.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            // Bounded: at most 100k writes per writer, and it stops when the cluster dies.
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                let key = format!("w{w}/{i}");
                match client.put(&key, key.as_bytes()).await {
                    Ok(rev) => {
                        acked.push((key, rev));
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
                i += 1;
            }
            acked
        }));
    }
    // Let the load build up until enough writes were acknowledged (to the writers: a count
    // read on the server would include writes whose answers are still in flight).
    conclave_testkit::wait_for("200 acknowledged writes", T, || {
        let n = acked_so_far.load(Ordering::Relaxed);
        async move { (n >= 200).then_some(()) }
    })
    .await?;
    c.kill_all();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await?);
    }
    assert!(acked.len() >= 200, "only {} writes acknowledged", acked.len());
    let max_rev = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);
    for id in 1..=3 {
        c.restart(id)?;
    }
    c.wait_for_leader(T).await?;
    let client = c.client().await?;
    for (key, rev) in &acked {
        let kv = client.get(key).await?;
        let kv = kv.unwrap_or_else(|| panic!("acknowledged write {key} at revision {rev} was lost"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
    }
    let next = client.put("after-restart", "x").await?;
    assert!(next > max_rev, "revisions continue upward: {next} <= {max_rev}");
    assert_no_panics(&c);
    Ok(())
}
