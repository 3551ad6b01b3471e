//! State-machine results → public API messages.

use conclave_proto::v1 as pb;

use crate::state_machine::mvcc::KeyValue;
use crate::state_machine::response::{OpResult, RangeResult};

/// A key-value.
pub fn kv(kv: KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        session_id: kv.session,
    }
}

/// A range result (header filled by the caller).
pub fn range(r: RangeResult, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse { header: Some(header), kvs: r.kvs.into_iter().map(kv).collect(), more: r.more, count: r.count }
}

/// A transaction operation's result.
pub fn op(r: OpResult, header: &pb::ResponseHeader) -> pb::ResponseOp {
    use pb::response_op::Response as R;
    let h = Some(*header);
    let response = match r {
        OpResult::Range(rr) => R::Range(range(rr, *header)),
        OpResult::Put { prev } => R::Put(pb::PutResponse { header: h, prev_kv: prev.map(kv) }),
        OpResult::DeleteRange { deleted, prev_kvs } => R::DeleteRange(pb::DeleteRangeResponse {
            header: h,
            deleted,
            prev_kvs: prev_kvs.into_iter().map(kv).collect(),
        }),
        OpResult::CounterAdd { previous, value } => {
            R::CounterAdd(pb::CounterAddResponse { header: h, previous, value })
        }
        OpResult::CounterGet { value, exists, mod_revision } => {
            R::CounterGet(pb::CounterGetResponse { header: h, value, exists, mod_revision })
        }
        OpResult::CounterSet { previous } => R::CounterSet(pb::CounterSetResponse { header: h, previous }),
        OpResult::CounterDelete { deleted } => R::CounterDelete(pb::CounterDeleteResponse { header: h, deleted }),
    };
    pb::ResponseOp { response: Some(response) }
}
