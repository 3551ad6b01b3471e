//! A follower applies what the leader has committed without waiting for the fsync of the
//! entries that arrive with that commit (`raft::commit_first`). A follower started with
//! `CONCLAVE_TEST_HOLD_APPENDS` holds its appends from a given index on, as a disk stuck in
//! fsync would; the other follower and the leader commit meanwhile.

use std::time::Duration;

use conclave_client::proto as pb;
use conclave_client::proto::kv_client::KvClient;
use conclave_testkit::wait_for;

use crate::{assert_no_panics, cluster};

const T: Duration = Duration::from_secs(30);
const HOLD: &str = "CONCLAVE_TEST_HOLD_APPENDS";

/// `key`'s value as member `addr` has applied it (a serializable read served there).
async fn local_value(addr: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let mut kv = KvClient::connect(format!("http://{addr}")).await?;
    let req = pb::RangeRequest {
        range: Some(pb::KeyRange { key: key.into(), ..Default::default() }),
        serializable: true,
        ..Default::default()
    };
    Ok(kv.range(req).await?.into_inner().kvs.into_iter().next().map(|kv| kv.value))
}

/// Makes the member hold appends whose last index is `from` or above (rename: never half-read).
fn hold_from(file: &std::path::Path, from: u64) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, from.to_string())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// The leader's last log index once it exceeds `above`.
async fn leader_log_above(c: &conclave_testkit::Cluster, leader: u64, above: u64) -> anyhow::Result<u64> {
    wait_for(&format!("the leader to append past index {above}"), T, || async {
        let last = c.status(leader).await.ok()?.last_log_index;
        (last > above).then_some(last)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_applies_a_committed_write_while_the_next_append_is_held() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hold");
    // Two entries in flight: c is appended on the leader while b waits for this follower.
    let mut c = cluster(3, &["--batches-in-flight", "2"]).await?;
    let leader = c.wait_for_leader(T).await?;
    let mut followers = c.nodes().iter().map(|n| n.id).filter(|&id| id != leader);
    let (f, other) = (followers.next().expect("a follower"), followers.next().expect("two followers"));
    c.stop(f)?;
    c.set_env(f, HOLD, Some(file.to_str().expect("utf-8 path")))?;
    c.restart(f)?;
    let client = c.client().await?;
    client.put("warm", "1").await?;
    let addr = c.node(f).client_addr.clone();
    wait_for("the follower to apply the warm-up write", T, || async {
        local_value(&addr, "warm").await.ok().flatten().map(|_| ())
    })
    .await?;
    // Without the other follower, this one's acknowledgement is what commits: the leader then
    // sends it the commit index together with the entries written meanwhile, as under load.
    c.kill(other)?;
    let leader = c.wait_for_leader(T).await?;

    // b's append is held here, so b waits for this follower; c is written meanwhile.
    let last = c.status(leader).await?.last_log_index;
    hold_from(&file, last + 1)?;
    let b = tokio::spawn({
        let client = client.clone();
        async move { client.put("b", "1").await }
    });
    let upto_b = leader_log_above(&c, leader, last).await?;
    let c_put = tokio::spawn({
        let client = client.clone();
        async move { client.put("c", "1").await }
    });
    leader_log_above(&c, leader, upto_b).await?;
    // Let b's append go and hold c's: the follower's acknowledgement commits b, and the leader's
    // next message brings c with the commit index covering b.
    hold_from(&file, upto_b + 1)?;
    b.await??;
    wait_for("the follower to apply b while it holds c's append", T, || async {
        local_value(&addr, "b").await.ok().flatten().map(|_| ())
    })
    .await?;
    assert_eq!(local_value(&addr, "c").await?, None, "c is still held, so it cannot be applied here yet");
    assert!(!c_put.is_finished(), "c cannot be committed while its append is held");

    std::fs::remove_file(&file)?;
    c_put.await??;
    wait_for("the follower to apply c once its append is let go", T, || async {
        local_value(&addr, "c").await.ok().flatten().map(|_| ())
    })
    .await?;
    assert_no_panics(&c);
    Ok(())
}
