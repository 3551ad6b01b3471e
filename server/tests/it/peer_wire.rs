//! The framed peer wire (`raft/network/wire.rs`) on real processes: members move their frequent
//! peer calls onto it once a peer advertises it, keep serving across a leader's `kill -9` and a
//! restart, and `--peer-wire false` keeps every call on gRPC.

use std::time::Duration;

use anyhow::Result;
use conclave_client::GetOptions;

use crate::assert_no_panics;
use crate::health::{grown, metrics_cluster_with, scrape};

const T: Duration = Duration::from_secs(30);
const WIRE_CALLS: &str = "conclave_peer_wire_calls_total";

async fn writes_through(c: &conclave_testkit::Cluster, member: u64, prefix: &str, n: usize) -> Result<()> {
    let client = c.client_of(member).await?;
    for i in 0..n {
        client.put(format!("{prefix}/{i:03}"), format!("v{i}")).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_calls_move_to_the_wire_and_survive_a_leader_kill_and_restart() -> Result<()> {
    let (mut c, metrics) = metrics_cluster_with(Vec::new()).await?;
    let leader = c.wait_for_leader(T).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let before = (scrape(&metrics, leader).await?, scrape(&metrics, follower).await?);
    writes_through(&c, follower, "before", 50).await?;
    let after = (scrape(&metrics, leader).await?, scrape(&metrics, follower).await?);
    assert!(grown(&before.0, &after.0, WIRE_CALLS) >= 50.0, "the leader's AppendEntries did not use the wire");
    assert!(grown(&before.1, &after.1, WIRE_CALLS) >= 40.0, "the follower's forwarded writes did not use the wire");

    // The leader dies: its peers' wire connections to it fail; a new leader is elected over
    // whatever way each call can travel, and writes go on through the surviving follower.
    c.kill(leader)?;
    let next = c.wait_for_leader(T).await?;
    let survivor = (1..=3).find(|id| *id != leader && *id != next).expect("a survivor");
    writes_through(&c, survivor, "after", 20).await?;

    // The old leader comes back from its data dir and catches up through the new leader.
    c.restart(leader)?;
    let back = c.client_of(leader).await?;
    conclave_testkit::wait_for("the restarted member to apply the last write", T, || async {
        let opts = GetOptions { serializable: true, ..Default::default() };
        back.get_with("after/019", opts).await.ok().filter(|r| !r.kvs.is_empty()).map(|_| ())
    })
    .await?;
    let restarted = scrape(&metrics, leader).await?;
    let was = scrape(&metrics, next).await?;
    writes_through(&c, leader, "back", 10).await?;
    let now = scrape(&metrics, next).await?;
    assert!(grown(&was, &now, WIRE_CALLS) >= 10.0, "the new leader does not replicate over the wire");
    assert!(restarted.contains_key(WIRE_CALLS), "the restarted member serves metrics");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_peer_wire_every_call_stays_on_grpc() -> Result<()> {
    let (c, metrics) = metrics_cluster_with(vec![("CONCLAVE_PEER_WIRE".into(), "false".into())]).await?;
    let leader = c.wait_for_leader(T).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    writes_through(&c, follower, "grpc", 30).await?;
    let got = c.client_of(leader).await?.get("grpc/029").await?.map(|kv| kv.value);
    assert_eq!(got, Some(b"v29".to_vec()));
    for id in 1..=3 {
        let m = scrape(&metrics, id).await?;
        assert_eq!(m.get(WIRE_CALLS).copied().unwrap_or(0.0), 0.0, "member {id} used the wire");
    }
    assert_no_panics(&c);
    Ok(())
}
