//! Determinism across replicas, compaction, snapshots.

use super::*;

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

/// A large window is compacted a step at a time (bounded work per apply), never below the window.
#[test]
fn a_large_window_is_compacted_in_steps() {
    use crate::state_machine::COMPACT_STEP;
    let window = 4 * COMPACT_STEP;
    let mut n = Node::with(StateMachine::new(SmConfig { history_revisions: window }));
    let mut points = Vec::new();
    for i in 1..=window + 3 * COMPACT_STEP {
        n.ok(put(&format!("k{}", i % 7), "v"));
        if points.last() != Some(&n.sm.compact_revision()) {
            points.push(n.sm.compact_revision());
        }
        assert!(n.sm.revision() - n.sm.compact_revision() < window + COMPACT_STEP, "history within window + step");
    }
    assert_eq!(points, [0, COMPACT_STEP, 2 * COMPACT_STEP, 3 * COMPACT_STEP], "one step at a time");
    assert!(n.read(prefix(""), 3 * COMPACT_STEP).is_ok(), "the compact revision stays readable");
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
