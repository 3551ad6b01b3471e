//! Revisioned KV, transactions and counters through every member (leader and followers).

use conclave_client::proto as pb;
use conclave_client::GetOptions;

use crate::{assert_no_panics, cluster};

fn put_op(k: &str, v: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn key_cmp(k: &str, op: pb::CompareOp, target: pb::key_compare::Target) -> pb::Compare {
    pb::Compare {
        target: Some(pb::compare::Target::Key(pb::KeyCompare { key: k.into(), op: op as i32, target: Some(target) })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_txn_and_counters_through_any_member() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(std::time::Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(1);
    // A client that only knows a follower still writes and reads linearizably.
    let client = c.client_of(follower).await?;

    let r1 = client.put("a/1", "one").await?;
    let r2 = client.put("a/2", "two").await?;
    let r3 = client.put("a/1", "uno").await?;
    assert!(r1 < r2 && r2 < r3, "revisions increase: {r1} {r2} {r3}");

    let kv = client.get("a/1").await?.expect("a/1 exists");
    assert_eq!((kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version), (&b"uno"[..], r1, r3, 2));

    let all = client.get_with("a/", GetOptions { prefix: true, ..Default::default() }).await?;
    assert_eq!(all.kvs.len(), 2);
    assert_eq!(all.revision, r3);
    let limited = client.get_with("a/", GetOptions { prefix: true, limit: 1, ..Default::default() }).await?;
    assert_eq!((limited.kvs.len(), limited.more, limited.count), (1, true, 2));
    let past = client.get_with("a/1", GetOptions { revision: r1, ..Default::default() }).await?;
    assert_eq!(past.kvs[0].value, b"one");
    let counted = client.get_with("a/", GetOptions { prefix: true, count_only: true, ..Default::default() }).await?;
    assert_eq!((counted.kvs.len(), counted.count), (0, 2));

    // A serializable read on the follower sees what this client has seen (its own writes).
    let ser = client.get_with("a/1", GetOptions { serializable: true, ..Default::default() }).await?;
    assert!(ser.revision >= r3, "serializable read at {} after seeing {r3}", ser.revision);
    assert_eq!(ser.kvs[0].value, b"uno");

    // Transaction: compare on mod_revision, then put + counter add at one revision.
    let txn = pb::TxnRequest {
        compare: vec![key_cmp("a/1", pb::CompareOp::Equal, pb::key_compare::Target::ModRevision(r3))],
        success: vec![
            put_op("a/3", "three"),
            pb::RequestOp {
                request: Some(pb::request_op::Request::CounterAdd(pb::CounterAddRequest {
                    name: "ids".into(),
                    delta: 5,
                    request_id: None,
                })),
            },
        ],
        failure: vec![put_op("a/failed", "x")],
        request_id: None,
    };
    let resp = client.txn(txn.clone()).await?;
    assert!(resp.succeeded);
    let rev = resp.header.map(|h| h.revision).unwrap_or_default();
    assert_eq!(rev, r3 + 1, "all txn writes share one revision");
    assert_eq!(client.get("a/3").await?.map(|kv| kv.mod_revision), Some(rev));
    // Same compare again fails now (a/1 unchanged but counter path irrelevant): else branch runs.
    let txn2 = pb::TxnRequest {
        compare: vec![key_cmp("a/3", pb::CompareOp::Equal, pb::key_compare::Target::Exists(false))],
        ..txn
    };
    let resp2 = client.txn(txn2).await?;
    assert!(!resp2.succeeded);
    assert!(client.get("a/failed").await?.is_some());

    // Counters: get-and-add returns the previous value.
    assert_eq!(client.counter_add("ids", 1).await?, 5);
    assert_eq!(client.counter_add("ids", 1).await?, 6);
    assert_eq!(client.counter_get("ids", false).await?.value, 7);
    assert_eq!(client.counter_set("ids", 100).await?, 7);
    let overflow = client.counter_add("ids", u64::MAX).await.expect_err("overflow is rejected");
    assert_eq!(overflow.code(), tonic::Code::FailedPrecondition, "{overflow}");
    assert_eq!(client.counter_get("ids", false).await?.value, 100, "a rejected add changes nothing");
    assert!(client.counter_delete("ids").await?);
    assert!(!client.counter_get("ids", false).await?.exists);

    // Deletes.
    assert_eq!(client.delete("a/", true).await?, 4);
    assert!(client.get("a/1").await?.is_none());

    // Membership and status: every member learned every client address.
    let members = client.member_list().await?;
    assert_eq!(members.len(), 3);
    for m in &members {
        let node = c.node(m.id);
        assert_eq!(m.client_addr, node.client_addr);
        assert_eq!(m.peer_addr, node.peer_addr);
        assert!(m.voter);
    }
    let st = c.status(follower).await?;
    assert_eq!(st.leader_id, leader);
    assert_eq!(st.node_id, follower);
    assert_eq!(st.role, "follower");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn single_node_cluster_serves() -> anyhow::Result<()> {
    let c = cluster(1, &[]).await?;
    let client = c.client().await?;
    client.put("k", "v").await?;
    assert_eq!(client.get("k").await?.map(|kv| kv.value), Some(b"v".to_vec()));
    let st = c.status(1).await?;
    assert_eq!((st.leader_id, st.role.as_str(), st.members.len()), (1, "leader", 1));
    Ok(())
}
