//! Hostile input on the peer port: crafted messages whose length prefixes claim far more bytes
//! than they carry are refused with `INVALID_ARGUMENT`, and the node keeps serving.
//!
//! Before decoding was bounded, the first message below (15 bytes on the wire) made the node
//! allocate 4 EiB and abort: its log ended with "memory allocation of 4611686018427387904 bytes
//! failed" and a backtrace, and the client saw "transport error" (broken pipe).

use std::time::Duration;

use conclave_proto::internal::v1::raft_peer_client::RaftPeerClient;
use conclave_proto::internal::v1::RaftMessage;
use tonic::Code;

use crate::{assert_no_panics, cluster};

/// bincode 2 (standard config) varint: `0xFD` then a little-endian u64.
fn varint_u64(v: u64) -> Vec<u8> {
    let mut out = vec![0xFD];
    out.extend_from_slice(&v.to_le_bytes());
    out
}

const HUGE: u64 = 1 << 62;

#[tokio::test(flavor = "multi_thread")]
async fn crafted_peer_messages_are_refused_and_the_node_survives() -> anyhow::Result<()> {
    let mut c = cluster(1, &[]).await?;
    let client = c.client().await?;
    client.put("before", "1").await?;
    let mut peer = RaftPeerClient::connect(format!("http://{}", c.node(1).peer_addr)).await?;

    // Proposal { request_id: None, command: Put { key: <32 TiB claimed> ... } }.
    let put_with_huge_key = [vec![0u8, 0u8], varint_u64(HUGE)].concat();
    // Proposal { request_id: None, command: CounterAdd { name: <32 TiB string> } } (variant 3).
    let counter_with_huge_name = [vec![0u8, 3u8], varint_u64(HUGE)].concat();
    // SessionTimesRequest { ids: <2^45 ids> }.
    let sessions_with_huge_list = varint_u64(HUGE);
    // A length beyond usize on the wire (u128 marker) and plain garbage.
    let garbage = vec![0xFF; 20];

    let msg = |payload: &Vec<u8>| RaftMessage { format: 1, payload: payload.clone() };
    for payload in [&put_with_huge_key, &counter_with_huge_name, &garbage] {
        let status = peer.propose(msg(payload)).await.expect_err("a crafted proposal must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("undecodable peer message"), "{status:?}");
    }
    let status = peer.sessions(msg(&sessions_with_huge_list)).await.expect_err("crafted sessions call");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for payload in [&put_with_huge_key, &sessions_with_huge_list, &garbage] {
        let status = peer.append_entries(msg(payload)).await.expect_err("crafted append");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let status = peer.install_snapshot(msg(payload)).await.expect_err("crafted snapshot chunk");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }

    // The node is alive, has not restarted, and still serves reads and writes.
    tokio::time::timeout(Duration::from_secs(10), client.put("after", "2")).await??;
    assert_eq!(client.get("before").await?.map(|kv| kv.value), Some(b"1".to_vec()));
    assert!(c.node_is_running(1), "node 1 died; log:\n{}", c.node(1).log());
    assert_no_panics(&c);
    Ok(())
}

/// Hostile input on the peer port's framed wire (`raft/network/wire.rs`): a wrong greeting, a
/// frame claiming more than the limit, a header that does not decode each end only that
/// connection; a well-framed call carrying a crafted payload is answered with the same
/// `INVALID_ARGUMENT` as over gRPC. The node keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn crafted_peer_wire_frames_end_their_connection_and_the_node_survives() -> anyhow::Result<()> {
    use conclave_server::raft::network::wire::{self, Header, Method, MAGIC};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut c = cluster(1, &[]).await?;
    let client = c.client().await?;
    client.put("before", "1").await?;
    let addr = c.node(1).peer_addr.clone();
    // Sends `bytes` on a new connection and returns what the node answers before it closes.
    let exchange = |bytes: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await?;
            s.write_all(&bytes).await?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await??;
            anyhow::Ok(answer)
        }
    };
    let wrong_greeting = b"CNCLXXXX".to_vec();
    let too_long = [MAGIC.to_vec(), u32::MAX.to_be_bytes().to_vec()].concat();
    let bad_header = [MAGIC.to_vec(), 8u32.to_be_bytes().to_vec(), 4u32.to_be_bytes().to_vec(), vec![0xFF; 4]].concat();
    for (what, bytes) in [("wrong greeting", wrong_greeting), ("too long", too_long), ("bad header", bad_header)] {
        let answer = exchange(bytes).await?;
        assert!(answer.is_empty(), "{what}: the node answered {answer:?} instead of closing");
    }

    // A well-formed call whose payload claims a 4 EiB key: refused like the gRPC call above.
    let put_with_huge_key = [vec![0u8, 0u8], varint_u64(HUGE)].concat();
    let header = Header::Request { id: 1, method: Method::Propose, metadata: vec![], format: 1 };
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    s.write_all(&[MAGIC.to_vec(), wire::frame(&header, &put_with_huge_key)?].concat()).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), wire::read_frame(&mut wire::reader(s))).await??;
    match answer {
        Some((Header::Response { id: 1, status: Some(status), .. }, _)) => {
            let status = wire::to_status(status);
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("undecodable peer message"), "{status:?}");
        }
        other => panic!("expected a refusal of call 1, got {other:?}"),
    }

    tokio::time::timeout(Duration::from_secs(10), client.put("after", "2")).await??;
    assert_eq!(client.get("before").await?.map(|kv| kv.value), Some(b"1".to_vec()));
    assert!(c.node_is_running(1), "node 1 died; log:\n{}", c.node(1).log());
    assert_no_panics(&c);
    Ok(())
}
