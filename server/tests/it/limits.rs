//! Every limit and malformed input gets its documented status, and the server keeps serving.

use conclave_client::proto as pb;
use conclave_client::GetOptions;
use tonic::Code;

use crate::{assert_no_panics, cluster};

fn put_op(key: Vec<u8>, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp { request: Some(pb::request_op::Request::Put(pb::PutRequest { key, value, ..Default::default() })) }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_malformed_input_get_clear_statuses() -> anyhow::Result<()> {
    let c = cluster(1, &["--history-revisions", "5"]).await?;
    let client = c.client().await?;
    let check = |r: Result<_, conclave_client::Error>, code: Code, needle: &str| {
        let e = r.expect_err("must be rejected");
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().contains(needle), "message {e:?} should mention {needle:?}");
    };
    check(client.put("", "v").await.map(|_| ()), Code::InvalidArgument, "must not be empty");
    check(client.put(vec![b'k'; 4097], "v").await.map(|_| ()), Code::InvalidArgument, "4096");
    client.put(vec![b'k'; 4096], "v").await?;
    check(client.put("k", vec![0u8; 1024 * 1024 + 1]).await.map(|_| ()), Code::InvalidArgument, "1048576");
    client.put("big", vec![0u8; 1024 * 1024]).await?;
    // Two values under the value limit but over the request limit together.
    let big = pb::TxnRequest {
        success: vec![put_op(b"x".to_vec(), vec![1; 900_000]), put_op(b"y".to_vec(), vec![1; 900_000])],
        ..Default::default()
    };
    check(client.txn(big).await.map(|_| ()), Code::ResourceExhausted, "1572864");
    let many = pb::TxnRequest {
        success: (0..129).map(|i| put_op(format!("m{i}").into(), b"v".to_vec())).collect(),
        ..Default::default()
    };
    check(client.txn(many).await.map(|_| ()), Code::InvalidArgument, "128");
    let ok128 = pb::TxnRequest {
        success: (0..128).map(|i| put_op(format!("m{i}").into(), b"v".to_vec())).collect(),
        ..Default::default()
    };
    assert!(client.txn(ok128).await?.succeeded);
    // Apply work, not only the count: children compares cost count + 1, scans 1,024.
    let children = |count: u64| pb::Compare {
        target: Some(pb::compare::Target::Children(pb::ChildrenCompare {
            prefix: b"m".to_vec(),
            op: pb::CompareOp::Equal as i32,
            count,
        })),
    };
    let costly = pb::TxnRequest { compare: vec![children(5_000), children(5_000)], ..Default::default() };
    check(client.txn(costly).await.map(|_| ()), Code::ResourceExhausted, "8192");
    let fine = pb::TxnRequest { compare: (0..64).map(|_| children(100)).collect(), ..Default::default() };
    assert!(!client.txn(fine).await?.succeeded, "128 keys under m, not 100");
    let scan = || pb::RequestOp {
        request: Some(pb::request_op::Request::DeleteRange(pb::DeleteRangeRequest {
            range: Some(pb::KeyRange { key: b"zz".to_vec(), prefix: true, ..Default::default() }),
            ..Default::default()
        })),
    };
    let scans = pb::TxnRequest { success: (0..9).map(|_| scan()).collect(), ..Default::default() };
    check(client.txn(scans).await.map(|_| ()), Code::ResourceExhausted, "split it");
    let empty_op = pb::TxnRequest { success: vec![pb::RequestOp { request: None }], ..Default::default() };
    check(client.txn(empty_op).await.map(|_| ()), Code::InvalidArgument, "empty");
    let no_target = pb::TxnRequest { compare: vec![pb::Compare { target: None }], ..Default::default() };
    check(client.txn(no_target).await.map(|_| ()), Code::InvalidArgument, "compare");
    let bad_op = pb::TxnRequest {
        compare: vec![pb::Compare {
            target: Some(pb::compare::Target::Key(pb::KeyCompare {
                key: b"k".to_vec(),
                op: 42,
                target: Some(pb::key_compare::Target::Version(1)),
            })),
        }],
        ..Default::default()
    };
    check(client.txn(bad_op).await.map(|_| ()), Code::InvalidArgument, "operator");
    check(
        client.get_with("b", GetOptions { range_end: b"a".to_vec(), ..Default::default() }).await.map(|_| ()),
        Code::InvalidArgument,
        "range_end",
    );
    check(client.counter_add("", 1).await.map(|_| ()), Code::InvalidArgument, "counter name");
    // Past and future revisions.
    for i in 0..20 {
        client.put("churn", format!("{i}")).await?;
    }
    check(
        client.get_with("churn", GetOptions { revision: 1, ..Default::default() }).await.map(|_| ()),
        Code::OutOfRange,
        "compacted",
    );
    check(
        client.get_with("churn", GetOptions { revision: 1_000_000, ..Default::default() }).await.map(|_| ()),
        Code::OutOfRange,
        "future",
    );
    // A raw request without a range.
    check(
        client.range_request(pb::RangeRequest::default()).await.map(|_| ()),
        Code::InvalidArgument,
        "range is required",
    );
    // Still serving, nothing corrupted.
    client.put("alive", "yes").await?;
    assert_eq!(client.get("alive").await?.map(|kv| kv.value), Some(b"yes".to_vec()));
    assert!(client.get("x").await?.is_none(), "the rejected transaction wrote nothing");
    assert_no_panics(&c);
    Ok(())
}
