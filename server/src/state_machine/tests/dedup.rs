//! Counters and exactly-once retries.

use super::*;

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

#[test]
fn cycling_more_clients_than_tracked_keeps_the_table_bounded() {
    // max_clients + 1 clients write in turn: every round evicts one client and revives another.
    let max_clients = 4;
    let mut n = Node::with(StateMachine::with_dedup(SmConfig::default(), Dedup::with_max_clients(max_clients)));
    let clients = max_clients as u64 + 1;
    let mut encoded_after = Vec::new();
    for round in 1..=4_000u64 {
        for client in 1..=clients {
            n.apply_as(Some(id(client, round, round)), add("c", 1)).expect("a new write applies");
        }
        if round % 1_000 == 0 {
            encoded_after.push(crate::log_entry::encode(&n.sm.dedup).expect("encode").len());
        }
    }
    assert_eq!(n.sm.counters().value("c"), 4_000 * clients, "every write applied exactly once");
    // The snapshot encoding of the table must not grow with the number of writes.
    let first = encoded_after[0];
    assert!(
        encoded_after.iter().all(|len| *len <= first + 64),
        "dedup table encoding grows with writes: {encoded_after:?} bytes after each 1,000 rounds"
    );
    // Still exactly-once: a retry of each client's last write returns its result, not a new apply.
    for client in 1..=clients {
        let retry = n.apply_as(Some(id(client, 4_000, 4_000)), add("c", 1));
        assert!(matches!(retry, Ok(_) | Err(CommandError::RetryTooOld { .. })), "client {client}: {retry:?}");
    }
    assert_eq!(n.sm.counters().value("c"), 4_000 * clients, "no retry applied again");
}
