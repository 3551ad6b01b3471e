//! Sessions, ephemeral keys, leases, fencing and children compares.

use super::txn::check_compare;
use super::*;
use crate::state_machine::response::FencingFailure;

fn open(n: &mut Node, ttl_ms: u64) -> u64 {
    match n.ok(Command::SessionOpen { ttl_ms }).body {
        OutcomeBody::SessionOpened { session_id } => session_id,
        other => panic!("unexpected {other:?}"),
    }
}

fn put_in(k: &str, v: &str, session: u64) -> Command {
    Command::Put { key: b(k), value: b(v), prev_kv: false, session }
}

fn acquire(n: &mut Node, name: &str, session_id: u64) -> (bool, u64, u64) {
    match n.ok(Command::LeaseAcquire { name: name.into(), session_id, info: b("me") }).body {
        OutcomeBody::LeaseAcquired { granted, holder } => (granted, holder.session_id, holder.token),
        other => panic!("unexpected {other:?}"),
    }
}

fn fenced_put(name: &str, token: u64, k: &str) -> Command {
    txn(vec![Compare::Lease { name: name.into(), token }], vec![op_put(k, "v")], vec![op_put("else-branch", "ran")])
}

#[test]
fn session_end_deletes_its_keys_and_releases_leases_at_one_revision() {
    let mut n = Node::new();
    let s = open(&mut n, 5_000);
    let other = open(&mut n, 5_000);
    assert_ne!(s, other, "session ids are unique");
    assert_eq!(n.sm.revision(), 0, "opening a session changes no key");
    n.ok(put_in("e/1", "a", s));
    n.ok(put_in("e/2", "b", s));
    n.ok(put("plain", "c"));
    n.ok(put_in("e/3", "c", other));
    // Re-putting without a session unbinds the key.
    n.ok(put_in("e/4", "d", s));
    n.ok(put("e/4", "d2"));
    let (granted, _, _) = acquire(&mut n, "lock", s);
    assert!(granted);
    assert_eq!(n.sm.sessions().get(s).map(|x| x.keys.len()), Some(2));

    let before = n.sm.revision();
    let closed = n.ok(Command::SessionExpire { session_id: s });
    assert_eq!(closed.revision, before + 1, "keys and leases go at one revision");
    assert_eq!(closed.body, OutcomeBody::SessionClosed { deleted_keys: 2, released_leases: vec!["lock".into()] });
    assert_eq!(n.values(0), vec!["e/3=c", "e/4=d2", "plain=c"]);
    let changes = n.sm.kv().changes_at(closed.revision);
    assert_eq!(changes.len(), 2, "watchers see both deletes at that revision");
    assert!(n.sm.sessions().lease("lock").and_then(|l| l.holder.as_ref()).is_none());
    // Expiring again is a no-op; closing an unknown session is an error; so is binding to it.
    let again = n.ok(Command::SessionExpire { session_id: s });
    assert_eq!(again.revision, closed.revision);
    assert_eq!(n.apply(Command::SessionClose { session_id: s }), Err(CommandError::SessionNotFound { session_id: s }));
    assert_eq!(n.apply(put_in("x", "y", s)), Err(CommandError::SessionNotFound { session_id: s }));
    assert!(n.get("x").is_none());
}

#[test]
fn lease_tokens_increase_and_fencing_rejects_stale_holders() {
    let mut n = Node::new();
    let a = open(&mut n, 5_000);
    let b_ = open(&mut n, 5_000);
    let (granted, holder, t1) = acquire(&mut n, "leader", a);
    assert!(granted && holder == a);
    assert_eq!(t1, n.sm.revision(), "the token is the grant's revision");
    assert_eq!(acquire(&mut n, "leader", a), (true, a, t1), "re-acquire by the holder keeps the grant");
    assert_eq!(acquire(&mut n, "leader", b_), (false, a, t1), "held by a");
    assert_eq!(
        n.apply(Command::LeaseRelease { name: "leader".into(), token: t1 + 7 }),
        Err(CommandError::LeaseNotHeld { name: "leader".into(), token: t1 + 7, current: t1 })
    );
    n.ok(put("filler", "x"));
    n.ok(Command::SessionExpire { session_id: a });
    let (granted, holder, t2) = acquire(&mut n, "leader", b_);
    assert!(granted && holder == b_ && t2 > t1);
    let state = n.sm.sessions().lease("leader").cloned().unwrap_or_default();
    assert_eq!((state.transitions, state.last_token), (1, t2));

    // The stale holder's fenced write: rejected outright, neither branch runs, nothing changes.
    let rev = n.sm.revision();
    let stale = n.ok(fenced_put("leader", t1, "pointer"));
    assert_eq!(
        stale.body,
        OutcomeBody::Txn {
            succeeded: false,
            responses: vec![],
            fencing_failure: Some(FencingFailure { lease: "leader".into(), presented_token: t1, current_token: t2 }),
        }
    );
    assert_eq!((stale.revision, n.get("pointer"), n.get("else-branch")), (rev, None, None));
    let (ok, _) = txn_body(n.ok(fenced_put("leader", t2, "pointer")));
    assert!(ok);
    n.ok(Command::LeaseRelease { name: "leader".into(), token: t2 });
    match n.ok(fenced_put("leader", t2, "late")).body {
        OutcomeBody::Txn { fencing_failure: Some(f), .. } => assert_eq!(f.current_token, 0, "not held"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn txn_put_to_an_unknown_session_aborts_the_whole_txn() {
    let mut n = Node::new();
    let ops = vec![op_put("a", "1"), TxnOp::Put { key: b("b"), value: b("2"), prev_kv: false, session: 42 }];
    assert_eq!(n.apply(txn(vec![], ops, vec![])), Err(CommandError::SessionNotFound { session_id: 42 }));
    assert_eq!((n.get("a"), n.sm.revision()), (None, 0));
}

#[test]
fn children_compare_counts_live_keys_under_a_prefix() {
    let mut n = Node::new();
    n.ok(put("locks/h/1", ""));
    n.ok(put("locks/h/2", ""));
    n.ok(put("locks/hx", ""));
    let children = |count| Compare::Children { prefix: b("locks/h/"), op: Equal, count };
    check_compare(&mut n, children(2), true);
    check_compare(&mut n, children(0), false);
    n.ok(del(prefix("locks/h/"), false));
    check_compare(&mut n, children(0), true);
    check_compare(&mut n, Compare::Children { prefix: b("locks/"), op: Greater, count: 0 }, true);
}

#[test]
fn a_waiting_acquires_re_proposal_is_not_granted_once_its_client_moved_on() {
    let mut n = Node::new();
    let holder = open(&mut n, 5_000);
    let waiter = open(&mut n, 5_000);
    assert!(acquire(&mut n, "jm", holder).0);
    let original = RequestId { client_id: 9, seq: 1, first_incomplete: 1 };
    let first = n.apply_as(Some(original), Command::LeaseAcquire { name: "jm".into(), session_id: waiter, info: b("w") });
    assert!(matches!(first, Ok(Outcome { body: OutcomeBody::LeaseAcquired { granted: false, .. }, .. })));
    n.ok(Command::SessionClose { session_id: holder });
    // The waiter's client gave up and wrote again (seq 2) before the stale wait re-proposed.
    let later = RequestId { client_id: 9, seq: 2, first_incomplete: 2 };
    n.apply_as(Some(later), put("elsewhere", "x")).expect("put");
    let retry = |n: &mut Node| {
        n.ok(Command::LeaseAcquireRetry { name: "jm".into(), session_id: waiter, info: b("w"), original })
    };
    match retry(&mut n).body {
        OutcomeBody::LeaseAcquired { granted, .. } => assert!(!granted, "a superseded wait must not take the lease"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(n.sm.sessions().lease("jm").and_then(|l| l.holder.as_ref()).is_none());
    // A wait whose client has not moved on is granted as before.
    let fresh = RequestId { client_id: 10, seq: 1, first_incomplete: 1 };
    let granted = n.ok(Command::LeaseAcquireRetry { name: "jm".into(), session_id: waiter, info: b("w"), original: fresh });
    assert!(matches!(granted.body, OutcomeBody::LeaseAcquired { granted: true, .. }));
}
