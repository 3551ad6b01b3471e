//! Unit tests of [`StateMachine::apply_batch`]. Apply is pure and deterministic, so every
//! expectation below is exact.

use super::counters::Counter;
use super::dedup::Dedup;
use super::mvcc::KeyValue;
use super::response::{CommandError, CommandResult, OpResult, Outcome, OutcomeBody, RangeResult};
use super::{ReadError, SmConfig, StateMachine};
use crate::log_entry::{
    BatchV1, Command, Compare, CompareOp, KeyField, KeySelector, Proposal, RangeSpec, RequestId, TxnOp,
};
use crate::storage::snapshot_file::{SnapshotContents, SNAPSHOT_FORMAT};
use crate::types::SnapshotMeta;

use CompareOp::{Equal, Greater, Less, NotEqual};

// ---- builders ----

pub(super) fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub(super) fn kv(key: &str, value: &str, create_revision: u64, mod_revision: u64, version: u64) -> KeyValue {
    KeyValue { key: b(key), value: b(value), create_revision, mod_revision, version, session: 0 }
}

pub(super) fn key(k: &str) -> KeySelector {
    KeySelector::Key(b(k))
}

pub(super) fn prefix(p: &str) -> KeySelector {
    KeySelector::Prefix(b(p))
}

pub(super) fn spec(selector: KeySelector) -> RangeSpec {
    RangeSpec { selector, limit: 0, keys_only: false, count_only: false }
}

pub(super) fn put(k: &str, v: &str) -> Command {
    Command::Put { key: b(k), value: b(v), prev_kv: false, session: 0 }
}

pub(super) fn put_prev(k: &str, v: &str) -> Command {
    Command::Put { key: b(k), value: b(v), prev_kv: true, session: 0 }
}

pub(super) fn del(selector: KeySelector, prev_kv: bool) -> Command {
    Command::DeleteRange { selector, prev_kv }
}

pub(super) fn add(name: &str, delta: u64) -> Command {
    Command::CounterAdd { name: name.into(), delta }
}

pub(super) fn set(name: &str, value: u64) -> Command {
    Command::CounterSet { name: name.into(), value }
}

pub(super) fn del_counter(name: &str) -> Command {
    Command::CounterDelete { name: name.into() }
}

pub(super) fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Command {
    Command::Txn { compares, success, failure }
}

pub(super) fn cmp(k: &str, op: CompareOp, field: KeyField) -> Compare {
    Compare::Key { key: b(k), op, field }
}

pub(super) fn cmp_counter(name: &str, op: CompareOp, value: u64) -> Compare {
    Compare::Counter { name: name.into(), op, value }
}

pub(super) fn op_put(k: &str, v: &str) -> TxnOp {
    TxnOp::Put { key: b(k), value: b(v), prev_kv: false, session: 0 }
}

pub(super) fn op_add(name: &str, delta: u64) -> TxnOp {
    TxnOp::CounterAdd { name: name.into(), delta }
}

pub(super) fn op_get(name: &str) -> TxnOp {
    TxnOp::CounterGet { name: name.into() }
}

pub(super) fn id(client_id: u64, seq: u64, first_incomplete: u64) -> RequestId {
    RequestId { client_id, seq, first_incomplete }
}

pub(super) fn prop(command: Command) -> Proposal {
    Proposal { request_id: None, command }
}

pub(super) fn with_id(request_id: RequestId, command: Command) -> Proposal {
    Proposal { request_id: Some(request_id), command }
}

pub(super) fn txn_body(outcome: Outcome) -> (bool, Vec<OpResult>) {
    match outcome.body {
        OutcomeBody::Txn { succeeded, responses, .. } => (succeeded, responses),
        other => panic!("not a txn outcome: {other:?}"),
    }
}

pub(super) fn ranged(result: &OpResult) -> Vec<KeyValue> {
    match result {
        OpResult::Range(r) => r.kvs.clone(),
        other => panic!("not a range result: {other:?}"),
    }
}

pub(super) fn names(result: &RangeResult) -> Vec<String> {
    result.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

/// A state machine plus the log index of the next batch.
pub(super) struct Node {
    sm: StateMachine,
    index: u64,
}

impl Node {
    pub(super) fn new() -> Self {
        Self::with(StateMachine::new(SmConfig::default()))
    }

    pub(super) fn with(sm: StateMachine) -> Self {
        Self { sm, index: 0 }
    }

    pub(super) fn batch(&mut self, proposals: Vec<Proposal>) -> Vec<CommandResult> {
        self.index += 1;
        self.sm.apply_batch(&BatchV1 { leader_time_ms: 1_000, proposals }, self.index)
    }

    pub(super) fn apply_as(&mut self, request_id: Option<RequestId>, command: Command) -> CommandResult {
        let mut results = self.batch(vec![Proposal { request_id, command }]);
        assert_eq!(results.len(), 1, "one result per proposal");
        results.remove(0)
    }

    pub(super) fn apply(&mut self, command: Command) -> CommandResult {
        self.apply_as(None, command)
    }

    pub(super) fn ok(&mut self, command: Command) -> Outcome {
        self.apply(command).expect("command succeeds")
    }

    pub(super) fn read(&self, selector: KeySelector, revision: u64) -> Result<RangeResult, ReadError> {
        self.sm.range(&spec(selector), revision)
    }

    pub(super) fn get(&self, k: &str) -> Option<KeyValue> {
        self.read(key(k), 0).expect("current revision is readable").kvs.pop()
    }

    /// Every live key as `key=value` at `revision`.
    pub(super) fn values(&self, revision: u64) -> Vec<String> {
        let r = self.read(prefix(""), revision).expect("readable");
        r.kvs
            .iter()
            .map(|kv| format!("{}={}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value)))
            .collect()
    }
}

/// Writes `state` as a snapshot of the older `format` and loads it: the result says the current
/// format and keeps the metadata.
pub(super) fn load_old_format<S: serde::Serialize>(format: u32, state: S) -> StateMachine {
    use crate::storage::snapshot_file::SnapshotContentsOf;
    let meta = SnapshotMeta { snapshot_id: "1-2".into(), ..SnapshotMeta::default() };
    let bytes =
        crate::log_entry::encode(&SnapshotContentsOf { _format: format, meta: meta.clone(), state }).expect("encodes");
    let loaded = SnapshotContents::from_bytes(&bytes).expect("an older format decodes");
    assert_eq!((loaded.format, &loaded.meta), (SNAPSHOT_FORMAT, &meta));
    loaded.state
}

mod as_user;
mod dedup;
mod determinism;
mod kv;
mod session_owners;
mod sessions;
mod settings;
mod txn;
mod zk_reap;
mod znodes;
