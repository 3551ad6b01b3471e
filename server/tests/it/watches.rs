//! Watches: resume across a leader kill and across the watched node's restart with exactly the
//! writes made, in order, without duplicates; compacted revisions get the documented error.

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_client::{Client, WatchEvent, WatchOptions, Watcher};

use crate::{assert_no_panics, cluster};

/// Collects (revision, key) of every event until `count` events were seen.
pub(crate) async fn collect(watcher: &mut Watcher, count: usize) -> anyhow::Result<Vec<(u64, String)>> {
    let mut seen = Vec::new();
    while seen.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), watcher.next()).await? {
            Some(Ok(WatchEvent::Changes { revision, events })) => {
                for e in events {
                    let key = e.kv.map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).unwrap_or_default();
                    seen.push((revision, key));
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("watch ended after {} events: {other:?}", seen.len()),
        }
    }
    Ok(seen)
}

async fn write(client: &Client, from: usize, to: usize, acked: &mut BTreeMap<u64, String>) -> anyhow::Result<()> {
    for i in from..to {
        let key = format!("w/{i:05}");
        let rev = client.put(&key, "v").await?;
        acked.insert(rev, key);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_across_leader_kill_and_watched_node_restart() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let writer = c.client().await?;
    let start = writer.put("w/start", "").await? + 1;
    // One watcher following the leader (any member), one pinned to a follower.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let pinned = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let opts = WatchOptions { prefix: true, start_revision: start, ..Default::default() };
    let mut roaming = c.client().await?.watch("w/", opts.clone());
    let mut fixed = c.client_of(pinned).await?.watch("w/", opts);

    let mut acked = BTreeMap::new();
    write(&writer, 0, 50, &mut acked).await?;
    c.kill(leader)?;
    write(&writer, 50, 100, &mut acked).await?;
    c.restart(leader)?;
    // Restart the pinned node: its watcher can only resume there, from its own history.
    c.kill(pinned)?;
    write(&writer, 100, 150, &mut acked).await?;
    c.restart(pinned)?;
    write(&writer, 150, 200, &mut acked).await?;

    let expected: Vec<(u64, String)> = acked.into_iter().collect();
    for (name, watcher) in [("roaming", &mut roaming), ("pinned", &mut fixed)] {
        let seen = collect(watcher, expected.len()).await?;
        assert_eq!(seen, expected, "{name} watcher: events must equal the writes, in order, no duplicates");
    }
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_revision_and_empty_range_get_documented_errors() -> anyhow::Result<()> {
    let c = cluster(1, &["--history-revisions", "5"]).await?;
    let client = c.client().await?;
    for i in 0..30 {
        client.put("k", format!("{i}")).await?;
    }
    // The first leader proposes the --history-revisions setting after it registers: the puts
    // may all land before it applies (it compacts when it does).
    conclave_testkit::wait_for("history to be compacted", Duration::from_secs(30), || async {
        c.status(1).await.ok().filter(|s| s.compact_revision > 1).map(|_| ())
    })
    .await?;
    let mut w = client.watch("k", WatchOptions { start_revision: 1, ..Default::default() });
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
        Some(Ok(WatchEvent::Compacted { oldest })) => {
            let status = c.status(1).await?;
            assert_eq!(oldest, status.compact_revision);
            // Resuming from the oldest available revision works.
            let mut resumed = client.watch("k", WatchOptions { start_revision: oldest, ..Default::default() });
            match tokio::time::timeout(Duration::from_secs(10), resumed.next()).await? {
                Some(Ok(WatchEvent::Changes { revision, .. })) => assert_eq!(revision, oldest),
                other => anyhow::bail!("expected changes from {oldest}, got {other:?}"),
            }
        }
        other => anyhow::bail!("expected Compacted, got {other:?}"),
    }
    let mut bad = client.watch("b", WatchOptions { range_end: b"a".to_vec(), ..Default::default() });
    match tokio::time::timeout(Duration::from_secs(10), bad.next()).await? {
        Some(Err(e)) => assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}"),
        other => anyhow::bail!("expected InvalidArgument, got {other:?}"),
    }
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_notifications_on_request_and_when_idle() -> anyhow::Result<()> {
    let c = cluster(1, &["--watch-progress-ms", "200"]).await?;
    let client = c.client().await?;
    let rev = client.put("p/1", "x").await?;
    // On request: the watch is up to date with the current revision.
    let mut w = client.watch("p/", WatchOptions { prefix: true, ..Default::default() });
    let other = client.put("unrelated", "y").await?;
    w.request_progress();
    let progress = match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
        Some(Ok(WatchEvent::Progress { revision })) => revision,
        Some(Ok(e)) => anyhow::bail!("unexpected {e:?}"),
        other => anyhow::bail!("watch ended: {other:?}"),
    };
    assert!(progress >= rev && progress <= other, "progress {progress} within [{rev}, {other}]");
    // When idle, with progress_notify: notifications arrive without asking, and they are
    // never ahead of what was delivered.
    let mut idle = client.watch("p/", WatchOptions { prefix: true, progress_notify: true, ..Default::default() });
    let mut notified = Vec::new();
    while notified.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), idle.next()).await? {
            Some(Ok(WatchEvent::Progress { revision })) => notified.push(revision),
            Some(Ok(e)) => anyhow::bail!("unexpected {e:?}"),
            other => anyhow::bail!("watch ended: {other:?}"),
        }
    }
    assert!(notified.iter().all(|r| *r == other), "idle progress reports the current revision: {notified:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_a_leader_ends_its_watch_streams_and_refuses_new_ones() -> anyhow::Result<()> {
    use conclave_client::proto as pb;
    use conclave_client::proto::watch_client::WatchClient;

    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let survivor = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let create = || pb::WatchRequest {
        request: Some(pb::watch_request::Request::Create(pb::WatchCreateRequest {
            range: Some(pb::KeyRange { key: b"k".to_vec(), ..Default::default() }),
            ..Default::default()
        })),
    };
    let addr = format!("http://{}", c.node(survivor).client_addr);
    // The request side stays open (a closed request stream ends the watch stream).
    let open = |first: pb::WatchRequest| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(first);
        (tx, tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    };
    let (_keep, requests) = open(create());
    let mut stream = WatchClient::connect(addr.clone()).await?.watch(requests).await?.into_inner();
    assert!(stream.message().await?.is_some_and(|r| r.created), "the watch is created");
    // Without a quorum the survivor can never have a leader again: its history stops.
    for id in (1..=3).filter(|i| *i != survivor) {
        c.kill(id)?;
    }
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await?;
    let status = end.expect_err("the stream ends with an error, not silently or cleanly");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no leader"), "{}", status.message());
    // A new stream there is refused at once, until a leader is back.
    let (_keep_again, requests) = open(create());
    let mut again = WatchClient::connect(addr).await?.watch(requests).await?.into_inner();
    let refused = tokio::time::timeout(Duration::from_secs(2), again.message()).await?;
    assert_eq!(refused.expect_err("refused").code(), tonic::Code::Unavailable);
    assert_no_panics(&c);
    Ok(())
}
