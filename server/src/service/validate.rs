//! Validation of public requests and their conversion into log-entry commands. Everything a
//! client can send is checked here; nothing malformed reaches Raft or the state machine.

use conclave_proto::v1 as pb;

use crate::error::{Error, Result};
use crate::limits::{MAX_KEY_BYTES, MAX_REQUEST_BYTES, MAX_TXN_COST, MAX_TXN_OPS, MAX_VALUE_BYTES, TXN_SCAN_COST};
use crate::log_entry::{Command, Compare, CompareOp, KeyField, KeySelector, RangeSpec, RequestId, TxnOp};

/// Rejects requests whose encoding exceeds [`MAX_REQUEST_BYTES`].
pub fn request_size(size: usize) -> Result<usize> {
    if size > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge { size, limit: MAX_REQUEST_BYTES });
    }
    Ok(size)
}

fn key(what: &'static str, key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey(what.into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge { size: key.len(), limit: MAX_KEY_BYTES });
    }
    Ok(())
}

/// The keys of the ZooKeeper namespace, `[zk/, zk0)` (`state_machine::znodes`): native writes
/// there would bypass the znode bookkeeping (Stat, children), so only the ZooKeeper port writes
/// them; native reads and watches are allowed.
const ZNODE_KEYS: (&[u8], &[u8]) = (b"zk/", b"zk0");

fn znode_write_refused(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what} the ZooKeeper namespace (keys under \"zk/\"), which only the ZooKeeper port (--zk-addr) may \
         change: write znodes through a ZooKeeper client; native reads and watches of these keys are allowed"
    ))
}

/// Refuses a selector that reaches a znode key (see [`ZNODE_KEYS`]).
fn writable_selector(selector: &KeySelector) -> Result<()> {
    let (lo, hi) = ZNODE_KEYS;
    let reaches = match selector {
        KeySelector::Key(k) => k.starts_with(lo),
        KeySelector::Prefix(p) => p.starts_with(lo) || lo.starts_with(p),
        KeySelector::Interval { start, end } => start.as_slice() < hi && end.as_slice() > lo,
    };
    if reaches {
        return Err(znode_write_refused(match selector {
            KeySelector::Key(_) => "this key is in",
            _ => "this range covers",
        }));
    }
    Ok(())
}

fn value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge { size: value.len(), limit: MAX_VALUE_BYTES });
    }
    Ok(())
}

fn counter_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("counter name must not be empty".into()));
    }
    if name.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge { size: name.len(), limit: MAX_KEY_BYTES });
    }
    Ok(())
}

/// Converts a key range.
pub fn selector(range: Option<&pb::KeyRange>) -> Result<KeySelector> {
    let r = range.ok_or_else(|| Error::InvalidArgument("range is required".into()))?;
    if r.prefix && !r.range_end.is_empty() {
        return Err(Error::InvalidArgument("give either prefix or range_end, not both".into()));
    }
    if r.key.len() > MAX_KEY_BYTES || r.range_end.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge { size: r.key.len().max(r.range_end.len()), limit: MAX_KEY_BYTES });
    }
    if r.prefix {
        return Ok(KeySelector::Prefix(r.key.clone()));
    }
    key("range key", &r.key)?;
    if r.range_end.is_empty() {
        return Ok(KeySelector::Key(r.key.clone()));
    }
    if r.range_end <= r.key {
        return Err(Error::InvalidArgument(
            "range_end must be greater than key (the range [key, range_end) is empty)".into(),
        ));
    }
    Ok(KeySelector::Interval { start: r.key.clone(), end: r.range_end.clone() })
}

/// Converts a range read.
pub fn range(r: &pb::RangeRequest) -> Result<RangeSpec> {
    Ok(RangeSpec {
        selector: selector(r.range.as_ref())?,
        limit: r.limit,
        keys_only: r.keys_only,
        count_only: r.count_only,
    })
}

/// Converts the optional request id.
pub fn request_id(id: Option<&pb::RequestId>) -> Result<Option<RequestId>> {
    match id {
        None => Ok(None),
        Some(id) if id.client_id == 0 => Err(Error::InvalidArgument("request_id.client_id must not be 0".into())),
        Some(id) if id.first_incomplete > id.seq => {
            Err(Error::InvalidArgument("request_id.first_incomplete must not exceed request_id.seq".into()))
        }
        Some(id) => Ok(Some(RequestId { client_id: id.client_id, seq: id.seq, first_incomplete: id.first_incomplete })),
    }
}

/// Converts a put.
pub fn put(r: &pb::PutRequest) -> Result<Command> {
    key("put", &r.key)?;
    value(&r.value)?;
    writable_selector(&KeySelector::Key(r.key.clone()))?;
    Ok(Command::Put { key: r.key.clone(), value: r.value.clone(), prev_kv: r.prev_kv, session: r.session_id })
}

/// Converts a delete.
pub fn delete_range(r: &pb::DeleteRangeRequest) -> Result<Command> {
    Ok(Command::DeleteRange { selector: deletable(r.range.as_ref())?, prev_kv: r.prev_kv })
}

/// A delete's range, refused when it reaches a znode key.
fn deletable(range: Option<&pb::KeyRange>) -> Result<KeySelector> {
    let selector = selector(range)?;
    writable_selector(&selector)?;
    Ok(selector)
}

fn compare_op(op: i32) -> Result<CompareOp> {
    match pb::CompareOp::try_from(op) {
        Ok(pb::CompareOp::Equal) => Ok(CompareOp::Equal),
        Ok(pb::CompareOp::NotEqual) => Ok(CompareOp::NotEqual),
        Ok(pb::CompareOp::Greater) => Ok(CompareOp::Greater),
        Ok(pb::CompareOp::Less) => Ok(CompareOp::Less),
        Err(_) => Err(Error::InvalidArgument(format!("unknown compare operator {op}"))),
    }
}

fn compare(c: &pb::Compare) -> Result<Compare> {
    use pb::compare::Target;
    use pb::key_compare::Target as F;
    match &c.target {
        Some(Target::Key(k)) => {
            key("compare", &k.key)?;
            let field =
                match &k.target {
                    Some(F::Value(v)) => {
                        value(v)?;
                        KeyField::Value(v.clone())
                    }
                    Some(F::Version(v)) => KeyField::Version(*v),
                    Some(F::CreateRevision(v)) => KeyField::CreateRevision(*v),
                    Some(F::ModRevision(v)) => KeyField::ModRevision(*v),
                    Some(F::Exists(v)) => KeyField::Exists(*v),
                    None => return Err(Error::InvalidArgument(
                        "key compare needs a target field (value, version, create_revision, mod_revision or exists)"
                            .into(),
                    )),
                };
            Ok(Compare::Key { key: k.key.clone(), op: compare_op(k.op)?, field })
        }
        Some(Target::Counter(cc)) => {
            counter_name(&cc.name)?;
            Ok(Compare::Counter { name: cc.name.clone(), op: compare_op(cc.op)?, value: cc.value })
        }
        Some(Target::Children(ch)) => {
            key("children compare prefix", &ch.prefix)?;
            Ok(Compare::Children { prefix: ch.prefix.clone(), op: compare_op(ch.op)?, count: ch.count })
        }
        Some(Target::Lease(l)) => {
            lease_name(&l.name)?;
            if l.token == 0 {
                return Err(Error::InvalidArgument(
                    "lease compare needs the token the lease was granted with (not 0)".into(),
                ));
            }
            Ok(Compare::Lease { name: l.name.clone(), token: l.token })
        }
        None => Err(Error::InvalidArgument("compare needs a target (key, counter, lease or children)".into())),
    }
}

fn txn_op(op: &pb::RequestOp) -> Result<TxnOp> {
    use pb::request_op::Request as R;
    Ok(match &op.request {
        Some(R::Range(r)) => TxnOp::Range(range(r)?),
        Some(R::Put(p)) => match put(p)? {
            Command::Put { key, value, prev_kv, session } => TxnOp::Put { key, value, prev_kv, session },
            _ => unreachable!("put() returns a put"),
        },
        Some(R::DeleteRange(d)) => TxnOp::DeleteRange { selector: deletable(d.range.as_ref())?, prev_kv: d.prev_kv },
        Some(R::CounterAdd(a)) => {
            counter_name(&a.name)?;
            TxnOp::CounterAdd { name: a.name.clone(), delta: a.delta }
        }
        Some(R::CounterGet(g)) => {
            counter_name(&g.name)?;
            TxnOp::CounterGet { name: g.name.clone() }
        }
        Some(R::CounterSet(s)) => {
            counter_name(&s.name)?;
            TxnOp::CounterSet { name: s.name.clone(), value: s.value }
        }
        Some(R::CounterDelete(d)) => {
            counter_name(&d.name)?;
            TxnOp::CounterDelete { name: d.name.clone() }
        }
        None => return Err(Error::InvalidArgument("transaction operation is empty".into())),
    })
}

/// Converts a transaction.
pub fn txn(r: &pb::TxnRequest) -> Result<Command> {
    let count = r.compare.len() + r.success.len() + r.failure.len();
    if count > MAX_TXN_OPS {
        return Err(Error::TooManyOps { count, limit: MAX_TXN_OPS });
    }
    let compares: Vec<Compare> = r.compare.iter().map(compare).collect::<Result<_>>()?;
    let success: Vec<TxnOp> = r.success.iter().map(txn_op).collect::<Result<_>>()?;
    let failure: Vec<TxnOp> = r.failure.iter().map(txn_op).collect::<Result<_>>()?;
    let cost = txn_cost(&compares, &success, &failure);
    if cost > MAX_TXN_COST {
        return Err(Error::LimitExceeded(format!(
            "transaction costs {cost} units of apply work; the limit is {MAX_TXN_COST} (1 per key compare or \
             operation, count + 1 per children compare, {TXN_SCAN_COST} per range or delete over a prefix or \
             interval): split it or lower the children compare counts"
        )));
    }
    Ok(Command::Txn { compares, success, failure })
}

/// The apply work a transaction may cost, in keys visited (see [`MAX_TXN_COST`]). Both branches
/// count: which one runs depends on the state. Saturates instead of overflowing.
pub fn txn_cost(compares: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> u64 {
    let selector_cost = |s: &KeySelector| match s {
        KeySelector::Key(_) => 1,
        KeySelector::Prefix(_) | KeySelector::Interval { .. } => TXN_SCAN_COST,
    };
    let compare_cost = |c: &Compare| match c {
        Compare::Children { count, .. } => count.saturating_add(1),
        _ => 1,
    };
    let op_cost = |op: &TxnOp| match op {
        TxnOp::Range(spec) => selector_cost(&spec.selector),
        TxnOp::DeleteRange { selector, .. } => selector_cost(selector),
        _ => 1,
    };
    let compares = compares.iter().map(compare_cost).fold(0u64, u64::saturating_add);
    success.iter().chain(failure).map(op_cost).fold(compares, u64::saturating_add)
}

/// Converts counter requests.
pub fn counter_add(r: &pb::CounterAddRequest) -> Result<Command> {
    counter_name(&r.name)?;
    Ok(Command::CounterAdd { name: r.name.clone(), delta: r.delta })
}

/// Converts a counter set.
pub fn counter_set(r: &pb::CounterSetRequest) -> Result<Command> {
    counter_name(&r.name)?;
    Ok(Command::CounterSet { name: r.name.clone(), value: r.value })
}

/// Converts a counter delete.
pub fn counter_delete(r: &pb::CounterDeleteRequest) -> Result<Command> {
    counter_name(&r.name)?;
    Ok(Command::CounterDelete { name: r.name.clone() })
}

/// Validates a lease name.
pub fn lease_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("lease name must not be empty".into()));
    }
    if name.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge { size: name.len(), limit: MAX_KEY_BYTES });
    }
    Ok(())
}

/// Converts a lease acquisition.
pub fn lease_acquire(r: &pb::LeaseAcquireRequest) -> Result<Command> {
    lease_name(&r.name)?;
    if r.session_id == 0 {
        return Err(Error::InvalidArgument("session_id is required to acquire a lease".into()));
    }
    if r.holder_info.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidArgument(format!(
            "holder_info is {} bytes; the limit is {MAX_KEY_BYTES} bytes",
            r.holder_info.len()
        )));
    }
    Ok(Command::LeaseAcquire { name: r.name.clone(), session_id: r.session_id, info: r.holder_info.clone() })
}

/// Converts a lease release.
pub fn lease_release(r: &pb::LeaseReleaseRequest) -> Result<Command> {
    lease_name(&r.name)?;
    Ok(Command::LeaseRelease { name: r.name.clone(), token: r.token })
}

/// Validates a counter read.
pub fn counter_get(r: &pb::CounterGetRequest) -> Result<()> {
    counter_name(&r.name)
}

#[cfg(test)]
mod znode_tests {
    use super::*;

    #[test]
    fn native_writes_to_znode_keys_are_refused_and_others_pass() {
        let refused = |s: KeySelector| matches!(writable_selector(&s), Err(Error::InvalidArgument(m)) if m.contains("ZooKeeper port"));
        assert!(refused(KeySelector::Key(b"zk/a".to_vec())));
        assert!(refused(KeySelector::Prefix(b"zk/".to_vec())));
        assert!(refused(KeySelector::Prefix(b"z".to_vec())), "a prefix covering zk/ reaches znodes");
        assert!(refused(KeySelector::Prefix(Vec::new())), "every key includes the znodes");
        assert!(refused(KeySelector::Interval { start: b"a".to_vec(), end: b"zz".to_vec() }));
        for ok in [
            KeySelector::Key(b"zk".to_vec()),
            KeySelector::Key(b"zka".to_vec()),
            KeySelector::Prefix(b"zk0".to_vec()),
            KeySelector::Prefix(b"app/".to_vec()),
            KeySelector::Interval { start: b"a".to_vec(), end: b"zk/".to_vec() },
            KeySelector::Interval { start: b"zk0".to_vec(), end: b"zz".to_vec() },
        ] {
            assert!(writable_selector(&ok).is_ok(), "{ok:?}");
        }
    }
}
