//! Serializable reads and watches on any member, with session consistency: a member serves a
//! read once it has applied the `min_revision` the client names, and says it is behind
//! otherwise; a watch "from now" starts after what its client has seen.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_client::proto as pb;
use conclave_client::proto::kv_client::KvClient;
use conclave_client::{WatchEvent, WatchOptions};
use tonic::Code;

use crate::{assert_no_panics, cluster};

fn range(key: &str, min_revision: u64) -> pb::RangeRequest {
    pb::RangeRequest {
        range: Some(pb::KeyRange { key: key.into(), ..Default::default() }),
        serializable: true,
        min_revision,
        ..Default::default()
    }
}

async fn kv_of(addr: &str) -> anyhow::Result<KvClient<tonic::transport::Channel>> {
    Ok(KvClient::connect(format!("http://{addr}")).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_member_serves_a_min_revision_read_only_once_it_has_caught_up() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let lagging = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let client = c.client().await?;
    client.put("k", "old").await?;
    c.kill(lagging)?;
    // Written while the member is down: it can only learn these after its restart.
    let mut last = 0;
    for i in 0..50 {
        last = client.put("k", format!("new-{i}")).await?;
    }
    c.restart(lagging)?;
    let addr = c.node(lagging).client_addr.clone();
    // The first read that gets through: the member must not answer before it has applied `last`.
    let resp = conclave_testkit::wait_for("a read from the restarted member", Duration::from_secs(20), || {
        let addr = addr.clone();
        async move { kv_of(&addr).await.ok()?.range(range("k", last)).await.ok().map(tonic::Response::into_inner) }
    })
    .await?;
    let header = resp.header.expect("header");
    assert_eq!(header.node_id, lagging, "served by the restarted member itself");
    assert!(header.revision >= last, "revision {} is before the requested {last}", header.revision);
    assert_eq!(resp.kvs[0].value, b"new-49");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_has_not_reached_min_revision_says_it_is_behind() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    c.wait_for_leader(Duration::from_secs(10)).await?;
    let rev = c.client().await?.put("k", "v").await?;
    let mut kv = kv_of(&c.node(1).client_addr).await?;
    let err = kv.range(range("k", rev + 1_000)).await.expect_err("no member has that revision");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("behind") && err.message().contains("min_revision"), "{}", err.message());
    // Reachable revisions are served at once.
    c.wait_for_revision(1, rev, Duration::from_secs(10)).await?;
    let ok = kv.range(range("k", rev)).await?.into_inner();
    assert_eq!(ok.kvs[0].value, b"v");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_spread_serializable_reads_and_each_sees_its_own_writes() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    c.wait_for_leader(Duration::from_secs(10)).await?;
    let mut served_by = BTreeSet::new();
    for n in 0..9 {
        let client = c.client().await?;
        let key = format!("client-{n}");
        for i in 0..20 {
            let value = format!("{i}");
            let rev = client.put(&key, &value).await?;
            // Right after the write, wherever the read is served, it sees the write.
            let resp = client.range_request(range(&key, 0)).await?;
            let header = resp.header.expect("header");
            assert!(header.revision >= rev, "read at {} after writing at {rev}", header.revision);
            assert_eq!(resp.kvs[0].value, value.as_bytes(), "client {n} read its own write {i}");
            served_by.insert(header.node_id);
        }
    }
    assert!(served_by.len() >= 2, "9 clients read from members {served_by:?} only");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_now_on_any_member_starts_after_the_clients_own_writes() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    c.wait_for_leader(Duration::from_secs(10)).await?;
    for n in 0..9 {
        // Clients take the members in turn as their home, where their watches go.
        let client = c.client().await?;
        let key = format!("w-{n}");
        let before = client.put(&key, "before the watch").await?;
        let mut w = client.watch(&key, WatchOptions::default());
        let after = client.put(&key, "after").await?;
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
            Some(Ok(WatchEvent::Changes { revision, events })) => {
                assert_eq!(revision, after, "client {n}: first change at {revision}, written at {before} and {after}");
                assert_eq!(events[0].kv.as_ref().map(|kv| kv.value.as_slice()), Some(&b"after"[..]));
            }
            other => anyhow::bail!("client {n}: {other:?}"),
        }
    }
    Ok(())
}
