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
use crate::raft::SnapshotMeta;
use crate::storage::snapshot_file::{SnapshotContents, SNAPSHOT_FORMAT};

use CompareOp::{Equal, Greater, Less, NotEqual};

// ---- builders ----

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn kv(key: &str, value: &str, create_revision: u64, mod_revision: u64, version: u64) -> KeyValue {
    KeyValue { key: b(key), value: b(value), create_revision, mod_revision, version, session: 0 }
}

fn key(k: &str) -> KeySelector {
    KeySelector::Key(b(k))
}

fn prefix(p: &str) -> KeySelector {
    KeySelector::Prefix(b(p))
}

fn spec(selector: KeySelector) -> RangeSpec {
    RangeSpec { selector, limit: 0, keys_only: false, count_only: false }
}

fn put(k: &str, v: &str) -> Command {
    Command::Put { key: b(k), value: b(v), prev_kv: false, session: 0 }
}

fn put_prev(k: &str, v: &str) -> Command {
    Command::Put { key: b(k), value: b(v), prev_kv: true, session: 0 }
}

fn del(selector: KeySelector, prev_kv: bool) -> Command {
    Command::DeleteRange { selector, prev_kv }
}

fn add(name: &str, delta: u64) -> Command {
    Command::CounterAdd { name: name.into(), delta }
}

fn set(name: &str, value: u64) -> Command {
    Command::CounterSet { name: name.into(), value }
}

fn del_counter(name: &str) -> Command {
    Command::CounterDelete { name: name.into() }
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Command {
    Command::Txn { compares, success, failure }
}

fn cmp(k: &str, op: CompareOp, field: KeyField) -> Compare {
    Compare::Key { key: b(k), op, field }
}

fn cmp_counter(name: &str, op: CompareOp, value: u64) -> Compare {
    Compare::Counter { name: name.into(), op, value }
}

fn op_put(k: &str, v: &str) -> TxnOp {
    TxnOp::Put { key: b(k), value: b(v), prev_kv: false, session: 0 }
}

fn op_add(name: &str, delta: u64) -> TxnOp {
    TxnOp::CounterAdd { name: name.into(), delta }
}

fn op_get(name: &str) -> TxnOp {
    TxnOp::CounterGet { name: name.into() }
}

fn id(client_id: u64, seq: u64, first_incomplete: u64) -> RequestId {
    RequestId { client_id, seq, first_incomplete }
}

fn prop(command: Command) -> Proposal {
    Proposal { request_id: None, command }
}

fn with_id(request_id: RequestId, command: Command) -> Proposal {
    Proposal { request_id: Some(request_id), command }
}

fn txn_body(outcome: Outcome) -> (bool, Vec<OpResult>) {
    match outcome.body {
        OutcomeBody::Txn { succeeded, responses, .. } => (succeeded, responses),
        other => panic!("not a txn outcome: {other:?}"),
    }
}

fn ranged(result: &OpResult) -> Vec<KeyValue> {
    match result {
        OpResult::Range(r) => r.kvs.clone(),
        other => panic!("not a range result: {other:?}"),
    }
}

fn names(result: &RangeResult) -> Vec<String> {
    result.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

/// A state machine plus the log index of the next batch.
struct Node {
    sm: StateMachine,
    index: u64,
}

impl Node {
    fn new() -> Self {
        Self::with(StateMachine::new(SmConfig::default()))
    }

    fn with(sm: StateMachine) -> Self {
        Self { sm, index: 0 }
    }

    fn batch(&mut self, proposals: Vec<Proposal>) -> Vec<CommandResult> {
        self.index += 1;
        self.sm.apply_batch(&BatchV1 { leader_time_ms: 1_000, proposals }, self.index)
    }

    fn apply_as(&mut self, request_id: Option<RequestId>, command: Command) -> CommandResult {
        let mut results = self.batch(vec![Proposal { request_id, command }]);
        assert_eq!(results.len(), 1, "one result per proposal");
        results.remove(0)
    }

    fn apply(&mut self, command: Command) -> CommandResult {
        self.apply_as(None, command)
    }

    fn ok(&mut self, command: Command) -> Outcome {
        self.apply(command).expect("command succeeds")
    }

    fn read(&self, selector: KeySelector, revision: u64) -> Result<RangeResult, ReadError> {
        self.sm.range(&spec(selector), revision)
    }

    fn get(&self, k: &str) -> Option<KeyValue> {
        self.read(key(k), 0).expect("current revision is readable").kvs.pop()
    }

    /// Every live key as `key=value` at `revision`.
    fn values(&self, revision: u64) -> Vec<String> {
        let r = self.read(prefix(""), revision).expect("readable");
        r.kvs
            .iter()
            .map(|kv| format!("{}={}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value)))
            .collect()
    }
}

// ---- revisions ----

#[test]
fn revision_bumps_once_per_changing_proposal() {
    let mut n = Node::new();
    assert_eq!(n.ok(put("a", "1")).revision, 1);
    assert_eq!(n.ok(put("b", "1")).revision, 2);

    let noop_delete = n.ok(del(key("missing"), true));
    assert_eq!(noop_delete, Outcome { revision: 2, body: OutcomeBody::DeleteRange { deleted: 0, prev_kvs: vec![] } });
    let read_only = n.ok(txn(vec![], vec![TxnOp::Range(spec(prefix(""))), op_get("c")], vec![]));
    assert_eq!(read_only.revision, 2, "a txn of reads changes nothing");
    let failed = n.ok(txn(vec![cmp("a", Equal, KeyField::Value(b("no")))], vec![op_put("x", "1")], vec![]));
    assert_eq!(
        failed,
        Outcome { revision: 2, body: OutcomeBody::Txn { succeeded: false, responses: vec![], fencing_failure: None } }
    );
    assert_eq!(n.get("x"), None, "the success branch did not run");
    let deletes_nothing = txn(vec![], vec![TxnOp::DeleteRange { selector: prefix("zz"), prev_kv: false }], vec![]);
    assert_eq!(n.ok(deletes_nothing).revision, 2);
    assert_eq!(
        n.ok(del_counter("missing")),
        Outcome { revision: 2, body: OutcomeBody::CounterDelete { deleted: false } }
    );
    let registered = n.ok(Command::RegisterNode { node_id: 7, client_addr: "h:1".into() });
    assert_eq!(registered, Outcome { revision: 2, body: OutcomeBody::Registered });
    assert_eq!(n.sm.client_addrs().get(&7).map(String::as_str), Some("h:1"));

    // Within one batch, each changing proposal gets its own revision.
    let results =
        n.batch(vec![prop(put("c", "1")), prop(del(key("missing"), false)), prop(add("n", 1)), prop(put("c", "2"))]);
    let revisions: Vec<u64> = results.into_iter().map(|r| r.expect("ok").revision).collect();
    assert_eq!(revisions, vec![3, 3, 4, 5]);
    assert_eq!(n.sm.revision(), 5);
}

// ---- put / delete / range ----

#[test]
fn put_and_delete_track_revisions_versions_and_prev_kv() {
    let mut n = Node::new();
    n.ok(put("a", "1"));
    assert_eq!(n.get("a"), Some(kv("a", "1", 1, 1, 1)));
    n.ok(put("other", "x"));
    assert_eq!(n.ok(put("a", "2")).body, OutcomeBody::Put { prev: None }, "prev_kv only when asked");
    assert_eq!(n.ok(put_prev("a", "3")).body, OutcomeBody::Put { prev: Some(kv("a", "2", 1, 3, 2)) });
    assert_eq!(n.get("a"), Some(kv("a", "3", 1, 4, 3)));
    assert_eq!(n.ok(put_prev("new", "v")).body, OutcomeBody::Put { prev: None }, "no previous key");

    let deleted = n.ok(del(key("a"), true));
    let body = OutcomeBody::DeleteRange { deleted: 1, prev_kvs: vec![kv("a", "3", 1, 4, 3)] };
    assert_eq!(deleted, Outcome { revision: 6, body });
    let all = n.ok(del(prefix(""), false));
    assert_eq!(all, Outcome { revision: 7, body: OutcomeBody::DeleteRange { deleted: 2, prev_kvs: vec![] } });
    n.ok(put("a", "again"));
    assert_eq!(n.get("a"), Some(kv("a", "again", 8, 8, 1)), "a recreated key starts over");
}

#[test]
fn range_selectors_limit_and_flags() {
    let mut n = Node::new();
    for k in ["a", "ab", "abc", "b", "c"] {
        n.ok(put(k, &k.to_uppercase()));
    }
    let keys = |sel| names(&n.read(sel, 0).expect("readable"));
    assert_eq!(keys(key("ab")), ["ab"]);
    assert!(keys(key("zz")).is_empty());
    assert_eq!(keys(prefix("ab")), ["ab", "abc"]);
    assert_eq!(keys(KeySelector::Interval { start: b("ab"), end: b("c") }), ["ab", "abc", "b"]);

    let range = |limit, keys_only, count_only| {
        n.sm.range(&RangeSpec { selector: prefix(""), limit, keys_only, count_only }, 0).expect("readable")
    };
    let limited = range(2, false, false);
    assert_eq!((names(&limited), limited.more, limited.count), (vec!["a".into(), "ab".into()], true, 5));
    let exact = range(5, false, false);
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (5, false, 5));
    let keys_only = range(0, true, false);
    assert_eq!(keys_only.kvs[1], KeyValue { value: vec![], ..kv("ab", "AB", 2, 2, 1) });
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(range(1, false, true), RangeResult { kvs: vec![], more: false, count: 5 });
}

#[test]
fn range_at_past_revisions_and_future_error() {
    let mut n = Node::new();
    n.ok(put("a", "1"));
    n.ok(put("a", "2"));
    n.ok(put("b", "1"));
    n.ok(del(key("a"), false));
    assert_eq!(n.read(key("a"), 1).expect("readable").kvs, vec![kv("a", "1", 1, 1, 1)]);
    assert_eq!(n.values(2), ["a=2"]);
    assert_eq!(n.values(3), ["a=2", "b=1"]);
    assert_eq!(n.values(4), ["b=1"]);
    assert_eq!(n.values(0), n.values(4), "revision 0 means current");
    assert_eq!(n.read(prefix(""), 5), Err(ReadError::Future { requested: 5, current: 4 }));
}

// ---- transactions ----

/// Runs a txn guarded by `compare` whose success branch is one read and whose failure branch is
/// empty, and checks which branch ran.
fn check_compare(n: &mut Node, compare: Compare, expected: bool) {
    let (succeeded, responses) = txn_body(n.ok(txn(vec![compare.clone()], vec![TxnOp::Range(spec(key("k")))], vec![])));
    assert_eq!((succeeded, responses.len()), (expected, usize::from(expected)), "{compare:?}");
}

#[test]
fn txn_compares_every_kind_and_operator() {
    let mut n = Node::new();
    n.ok(put("k", "v1"));
    n.ok(put("other", "x"));
    n.ok(put("k", "v2")); // k: version 2, create revision 1, mod revision 3
    n.ok(set("c", 5));
    // The answer to `actual <op> operand` for operand = actual - 1, actual, actual + 1.
    let truth = [
        (Equal, [false, true, false]),
        (NotEqual, [true, false, true]),
        (Greater, [true, false, false]),
        (Less, [false, false, true]),
    ];
    type Field = fn(u64) -> KeyField;
    let numeric: [(Field, u64); 3] =
        [(KeyField::Version, 2), (KeyField::CreateRevision, 1), (KeyField::ModRevision, 3)];
    for (op, answers) in truth {
        for (field, actual) in numeric {
            for (operand, expected) in [actual - 1, actual, actual + 1].into_iter().zip(answers) {
                check_compare(&mut n, cmp("k", op, field(operand)), expected);
            }
            // A missing key's numeric fields are 0.
            for (operand, expected) in [0, 1].into_iter().zip(answers[1..].iter().copied()) {
                check_compare(&mut n, cmp("missing", op, field(operand)), expected);
            }
        }
        for (operand, expected) in ["v1", "v2", "v3"].into_iter().zip(answers) {
            check_compare(&mut n, cmp("k", op, KeyField::Value(b(operand))), expected);
        }
        check_compare(&mut n, cmp("missing", op, KeyField::Value(b("v2"))), false); // never true
        for (operand, expected) in [4, 5, 6].into_iter().zip(answers) {
            check_compare(&mut n, cmp_counter("c", op, operand), expected);
        }
        for (operand, expected) in [0, 1].into_iter().zip(answers[1..].iter().copied()) {
            check_compare(&mut n, cmp_counter("missing", op, operand), expected);
        }
    }
    check_compare(&mut n, cmp("k", Greater, KeyField::Value(b("v"))), true);
    for (k, op, exists, expected) in [
        ("k", Equal, true, true),
        ("k", NotEqual, true, false),
        ("k", Equal, false, false),
        ("missing", Equal, false, true),
        ("missing", NotEqual, false, false),
        ("missing", Equal, true, false),
    ] {
        check_compare(&mut n, cmp(k, op, KeyField::Exists(exists)), expected);
    }
    let all = |c: Vec<Compare>| txn_body(n.sm.clone().apply_command(&txn(c, vec![], vec![])).expect("ok")).0;
    assert!(all(vec![]), "no compares: success");
    assert!(all(vec![cmp("k", Equal, KeyField::Version(2)), cmp_counter("c", Equal, 5)]));
    assert!(!all(vec![cmp("k", Equal, KeyField::Version(2)), cmp_counter("c", Equal, 6)]), "all must hold");
    assert_eq!(n.sm.revision(), 4, "compares alone change nothing");
}

#[test]
fn txn_runs_one_branch_at_one_revision() {
    let mut n = Node::new();
    n.ok(put("old", "x"));
    n.ok(set("c", 10));
    let guard = vec![cmp("lock", Equal, KeyField::Exists(false))];
    let success = vec![
        op_put("lock", "me"),
        op_put("old", "y"),
        op_add("c", 1),
        TxnOp::DeleteRange { selector: key("old"), prev_kv: true },
    ];
    let failure = vec![TxnOp::Range(spec(key("lock")))];
    let command = txn(guard, success, failure);

    let first = n.ok(command.clone());
    assert_eq!(first.revision, 3, "all writes of a txn share one revision");
    let (succeeded, r) = txn_body(first);
    assert!(succeeded);
    assert_eq!(r[0], OpResult::Put { prev: None });
    assert_eq!(r[2], OpResult::CounterAdd { previous: 10, value: 11 });
    assert_eq!(r[3], OpResult::DeleteRange { deleted: 1, prev_kvs: vec![kv("old", "y", 1, 3, 2)] });
    assert_eq!(n.get("lock"), Some(kv("lock", "me", 3, 3, 1)));
    assert_eq!(n.sm.counters().get("c"), Some(Counter { value: 11, mod_revision: 3 }));
    assert_eq!(n.values(3), ["lock=me"]);
    assert_eq!(n.values(2), ["old=x"], "revision 2 is untouched");

    let (succeeded, r) = txn_body(n.ok(command));
    assert!(!succeeded, "the lock exists now");
    assert_eq!(r.len(), 1);
    assert_eq!(ranged(&r[0]), vec![kv("lock", "me", 3, 3, 1)]);
    assert_eq!(n.sm.revision(), 3);
}

#[test]
fn reads_inside_a_txn_see_its_earlier_writes() {
    let mut n = Node::new();
    n.ok(put("x", "old"));
    let ops = vec![
        TxnOp::Range(spec(key("x"))),
        op_put("x", "new"),
        TxnOp::Range(spec(prefix(""))),
        op_add("c", 2),
        op_get("c"),
        TxnOp::DeleteRange { selector: key("x"), prev_kv: false },
        TxnOp::Range(spec(key("x"))),
        TxnOp::CounterDelete { name: "c".into() },
        op_get("c"),
    ];
    let (_, r) = txn_body(n.ok(txn(vec![], ops, vec![])));
    assert_eq!(ranged(&r[0]), vec![kv("x", "old", 1, 1, 1)]);
    assert_eq!(ranged(&r[2]), vec![kv("x", "new", 1, 2, 2)]);
    assert_eq!(r[4], OpResult::CounterGet { value: 2, exists: true, mod_revision: 2 });
    assert_eq!(ranged(&r[6]), vec![]);
    assert_eq!(r[8], OpResult::CounterGet { value: 0, exists: false, mod_revision: 0 });
    assert_eq!(n.sm.revision(), 2);
}

#[test]
fn txn_counter_overflow_changes_nothing() {
    let mut n = Node::new();
    n.ok(set("c", u64::MAX - 1));
    n.ok(put("k", "before"));
    let before = n.sm.clone();
    let ops =
        vec![op_put("k", "after"), TxnOp::CounterSet { name: "d".into(), value: 1 }, op_add("c", 1), op_add("c", 1)];
    let overflow = Err(CommandError::CounterOverflow { name: "c".into(), value: u64::MAX, delta: 1 });
    assert_eq!(n.apply(txn(vec![], ops.clone(), vec![])), overflow);
    assert_eq!(n.apply(txn(vec![cmp_counter("c", Equal, 0)], vec![], ops)), overflow, "the failure branch too");
    assert_eq!((n.sm.kv(), n.sm.counters(), n.sm.revision()), (before.kv(), before.counters(), before.revision()));

    // Overflow is judged on the values the txn itself produces, in order.
    let reset =
        n.ok(txn(vec![], vec![TxnOp::CounterSet { name: "c".into(), value: 0 }, op_add("c", u64::MAX)], vec![]));
    assert_eq!(txn_body(reset).1[1], OpResult::CounterAdd { previous: 0, value: u64::MAX });
    let deleted = vec![TxnOp::CounterDelete { name: "c".into() }, op_add("c", 3)];
    assert_eq!(txn_body(n.ok(txn(vec![], deleted, vec![]))).1[1], OpResult::CounterAdd { previous: 0, value: 3 });
}

// ---- counters ----

#[test]
fn counters_add_set_delete() {
    let mut n = Node::new();
    assert_eq!(n.ok(add("c", 5)).body, OutcomeBody::CounterAdd { previous: 0, value: 5 });
    assert_eq!(n.ok(add("c", 3)), Outcome { revision: 2, body: OutcomeBody::CounterAdd { previous: 5, value: 8 } });
    let overflow = CommandError::CounterOverflow { name: "c".into(), value: 8, delta: u64::MAX };
    assert_eq!(n.apply(add("c", u64::MAX)), Err(overflow));
    assert_eq!((n.sm.revision(), n.sm.counters().value("c")), (2, 8), "a rejected add changes nothing");
    assert_eq!(n.ok(set("c", 1)), Outcome { revision: 3, body: OutcomeBody::CounterSet { previous: 8 } });
    assert_eq!(n.sm.counters().get("c"), Some(Counter { value: 1, mod_revision: 3 }));
    assert_eq!(n.ok(set("fresh", 7)).body, OutcomeBody::CounterSet { previous: 0 });
    assert_eq!(n.ok(del_counter("c")), Outcome { revision: 5, body: OutcomeBody::CounterDelete { deleted: true } });
    assert_eq!(n.ok(del_counter("c")), Outcome { revision: 5, body: OutcomeBody::CounterDelete { deleted: false } });
    assert_eq!((n.sm.counters().get("c"), n.sm.counters().len()), (None, 1));
    assert_eq!(n.ok(add("max", u64::MAX)).body, OutcomeBody::CounterAdd { previous: 0, value: u64::MAX });
}

// ---- exactly-once ----

#[test]
fn a_retry_returns_the_original_result_without_reapplying() {
    let mut n = Node::new();
    let first = n.apply_as(Some(id(1, 1, 1)), add("c", 1));
    n.ok(put("unrelated", "x"));
    assert_eq!(n.apply_as(Some(id(1, 1, 1)), add("c", 1)), first);
    assert_eq!(first.as_ref().map(|o| o.revision), Ok(1));
    assert_eq!((n.sm.counters().value("c"), n.sm.revision()), (1, 2));

    let twice = n.batch(vec![with_id(id(1, 2, 1), add("c", 10)), with_id(id(1, 2, 1), add("c", 10))]);
    assert_eq!(twice[0], twice[1], "a duplicate inside one batch");
    assert_eq!(n.sm.counters().value("c"), 11);

    n.ok(set("big", u64::MAX));
    let err = n.apply_as(Some(id(1, 3, 1)), add("big", 1));
    assert!(matches!(err, Err(CommandError::CounterOverflow { .. })), "{err:?}");
    n.ok(set("big", 0));
    assert_eq!(n.apply_as(Some(id(1, 3, 1)), add("big", 1)), err, "the original error, not a fresh apply");
    assert_eq!(n.sm.counters().value("big"), 0);

    let other_client = n.apply_as(Some(id(2, 1, 1)), add("c", 1)).expect("ok");
    assert_eq!(other_client.body, OutcomeBody::CounterAdd { previous: 11, value: 12 }, "clients are independent");
}

#[test]
fn results_below_first_incomplete_are_forgotten() {
    let mut n = Node::new();
    n.apply_as(Some(id(1, 1, 1)), add("c", 1)).expect("ok");
    let second = n.apply_as(Some(id(1, 2, 2)), add("c", 1)); // seq 1 has been answered
    let too_old = Err(CommandError::RetryTooOld { client_id: 1, seq: 1 });
    assert_eq!(n.apply_as(Some(id(1, 1, 2)), add("c", 1)), too_old);
    assert_eq!(n.apply_as(Some(id(1, 1, 1)), add("c", 1)), too_old, "a stale first_incomplete does not revive it");
    assert_eq!(n.apply_as(Some(id(1, 2, 2)), add("c", 1)), second);
    assert_eq!(n.sm.counters().value("c"), 2, "neither retry applied again");

    let other = n.apply_as(Some(id(2, 1, 1)), add("c", 1)).expect("ok");
    assert_eq!(other.body, OutcomeBody::CounterAdd { previous: 2, value: 3 });
    n.apply_as(Some(id(1, 3, 3)), add("c", 1)).expect("ok");
    assert_eq!(n.apply_as(Some(id(1, 2, 3)), add("c", 1)), Err(CommandError::RetryTooOld { client_id: 1, seq: 2 }));
    assert_eq!(n.sm.counters().value("c"), 4);
}

#[test]
fn least_recently_active_clients_are_evicted() {
    let mut n = Node::with(StateMachine::with_dedup(SmConfig::default(), Dedup::with_max_clients(4)));
    let mut originals = std::collections::BTreeMap::new();
    for client in 1..=4 {
        originals.insert(client, n.apply_as(Some(id(client, 1, 1)), add("c", 1)));
    }
    n.apply_as(Some(id(1, 2, 1)), add("c", 1)).expect("ok"); // client 1 is now the most recent
    originals.insert(5, n.apply_as(Some(id(5, 1, 1)), add("c", 1)));
    assert_eq!(n.sm.dedup.clients(), 4, "bounded");

    let mut probe = n.sm.dedup.clone();
    assert_eq!(
        probe.check(&id(2, 1, 1)),
        Some(Err(CommandError::RetryTooOld { client_id: 2, seq: 1 })),
        "client 2, the least recently active, was forgotten: its retry is not applied again"
    );
    for client in [1, 3, 4, 5] {
        assert_eq!(n.apply_as(Some(id(client, 1, 1)), add("c", 1)), originals[&client], "client {client}");
    }
    assert_eq!(n.sm.counters().value("c"), 6);
    // The forgotten client's new writes apply normally, and are deduplicated again.
    let fresh = n.apply_as(Some(id(2, 2, 2)), add("c", 1));
    assert!(fresh.is_ok());
    assert_eq!(n.apply_as(Some(id(2, 2, 2)), add("c", 1)), fresh);
    assert_eq!(n.sm.counters().value("c"), 7);
}

// ---- determinism, compaction, snapshots ----

/// xorshift64: a deterministic source of test inputs.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_command(rng: &mut Rng) -> Command {
    let k = format!("k{}", rng.below(6));
    match rng.below(8) {
        0 | 1 => put(&k, &format!("v{}", rng.below(100))),
        2 => del(prefix(&k), true),
        3 => add("c", if rng.below(8) == 0 { u64::MAX } else { rng.below(5) }),
        4 => set("c", rng.below(3)),
        5 => txn(
            vec![cmp(&k, Greater, KeyField::Version(rng.below(3)))],
            vec![op_put(&k, "t"), op_add("d", 1)],
            vec![TxnOp::Range(spec(prefix(""))), TxnOp::DeleteRange { selector: key(&k), prev_kv: true }],
        ),
        6 => del_counter("d"),
        _ => Command::RegisterNode { node_id: rng.below(3), client_addr: format!("n{}", rng.below(9)) },
    }
}

fn random_batches(seed: u64, count: usize) -> Vec<BatchV1> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|i| {
            let proposals = (0..=rng.below(4))
                .map(|_| {
                    let command = random_command(&mut rng);
                    match rng.below(3) {
                        0 => prop(command),
                        _ => {
                            let seq = rng.below(30) + 1;
                            with_id(id(rng.below(3), seq, seq.saturating_sub(rng.below(6)).max(1)), command)
                        }
                    }
                })
                .collect();
            BatchV1 { leader_time_ms: 1_000 + i as u64 * rng.below(3), proposals }
        })
        .collect()
}

#[test]
fn replicas_applying_the_same_log_agree() {
    let config = SmConfig { history_revisions: 16 };
    let (mut a, mut b) = (StateMachine::new(config), StateMachine::new(config));
    for (i, batch) in random_batches(0x5eed, 400).iter().enumerate() {
        let index = i as u64 + 1;
        assert_eq!(a.apply_batch(batch, index), b.apply_batch(batch, index), "results of entry {index}");
    }
    assert_eq!(a, b);
    assert!(a.compact_revision() > 0, "the workload ran long enough to compact");
    assert!(a.revision() >= a.compact_revision() + config.history_revisions);
    let at = a.compact_revision();
    assert!(a.range(&spec(prefix("")), at).is_ok(), "the compact revision stays readable");
    assert_eq!(a.range(&spec(prefix("")), at - 1), Err(ReadError::Compacted { requested: at - 1, oldest: at }));
    assert_ne!(a, StateMachine::new(config), "the workload changed something");
}

#[test]
fn compaction_happens_at_twice_the_history_window() {
    let mut n = Node::with(StateMachine::new(SmConfig { history_revisions: 5 }));
    for i in 1..=9 {
        n.ok(put("k", &i.to_string()));
        n.ok(del(key("none"), false)); // no-ops do not advance the schedule
    }
    assert_eq!((n.sm.revision(), n.sm.compact_revision()), (9, 0));
    let at5 = n.read(prefix(""), 5);
    n.ok(put("k", "10"));
    assert_eq!((n.sm.revision(), n.sm.compact_revision()), (10, 5), "compacted back to the window");
    assert_eq!(n.read(prefix(""), 5), at5, "reads at the compact revision are unchanged");
    assert_eq!(n.values(5), ["k=5"]);
    assert_eq!(n.read(prefix(""), 4), Err(ReadError::Compacted { requested: 4, oldest: 5 }));
    for i in 11..=14 {
        n.ok(put("k", &i.to_string()));
    }
    assert_eq!(n.sm.compact_revision(), 5);
    n.ok(txn(vec![], vec![op_put("k", "15")], vec![]));
    assert_eq!(n.sm.compact_revision(), 10);
    assert_eq!(n.values(10), ["k=10"]);
}

#[test]
fn snapshot_round_trip_preserves_the_state_machine() {
    let mut sm = StateMachine::new(SmConfig { history_revisions: 8 });
    let batches = random_batches(42, 120);
    for (i, batch) in batches[..100].iter().enumerate() {
        sm.apply_batch(batch, i as u64 + 1);
    }
    let meta = SnapshotMeta { snapshot_id: "1-100".into(), ..SnapshotMeta::default() };
    let contents = SnapshotContents { format: SNAPSHOT_FORMAT, meta, state: sm.clone() };
    let bytes = contents.to_bytes().expect("encodes");
    let back = SnapshotContents::from_bytes(&bytes).expect("decodes");
    assert_eq!((&back.state, &back.meta), (&sm, &contents.meta));

    let mut restored = back.state;
    for (i, batch) in batches[100..].iter().enumerate() {
        let index = i as u64 + 101;
        assert_eq!(restored.apply_batch(batch, index), sm.apply_batch(batch, index));
    }
    assert_eq!(restored, sm, "a restored replica continues identically");

    let unknown = SnapshotContents { format: SNAPSHOT_FORMAT + 1, ..contents }.to_bytes().expect("encodes");
    let err = SnapshotContents::from_bytes(&unknown).expect_err("unknown format rejected");
    assert!(err.contains("not supported"), "{err}");
    assert!(SnapshotContents::from_bytes(&bytes[..bytes.len() / 2]).is_err(), "truncated snapshot rejected");
}
