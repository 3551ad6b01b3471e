//! Watches sharing a client's streams: many watches of one client on one stream each get
//! every change in order; a killed member's watches all resume elsewhere without loss or
//! duplicates; canceling one leaves the others; a member's per-stream limit moves the refused
//! watches to another stream; a consumer that stops reading stalls no other stream.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use conclave_client::{Client, WatchOptions, Watcher};
use conclave_testkit::wait_for;

use crate::health::{metrics_cluster, scrape, sum};
use crate::watches::collect;
use crate::{assert_no_panics, cluster};

/// Puts `keys`, returning (revision, key) of each, in order.
async fn write(client: &Client, keys: impl IntoIterator<Item = String>) -> Result<Vec<(u64, String)>> {
    let mut acked = Vec::new();
    for key in keys {
        acked.push((client.put(&key, "v").await?, key));
    }
    Ok(acked)
}

/// The events watch `i` of [`watch_many`] expects from `acked`.
fn expected(i: usize, acked: &[(u64, String)]) -> Vec<(u64, String)> {
    acked.iter().filter(|(_, k)| k.starts_with(&format!("m/{}/", i % 4))).cloned().collect()
}

/// `n` watches from `start` on one client: watch `i` selects prefix `m/<i % 4>/`.
fn watch_many(client: &Client, n: usize, start: u64) -> Vec<Watcher> {
    (0..n)
        .map(|i| {
            let opts = WatchOptions { prefix: true, start_revision: start, ..Default::default() };
            client.watch(format!("m/{}/", i % 4), opts)
        })
        .collect()
}

/// Asserts that each watch of [`watch_many`] gets exactly its share of `acked`, in order.
async fn assert_each_gets(watchers: &mut [Watcher], ids: &[usize], acked: &[(u64, String)], what: &str) -> Result<()> {
    for (w, i) in watchers.iter_mut().zip(ids) {
        let want = expected(*i, acked);
        assert_eq!(collect(w, want.len()).await?, want, "watch {i}: {what}");
    }
    Ok(())
}

fn keys(from: usize, to: usize) -> impl Iterator<Item = String> {
    (from..to).map(|j| format!("m/{}/{j:04}", j % 4))
}

/// Watch streams member `id` has opened so far, and its active watches.
async fn streams_and_watches(metrics: &BTreeMap<u64, String>, id: u64) -> Result<(f64, f64)> {
    let s = scrape(metrics, id).await?;
    Ok((sum(&s, "conclave_grpc_server_handled_total", &["Watch/Watch"]), sum(&s, "conclave_watchers", &[])))
}

#[tokio::test(flavor = "multi_thread")]
async fn many_watches_of_one_client_share_one_stream_and_each_gets_every_change_in_order() -> Result<()> {
    let (c, metrics) = metrics_cluster().await?;
    let writer = c.client().await?;
    let start = writer.put("m/start", "").await? + 1;
    let mut before = BTreeMap::new();
    for id in 1..=3 {
        before.insert(id, streams_and_watches(&metrics, id).await?.0);
    }
    let client = c.client().await?;
    let mut watchers = watch_many(&client, 40, start);
    let acked = write(&writer, keys(0, 60)).await?;
    let ids: Vec<usize> = (0..watchers.len()).collect();
    assert_each_gets(&mut watchers, &ids, &acked, "every change, in order, once").await?;
    let mut opened = 0.0;
    let mut active = 0.0;
    for id in 1..=3 {
        let (streams, watches) = streams_and_watches(&metrics, id).await?;
        opened += streams - before[&id];
        active += watches;
    }
    assert_eq!(active, 40.0, "every watch is active on the members");
    assert_eq!(opened, 1.0, "the 40 watches of one client share one stream");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_member_s_shared_watches_all_resume_elsewhere_without_loss_or_duplicates() -> Result<()> {
    let (mut c, metrics) = metrics_cluster().await?;
    let writer = c.client().await?;
    let start = writer.put("m/start", "").await? + 1;
    let client = c.client().await?;
    let mut watchers = watch_many(&client, 20, start);
    let mut acked = write(&writer, keys(0, 40)).await?;
    // The member serving the shared stream (the client's home member) holds the 20 watches.
    let home = wait_for("the watches to be registered", Duration::from_secs(20), || async {
        for id in 1..=3 {
            if streams_and_watches(&metrics, id).await.ok()?.1 == 20.0 {
                return Some(id);
            }
        }
        None
    })
    .await?;
    c.kill(home)?;
    acked.extend(write(&writer, keys(40, 80)).await?);
    c.restart(home)?;
    acked.extend(write(&writer, keys(80, 100)).await?);
    let ids: Vec<usize> = (0..watchers.len()).collect();
    assert_each_gets(&mut watchers, &ids, &acked, "no loss, no duplicates, in order").await?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_one_watch_of_a_shared_stream_leaves_the_others() -> Result<()> {
    let (c, metrics) = metrics_cluster().await?;
    let writer = c.client().await?;
    let start = writer.put("m/start", "").await? + 1;
    let client = c.client().await?;
    let mut watchers = watch_many(&client, 4, start);
    let first = write(&writer, keys(0, 4)).await?;
    assert_each_gets(&mut watchers, &[0, 1, 2, 3], &first, "gets its change").await?;
    drop(watchers.remove(1));
    wait_for("the canceled watch to end on the server", Duration::from_secs(10), || async {
        let mut active = 0.0;
        for id in 1..=3 {
            active += streams_and_watches(&metrics, id).await.ok()?.1;
        }
        (active == 3.0).then_some(())
    })
    .await?;
    let acked = write(&writer, keys(4, 12)).await?;
    assert_each_gets(&mut watchers, &[0, 2, 3], &acked, "carries on after another's cancel").await?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_over_a_member_s_per_stream_limit_move_to_other_streams() -> Result<()> {
    let c = cluster(1, &["--max-watches-per-stream", "3"]).await?;
    let writer = c.client().await?;
    let start = writer.put("m/start", "").await? + 1;
    let client = c.client().await?;
    let mut watchers = watch_many(&client, 8, start);
    let acked = write(&writer, keys(0, 16)).await?;
    let ids: Vec<usize> = (0..watchers.len()).collect();
    assert_each_gets(&mut watchers, &ids, &acked, "placed on a stream with room").await?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_stops_reading_stalls_no_other_stream_and_loses_nothing() -> Result<()> {
    let c = cluster(1, &[]).await?;
    let writer = c.client().await?;
    let start = writer.put("m/start", "").await? + 1;
    // More changes than the stalled watch's buffer and its stream's hold, and than the server's
    // shared window (1,024 revisions): the stalled watch catches up from history afterwards.
    let total = conclave_client::watch::WATCH_BUFFER + 1_100;
    let (stalled_client, reader_client) = (c.client().await?, c.client().await?);
    let mut stalled =
        stalled_client.watch("m/", WatchOptions { prefix: true, start_revision: start, ..Default::default() });
    let mut reader =
        reader_client.watch("m/", WatchOptions { prefix: true, start_revision: start, ..Default::default() });
    let keys: Vec<String> = (0..total).map(|j| format!("m/{j:05}")).collect();
    let write_all = write(&writer, keys);
    // The reader follows the writes while the stalled watch is not read at all.
    let (acked, seen) = tokio::join!(write_all, collect(&mut reader, total));
    let acked = acked?;
    assert_eq!(seen?, acked, "the reading watch got every change while the other stalled");
    assert_eq!(collect(&mut stalled, total).await?, acked, "the stalled watch lost nothing");
    assert_no_panics(&c);
    Ok(())
}
