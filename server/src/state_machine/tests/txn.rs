//! Transactions: compares, branches, atomicity.

use super::*;

// ---- transactions ----

/// Runs a txn guarded by `compare` whose success branch is one read and whose failure branch is
/// empty, and checks which branch ran.
pub(super) fn check_compare(n: &mut Node, compare: Compare, expected: bool) {
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
    let all = |c: Vec<Compare>| txn_body(n.sm.clone().apply_command(&txn(c, vec![], vec![]), 0).expect("ok")).0;
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

#[test]
fn children_compares_answer_every_operator_around_the_live_count() {
    // Apply stops counting at `count + 1`; every operator must still answer as if it counted all.
    let mut n = Node::new();
    for i in 0..5 {
        n.ok(put(&format!("dir/{i}"), "v"));
    }
    n.ok(put("dirx", "not a child"));
    n.ok(del(key("dir/4"), false)); // 4 live children, one deleted
    let truth = |op: CompareOp, operand: u64| match op {
        Equal => 4 == operand,
        NotEqual => 4 != operand,
        Greater => 4 > operand,
        Less => 4 < operand,
    };
    for op in [Equal, NotEqual, Greater, Less] {
        for count in [0, 1, 3, 4, 5, 6, u64::MAX] {
            let compare = Compare::Children { prefix: b("dir/"), op, count };
            check_compare(&mut n, compare, truth(op, count));
        }
    }
}

#[test]
fn reversed_intervals_select_nothing_instead_of_panicking() {
    // Only a peer can propose these (validation refuses them from clients); apply must not panic.
    let mut n = Node::new();
    n.ok(put("b", "1"));
    let reversed = KeySelector::Interval { start: b("c"), end: b("a") };
    let empty = KeySelector::Interval { start: b("b"), end: b("b") };
    for selector in [reversed, empty] {
        n.apply(del(selector.clone(), true)).expect("applies");
        assert!(names(&n.read(selector, 0).expect("reads")).is_empty());
    }
    assert_eq!(names(&n.read(key("b"), 0).expect("reads")), vec!["b"]);
}
