//! Replicated cluster settings and reading older snapshot formats.

use super::*;
use crate::state_machine::dedup::DedupV1;
use crate::state_machine::legacy::StateMachineV1;
use crate::storage::snapshot_file::SnapshotContentsOf;

fn set_settings(history_revisions: u64, bootstrap: bool) -> Command {
    Command::SetSettings { history_revisions, bootstrap }
}

fn settings_of(outcome: Outcome) -> u64 {
    match outcome.body {
        OutcomeBody::Settings { history_revisions } => history_revisions,
        other => panic!("not a settings outcome: {other:?}"),
    }
}

#[test]
fn settings_come_from_the_log_and_the_first_bootstrap_wins() {
    let mut n = Node::with(StateMachine::default());
    assert_eq!((n.sm.replicated_settings(), n.sm.settings()), (None, SmConfig::default()), "unset: defaults");
    assert_eq!(settings_of(n.ok(set_settings(5, true))), 5);
    assert_eq!(settings_of(n.ok(set_settings(50, true))), 5, "a second bootstrap proposal changes nothing");
    assert_eq!(n.sm.revision(), 0, "settings do not bump the revision");
    for i in 1..=10 {
        n.ok(put("k", &i.to_string()));
    }
    assert_eq!(n.sm.compact_revision(), 5, "compacted with the replicated window (5), back to 5 revisions");
    assert_eq!(settings_of(n.ok(set_settings(2, false))), 2, "a non-bootstrap command changes the value");
    assert_eq!(n.sm.compact_revision(), 8, "revision 10 >= 5 + 2 x 2: compacted to 10 - 2 at once");
    n.ok(put("k", "11"));
    assert_eq!(n.sm.compact_revision(), 8);
    assert_eq!(n.sm.replicated_settings(), Some(SmConfig { history_revisions: 2 }));
}

#[test]
fn settings_survive_a_snapshot() {
    let mut n = Node::with(StateMachine::default());
    n.ok(set_settings(7, true));
    let meta = SnapshotMeta { snapshot_id: "1-1".into(), ..SnapshotMeta::default() };
    let bytes = SnapshotContents { format: SNAPSHOT_FORMAT, meta, state: n.sm.clone() }.to_bytes().expect("encodes");
    let back = SnapshotContents::from_bytes(&bytes).expect("decodes");
    assert_eq!(back.state.replicated_settings(), Some(SmConfig { history_revisions: 7 }));
    assert_eq!(back.state, n.sm);
}

#[test]
fn format_1_snapshots_still_load() {
    // Format 1 as the old code wrote it: its node's own flag, and an eviction order holding a
    // revived client (9) and a client forgotten twice (7).
    let dedup = DedupV1::for_test(4, &[(7, 3), (8, 5)], &[7, 9, 8, 7]);
    let state = StateMachineV1 {
        _config: SmConfig { history_revisions: 3 },
        revision: 12,
        kv: Default::default(),
        counters: Default::default(),
        dedup,
        sessions: Default::default(),
        client_addrs: [(1, "127.0.0.1:7379".to_string())].into_iter().collect(),
    };
    let meta = SnapshotMeta { snapshot_id: "1-40".into(), ..SnapshotMeta::default() };
    let old = SnapshotContentsOf { _format: 1, meta: meta.clone(), state };
    let bytes = crate::log_entry::encode(&old).expect("encodes");
    let loaded = SnapshotContents::from_bytes(&bytes).expect("format 1 decodes");
    assert_eq!((loaded.format, &loaded.meta), (SNAPSHOT_FORMAT, &meta));
    let mut sm = loaded.state;
    assert_eq!(sm.revision(), 12);
    assert_eq!(sm.client_addrs().get(&1).map(String::as_str), Some("127.0.0.1:7379"));
    assert_eq!(sm.replicated_settings(), None, "a node's own flag is not taken as the cluster's value");
    let too_old = Err(CommandError::RetryTooOld { client_id: 7, seq: 3 });
    assert_eq!(
        sm.apply_batch(&BatchV1 { leader_time_ms: 1, proposals: vec![with_id(id(7, 3, 1), add("c", 1))] }, 41),
        vec![too_old]
    );
    assert_eq!((sm.dedup.high_seq(8), sm.dedup.high_seq(9)), (Some(5), None), "forgotten clients carried over");
    // Written again, it is the current format and decodes to the same state.
    let again = SnapshotContents { format: SNAPSHOT_FORMAT, meta, state: sm.clone() }.to_bytes().expect("encodes");
    assert_eq!(SnapshotContents::from_bytes(&again).expect("decodes").state, sm);
}

#[test]
fn format_2_snapshots_still_load_without_znodes() {
    use crate::state_machine::legacy::{StateMachineV2, StateMachineV4};
    let mut n = Node::new();
    n.ok(set_settings(9, true));
    n.ok(put("k", "v"));
    let sm = n.sm.clone();
    let StateMachineV4 { settings, revision, kv, counters, dedup, sessions, client_addrs, .. } =
        StateMachineV4::of(&sm);
    let state = StateMachineV2 { settings, revision, kv, counters, dedup, sessions, client_addrs };
    let loaded = load_old_format(2, state);
    assert_eq!(loaded, sm, "the same state, with an empty ZooKeeper namespace");
}

#[test]
fn format_4_snapshots_still_load_without_auth_state() {
    use crate::state_machine::legacy::StateMachineV4;
    let mut n = Node::new();
    n.ok(set_settings(9, true));
    n.ok(put("k", "v"));
    let sm = n.sm.clone();
    let loaded = load_old_format(4, StateMachineV4::of(&sm));
    assert_eq!(loaded, sm, "the same state, with no users, roles or secret");
}
