//! The etcd side of the hot-counter workload, shared by both etcd client profiles: a
//! compare-and-swap loop on the counter key's `mod_revision` (what `clientv3`'s STM does).

use crate::etcdpb::etcdserverpb as pb;

/// The value and mod revision of a counter key (0, 0 when missing).
pub fn counter_state(kvs: &[crate::etcdpb::mvccpb::KeyValue]) -> (u64, i64) {
    kvs.first().map_or((0, 0), |kv| {
        (std::str::from_utf8(&kv.value).ok().and_then(|s| s.parse().ok()).unwrap_or(0), kv.mod_revision)
    })
}

/// The transaction of one increment attempt: "if the counter's mod revision is still `mod_rev`
/// (0: the key does not exist), put `value + 1`, else read it".
pub fn counter_txn(key: &[u8], value: u64, mod_rev: i64) -> pb::TxnRequest {
    let compare = if mod_rev == 0 {
        pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Version as i32,
            key: key.to_vec(),
            target_union: Some(pb::compare::TargetUnion::Version(0)),
            ..Default::default()
        }
    } else {
        pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(mod_rev)),
            ..Default::default()
        }
    };
    let put = pb::PutRequest { key: key.to_vec(), value: (value + 1).to_string().into_bytes(), ..Default::default() };
    let get = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
    pb::TxnRequest {
        compare: vec![compare],
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }],
        failure: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(get)) }],
    }
}

/// `None` when an increment's transaction succeeded, else the counter's value and mod revision
/// as it read them.
pub fn counter_outcome(resp: pb::TxnResponse) -> Option<(u64, i64)> {
    if resp.succeeded {
        return None;
    }
    let kvs = match resp.responses.into_iter().next().and_then(|r| r.response) {
        Some(pb::response_op::Response::ResponseRange(r)) => r.kvs,
        _ => Vec::new(),
    };
    Some(counter_state(&kvs))
}
