//! Leases: exclusive grants with strictly increasing fencing tokens; a fenced write from a
//! superseded holder is rejected with a distinct result.

use std::time::{Duration, Instant};

use conclave_client::proto as pb;
use conclave_client::{fence, Session};

use crate::{assert_no_panics, cluster};

fn fenced_put(name: &str, token: u64, key: &str, value: &str) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: vec![fence(name, token)],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::Put(pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn second_contender_takes_over_with_a_larger_token_and_stale_writes_are_fenced() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    let holder_client = c.client().await?;
    let contender_client = c.client().await?;
    let ttl = Duration::from_secs(2);
    let holder = Session::open(&holder_client, ttl).await?;
    let contender = Session::open(&contender_client, ttl).await?;

    let first = holder_client.lease_acquire("leader", holder.id(), b"jm-1", 0).await?;
    assert!(first.granted);
    let t1 = first.holder.as_ref().map(|h| h.token).unwrap_or_default();
    // Re-acquiring by the holder is idempotent.
    let again = holder_client.lease_acquire("leader", holder.id(), b"jm-1", 0).await?;
    assert_eq!(again.holder.map(|h| h.token), Some(t1));
    // The contender is told who holds it.
    let denied = contender_client.lease_acquire("leader", contender.id(), b"jm-2", 0).await?;
    assert!(!denied.granted);
    assert_eq!(
        denied.holder.as_ref().map(|h| (h.session_id, h.holder_info.clone())),
        Some((holder.id(), b"jm-1".to_vec()))
    );
    // Someone else's token cannot release it.
    let e = contender_client.lease_release("leader", t1 + 1).await.expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(holder_client.txn(fenced_put("leader", t1, "pointer", "from-jm-1")).await?.succeeded);

    // The holder's process dies: its keep-alives stop.
    drop(holder);
    let died = Instant::now();
    let granted = contender_client.lease_acquire("leader", contender.id(), b"jm-2", 10_000).await?;
    let took = died.elapsed();
    eprintln!("contender granted {took:?} after the holder stopped");
    assert!(granted.granted, "contender granted after the holder's session expired");
    assert!(took <= Duration::from_secs(4), "takeover took {took:?} (TTL 2 s + bound)");
    let t2 = granted.holder.as_ref().map(|h| h.token).unwrap_or_default();
    assert!(t2 > t1, "tokens strictly increase: {t2} <= {t1}");

    // The old holder's fenced write is rejected with the distinct fencing result.
    let stale = holder_client.txn(fenced_put("leader", t1, "pointer", "stale")).await?;
    assert!(!stale.succeeded);
    let f = stale.fencing_failure.expect("a fencing failure, not a generic compare failure");
    assert_eq!((f.lease.as_str(), f.presented_token, f.current_token), ("leader", t1, t2));
    assert_eq!(holder_client.get("pointer").await?.map(|kv| kv.value), Some(b"from-jm-1".to_vec()));
    assert!(contender_client.txn(fenced_put("leader", t2, "pointer", "from-jm-2")).await?.succeeded);

    let state = contender_client.lease_get("leader", false).await?;
    assert_eq!((state.held, state.transitions, state.last_token), (true, 1, t2));
    assert_eq!(state.holder.map(|h| (h.session_id, h.grant_revision)), Some((contender.id(), t2)));

    // Release, then a fenced write with the released token fails with current token 0.
    contender_client.lease_release("leader", t2).await?;
    let after = contender_client.txn(fenced_put("leader", t2, "pointer", "late")).await?;
    assert_eq!(after.fencing_failure.map(|f| f.current_token), Some(0));
    contender.close().await?;
    assert_no_panics(&c);
    Ok(())
}

/// A waiting acquire that the client retried (same request id) after its first attempt was
/// granted unseen: the retry first gets the original "not granted" answer from deduplication,
/// and must then return the session's existing grant instead of waiting for a release that
/// never comes (the session itself holds the lease).
#[tokio::test(flavor = "multi_thread")]
async fn retried_waiting_acquire_returns_the_grant_its_session_already_holds() -> anyhow::Result<()> {
    use conclave_client::proto::lease_client::LeaseClient;

    let c = cluster(1, &[]).await?;
    let client = c.client().await?;
    let ttl = Duration::from_secs(2);
    let holder = Session::open(&client, ttl).await?;
    let contender = Session::open(&client, ttl).await?;
    assert!(client.lease_acquire("jm", holder.id(), b"a", 0).await?.granted);

    let mut raw = LeaseClient::connect(format!("http://{}", c.node(1).client_addr)).await?;
    let attempt = |wait_ms: u64| pb::LeaseAcquireRequest {
        name: "jm".into(),
        session_id: contender.id(),
        holder_info: b"b".to_vec(),
        request_id: Some(pb::RequestId { client_id: 4242, seq: 1, first_incomplete: 1 }),
        wait_ms,
    };
    // The first attempt: denied (the holder has it); its answer is remembered for the request id.
    assert!(!raw.acquire(attempt(0)).await?.into_inner().granted);
    // Meanwhile the holder goes away and the contender's session gets the lease.
    holder.close().await?;
    let grant = client.lease_acquire("jm", contender.id(), b"b", 0).await?;
    assert!(grant.granted);
    let token = grant.holder.map(|h| h.token);
    // The retry of the first attempt, willing to wait: it must report the grant.
    let retry = raw.acquire(attempt(5_000)).await?.into_inner();
    assert!(retry.granted, "the retry reports the lease its session holds: {retry:?}");
    assert_eq!(retry.holder.map(|h| h.token), token, "the existing grant, not a new one");
    assert_no_panics(&c);
    Ok(())
}

/// A waiting acquire never outlives its caller: a caller cut off from the member it waits on
/// (no deadline reaches that member, the stream stays open) gives up and goes on through another
/// member; the stale wait's re-proposal carries the caller's request id and is refused, so the
/// lease is not taken for a caller that no longer waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_waiting_acquire_does_not_take_the_lease_for_a_caller_that_moved_on() -> anyhow::Result<()> {
    use conclave_client::proto::kv_client::KvClient;
    use conclave_client::proto::lease_client::LeaseClient;

    let c = cluster(3, &[]).await?;
    let client = c.client().await?;
    let ttl = Duration::from_secs(2);
    let holder = Session::open(&client, ttl).await?;
    let waiter = Session::open(&client, ttl).await?;
    assert!(client.lease_acquire("jm", holder.id(), b"a", 0).await?.granted);

    // The waiter's client (id 777) waits on member 1, with no deadline header and a stream that
    // stays open: from member 1's side it looks like a caller that is still there.
    let channel = |id: u64| {
        conclave_client::GrpcChannel::new(&c.node(id).client_addr, conclave_client::ChannelOptions::default())
            .map_err(anyhow::Error::msg)
    };
    let mut stale = LeaseClient::new(channel(1)?);
    let waiting = tokio::spawn(async move {
        stale
            .acquire(pb::LeaseAcquireRequest {
                name: "jm".into(),
                session_id: waiter.id(),
                holder_info: b"w".to_vec(),
                request_id: Some(pb::RequestId { client_id: 777, seq: 1, first_incomplete: 1 }),
                wait_ms: 20_000,
            })
            .await
    });
    // Wait until member 1 has answered the first attempt (not granted) and is waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The client gives up on member 1 and goes on through member 2 (its next write, seq 2).
    let mut kv = KvClient::new(channel(2)?);
    kv.put(pb::PutRequest {
        key: b"moved-on".to_vec(),
        value: b"1".to_vec(),
        request_id: Some(pb::RequestId { client_id: 777, seq: 2, first_incomplete: 2 }),
        ..Default::default()
    })
    .await?;
    // The holder leaves: the stale wait on member 1 wakes up and proposes again.
    holder.close().await?;
    let observe_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < observe_until {
        let state = client.lease_get("jm", false).await?;
        assert!(!state.held, "a stale wait took the lease for a caller that moved on: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    waiting.abort();
    assert_no_panics(&c);
    Ok(())
}
