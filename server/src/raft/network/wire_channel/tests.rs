//! The wire channel against hand-driven peers on loopback.

use std::time::Duration;

use conclave_proto::internal::v1::RaftMessage;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::super::wire::{self, Header, Method};
use super::{KeepAlive, WireChannel};

fn request(payload: &[u8]) -> tonic::Request<RaftMessage> {
    tonic::Request::new(RaftMessage { format: 1, payload: payload.to_vec() })
}

/// A peer that reads the greeting, then hands each request to `answer` (which returns the
/// frames to send back, possibly none).
async fn peer(answer: impl Fn(u64, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic).await.expect("magic");
        assert_eq!(&magic, wire::MAGIC);
        let (r, mut w) = s.into_split();
        let mut r = wire::reader(r);
        let mut held = Vec::new();
        while let Ok(Some((header, payload))) = wire::read_frame(&mut r).await {
            if let Header::Request { id, .. } = header {
                for f in answer(id, payload) {
                    tokio::io::AsyncWriteExt::write_all(&mut w, &f).await.expect("write");
                }
            }
            held.push(());
        }
    });
    addr
}

/// A keep-alive quick enough for a test: a ping after 50 ms, closed after 200 ms.
const QUICK: KeepAlive = KeepAlive { interval: Duration::from_millis(50), timeout: Duration::from_millis(200) };

/// A channel to `addr` whose peer has advertised the wire.
fn on_wire(addr: &str, keep_alive: KeepAlive) -> WireChannel {
    let ch = WireChannel::new(addr, None, keep_alive);
    ch.mark_supported();
    ch
}

fn ok(id: u64, payload: &[u8]) -> Vec<u8> {
    wire::frame(&Header::Response { id, status: None, metadata: vec![], format: 1 }, payload).expect("frame")
}

/// Answers find their callers by id, whatever order they come back in; a status travels as
/// the same status.
#[tokio::test]
async fn answers_reach_their_callers_in_any_order() {
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = peer(move |id, payload| {
        if payload == b"fail" {
            let s = wire::from_status(&tonic::Status::failed_precondition("not the leader"));
            return vec![wire::frame(&Header::Response { id, status: Some(s), metadata: vec![], format: 0 }, &[])
                .expect("frame")];
        }
        // Holds the first call's answer until the second comes, then answers both, second first.
        let mut h = held.lock().expect("held");
        h.push((id, payload));
        if h.len() < 2 {
            return vec![];
        }
        h.drain(..).rev().map(|(id, p)| ok(id, &p)).collect()
    })
    .await;
    let ch = on_wire(&addr, KeepAlive::default());
    let (a, b) = tokio::join!(ch.unary(Method::Propose, request(b"one")), async {
        tokio::task::yield_now().await;
        ch.unary(Method::Propose, request(b"two")).await
    });
    assert_eq!(a.expect("first").into_inner().payload, b"one");
    assert_eq!(b.expect("second").into_inner().payload, b"two");
    let failed = ch.unary(Method::ReadIndex, request(b"fail")).await.expect_err("a status");
    assert_eq!((failed.code(), failed.message()), (tonic::Code::FailedPrecondition, "not the leader"));
    assert!(ch.supported(), "a status from the peer is not a transport failure");
}

/// A peer that stops answering (frozen, or cut off by a partition) fails the waiting call
/// within the keep-alive timeout, and the channel goes back to gRPC until advertised again.
#[tokio::test]
async fn a_silent_peer_fails_waiting_calls_after_the_keep_alive() {
    let addr = peer(|_, _| vec![]).await;
    let ch = on_wire(&addr, QUICK);
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(10), ch.unary(Method::Propose, request(b"x")))
        .await
        .expect("the call ends")
        .expect_err("no answer");
    assert_eq!(failed.code(), tonic::Code::Unavailable);
    assert!(failed.message().contains("keep-alive"), "{}", failed.message());
    assert_ne!(
        conclave_proto::errors::outcome_of(&failed),
        conclave_proto::errors::Outcome::NotApplied,
        "the peer may have acted on a call it received"
    );
    assert!(started.elapsed() >= QUICK.timeout);
    assert!(!ch.supported());
}

/// A peer that cannot be reached fails the call as not applied (nothing was sent).
#[tokio::test]
async fn an_unreachable_peer_is_not_applied() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let ch = on_wire(&addr, KeepAlive::default());
    let failed = ch.unary(Method::Propose, request(b"x")).await.expect_err("refused");
    assert_eq!(failed.code(), tonic::Code::Unavailable);
    assert_eq!(conclave_proto::errors::outcome_of(&failed), conclave_proto::errors::Outcome::NotApplied);
    assert!(failed.message().contains(&addr), "{}", failed.message());
    assert!(!ch.supported());
}

/// A caller that gives up (a timeout) leaves the connection usable for the next call.
#[tokio::test]
async fn a_call_given_up_does_not_break_the_connection() {
    let addr = peer(|id, payload| if payload == b"slow" { vec![] } else { vec![ok(id, &payload)] }).await;
    let ch = on_wire(&addr, KeepAlive::default());
    let gave_up = tokio::time::timeout(Duration::from_millis(20), ch.unary(Method::Propose, request(b"slow"))).await;
    assert!(gave_up.is_err());
    let answer = ch.unary(Method::Propose, request(b"next")).await.expect("answered");
    assert_eq!(answer.into_inner().payload, b"next");
    assert!(ch.supported());
}

/// A peer that stops answering is given up on even when no call waits long (openraft gives up
/// each heartbeat after 50 ms): the connection closes within the keep-alive timeout of the
/// first unanswered call, so the next calls do not sit on a dead connection.
#[tokio::test]
async fn a_silent_peer_is_given_up_on_though_every_caller_gives_up_first() {
    let addr = peer(|_, _| vec![]).await;
    let ch = on_wire(&addr, QUICK);
    // A heartbeat every 50 ms, each given up after 5 ms: no call is waiting most of the time.
    let mut heartbeats = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..200 {
        if !ch.supported() {
            break;
        }
        heartbeats.tick().await;
        let _ = tokio::time::timeout(Duration::from_millis(5), ch.unary(Method::AppendEntries, request(b"hb"))).await;
    }
    assert!(!ch.supported(), "the dead connection was never closed");
}
