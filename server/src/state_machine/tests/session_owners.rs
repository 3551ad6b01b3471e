//! Session owners (`--auth`): recorded at open, gone with the session, kept in snapshots, and
//! absent from snapshots of format 5.

use super::*;

fn opened(outcome: Outcome) -> u64 {
    match outcome.body {
        OutcomeBody::SessionOpened { session_id } => session_id,
        other => panic!("unexpected {other:?}"),
    }
}

fn open_owned(n: &mut Node, owner: &str) -> u64 {
    opened(n.ok(Command::SessionOpenOwned { ttl_ms: 5_000, owner: owner.into() }))
}

#[test]
fn an_owned_session_keeps_its_owner_until_it_ends() {
    let mut n = Node::new();
    let a = open_owned(&mut n, "a");
    let plain = opened(n.ok(Command::SessionOpen { ttl_ms: 5_000 }));
    let other = open_owned(&mut n, "b");
    assert_eq!(
        (n.sm.session_owner(a), n.sm.session_owner(plain), n.sm.session_owner(other)),
        (Some("a"), None, Some("b"))
    );
    assert_eq!(n.sm.sessions().get(a).map(|s| s.ttl_ms), Some(5_000), "an owned session is a session like any other");
    assert_eq!(n.sm.revision(), 0, "opening changes no key");
    n.ok(Command::Put { key: b("/a/e"), value: b("v"), prev_kv: false, session: a });

    let closed = n.ok(Command::SessionClose { session_id: a });
    assert_eq!(closed.body, OutcomeBody::SessionClosed { deleted_keys: 1, released_leases: Vec::new() });
    assert_eq!(n.sm.session_owner(a), None, "the owner goes with the session");
    n.ok(Command::SessionExpire { session_id: other });
    assert_eq!(n.sm.session_owner(other), None);
    let again = open_owned(&mut n, "a");
    assert!(again > other, "ids are never reused, so an owner never passes to a new session");
}

#[test]
fn owners_survive_a_snapshot() {
    let mut n = Node::new();
    let a = open_owned(&mut n, "a");
    let meta = SnapshotMeta { snapshot_id: "1-1".into(), ..SnapshotMeta::default() };
    let bytes = SnapshotContents { format: SNAPSHOT_FORMAT, meta, state: n.sm.clone() }.to_bytes().expect("encodes");
    let loaded = SnapshotContents::from_bytes(&bytes).expect("decodes");
    assert_eq!(loaded.state.session_owner(a), Some("a"));
    assert_eq!(loaded.state, n.sm);
}

#[test]
fn format_5_snapshots_still_load_with_no_session_owners() {
    use crate::state_machine::legacy::{StateMachineV4, StateMachineV5};
    let mut n = Node::new();
    let s = opened(n.ok(Command::SessionOpen { ttl_ms: 5_000 }));
    n.ok(Command::Put { key: b("/e"), value: b("v"), prev_kv: false, session: s });
    let sm = n.sm.clone();
    let state = StateMachineV5 { base: StateMachineV4::of(&sm), auth: sm.auth.clone() };
    // The nested encoding is format 5's: its nine fields one after the other.
    let flat = (
        sm.settings,
        sm.revision,
        &sm.kv,
        &sm.counters,
        &sm.dedup,
        &sm.sessions,
        &sm.client_addrs,
        &sm.znodes,
        &sm.auth,
    );
    assert_eq!(crate::log_entry::encode(&state).ok(), crate::log_entry::encode(&flat).ok());
    let loaded = load_old_format(5, state);
    assert_eq!(loaded, sm, "the same state: its session has no owner (anyone may use it)");
    assert_eq!(loaded.session_owner(s), None);
    assert!(loaded.sessions().get(s).is_some());
}
