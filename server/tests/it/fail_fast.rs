//! When the leader dies, a write in flight through a follower ends promptly (ok or a retriable
//! status) instead of hanging until the client's deadline.

use std::time::{Duration, Instant};

use conclave_client::proto as pb;
use conclave_client::proto::kv_client::KvClient;
use tonic::Code;

use crate::{assert_no_panics, cluster};

#[tokio::test(flavor = "multi_thread")]
async fn write_through_follower_fails_fast_when_leader_dies() -> anyhow::Result<()> {
    in_flight_write_ends_promptly(true).await
}

/// A frozen (not killed) leader: no connection reset tells the follower anything; it must notice
/// the election of a new leader and end the forwarded write then.
#[tokio::test(flavor = "multi_thread")]
async fn write_through_follower_fails_fast_when_leader_freezes() -> anyhow::Result<()> {
    in_flight_write_ends_promptly(false).await
}

async fn in_flight_write_ends_promptly(kill: bool) -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(1);
    c.client().await?.put("warm", "up").await?;
    // Freeze the leader so the forwarded write is stuck in flight, then kill it.
    c.pause(leader)?;
    let addr = format!("http://{}", c.node(follower).client_addr);
    let write = tokio::spawn(async move {
        let mut kv = KvClient::connect(addr).await?;
        let mut req = tonic::Request::new(pb::PutRequest {
            key: b"inflight".to_vec(),
            value: b"v".to_vec(),
            prev_kv: false,
            request_id: Some(pb::RequestId { client_id: 7, seq: 1, first_incomplete: 1 }),
            session_id: 0,
        });
        req.set_timeout(Duration::from_secs(20));
        let started = Instant::now();
        let result = kv.put(req).await;
        anyhow::Ok((started.elapsed(), result.map(|_| ()).map_err(|s| s.code())))
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // let the request reach the follower
    if kill {
        c.kill(leader)?;
    }
    let (elapsed, result) = write.await??;
    eprintln!("in-flight write ended after {elapsed:?}: {result:?}");
    // A new leader is elected 0.3-0.6 s after the freeze; allow a generous margin on a loaded 2-core machine, but far
    // below the 20 s deadline a silently dropped proposal would wait for.
    assert!(elapsed < Duration::from_secs(6), "write hung for {elapsed:?}");
    match result {
        Ok(()) => {}
        Err(code) => assert_eq!(code, Code::Unavailable, "a retriable status"),
    }
    // A retry with the same request id is safe and succeeds.
    c.wait_for_new_leader(leader, Duration::from_secs(10)).await?;
    let client = c.client().await?;
    client.put("after", "x").await?;
    if !kill {
        c.resume(leader)?;
    }
    assert_no_panics(&c);
    Ok(())
}
