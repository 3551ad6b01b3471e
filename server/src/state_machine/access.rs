//! What a command touches, for the permission check: every key, prefix or range any part of it
//! reads or writes. Counter and lease names are keys (their UTF-8 bytes), under the same prefix
//! rules, so a role scoped to `/conclave/ha/A/` covers cluster A's counters and leases named
//! under that prefix.
//!
//! | command | needs |
//! |---|---|
//! | put, delete range | write on the key / range |
//! | txn | read on every compared key (`Children`: the prefix), counter and lease; read on every range op; write on every put / delete / counter change, in both branches |
//! | counter add / set / delete | write on the name |
//! | lease acquire / release | write on the name |
//! | session open / close | an identity only |
//! | auth changes, internal commands | root |
//!
//! Besides permissions, every session a command names ([`sessions_named`]) must be the
//! caller's own, or have no owner, unless the caller is root (`Authorizer::require_session_owner`).
//!
//! Checked twice: by the member that received the request (`auth::Authorizer`, for an early and
//! detailed refusal), and by apply for a command sent as `Command::AsUser` ([`refusal`], on the
//! state at the entry's index: what was revoked before it in the log is honoured everywhere).

use super::auth::ROOT;
use super::StateMachine;
use crate::log_entry::auth::PermType;
use crate::log_entry::{Command, Compare, KeySelector, TxnOp};

/// `selector` for people: `key "/a"`, `prefix "/a/"`, `range ["/a", "/b")`.
pub fn describe(selector: &KeySelector) -> String {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match selector {
        KeySelector::Key(k) => format!("key {:?}", s(k)),
        KeySelector::Prefix(p) => format!("prefix {:?}", s(p)),
        KeySelector::Interval { start, end } => format!("range [{:?}, {:?})", s(start), s(end)),
    }
}

/// Why `user` may not run `command` on `sm` as it is now (`None`: it may). Pure: lookups in
/// the auth state and the session owners; apply's check of `Command::AsUser`.
pub fn refusal(sm: &StateMachine, user: &str, command: &Command) -> Option<String> {
    if user == ROOT {
        return None;
    }
    match needs(command) {
        Needs::Root => return Some(format!("user {user:?} may not run this operation (root only)")),
        Needs::Keys(needs) => {
            if let Some((perm, selector)) = needs.iter().find(|(p, s)| !sm.auth().allows(user, *p, s)) {
                return Some(format!(
                    "user {user:?} lacks {} permission on {} (revoked before the write was applied)",
                    perm.name(),
                    describe(selector)
                ));
            }
        }
    }
    let foreign = sessions_named(command).into_iter().find(|id| sm.session_owner(*id).is_some_and(|o| o != user))?;
    Some(format!("session {foreign} belongs to another user; only the user who opened it (or root) may use it"))
}

/// What a command needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Needs {
    /// These permissions (none: any authenticated caller).
    Keys(Vec<(PermType, KeySelector)>),
    /// The root user.
    Root,
}

fn name_key(name: &str) -> KeySelector {
    KeySelector::Key(name.as_bytes().to_vec())
}

fn compare(c: &Compare) -> (PermType, KeySelector) {
    let selector = match c {
        Compare::Key { key, .. } => KeySelector::Key(key.clone()),
        Compare::Counter { name, .. } | Compare::Lease { name, .. } => name_key(name),
        Compare::Children { prefix, .. } => KeySelector::Prefix(prefix.clone()),
    };
    (PermType::Read, selector)
}

fn op(o: &TxnOp) -> (PermType, KeySelector) {
    match o {
        TxnOp::Range(spec) => (PermType::Read, spec.selector.clone()),
        TxnOp::Put { key, .. } => (PermType::Write, KeySelector::Key(key.clone())),
        TxnOp::DeleteRange { selector, .. } => (PermType::Write, selector.clone()),
        TxnOp::CounterGet { name } => (PermType::Read, name_key(name)),
        TxnOp::CounterAdd { name, .. } | TxnOp::CounterSet { name, .. } | TxnOp::CounterDelete { name } => {
            (PermType::Write, name_key(name))
        }
    }
}

/// What `command` needs.
pub fn needs(command: &Command) -> Needs {
    let write = |s: KeySelector| Needs::Keys(vec![(PermType::Write, s)]);
    match command {
        Command::Put { key, .. } => write(KeySelector::Key(key.clone())),
        Command::DeleteRange { selector, .. } => write(selector.clone()),
        Command::Txn { compares, success, failure } => {
            Needs::Keys(compares.iter().map(compare).chain(success.iter().chain(failure).map(op)).collect())
        }
        Command::CounterAdd { name, .. } | Command::CounterSet { name, .. } | Command::CounterDelete { name } => {
            write(name_key(name))
        }
        Command::LeaseAcquire { name, .. }
        | Command::LeaseAcquireRetry { name, .. }
        | Command::LeaseRelease { name, .. } => write(name_key(name)),
        Command::SessionOpen { .. } | Command::SessionOpenOwned { .. } | Command::SessionClose { .. } => {
            Needs::Keys(Vec::new())
        }
        Command::SessionExpire { .. }
        | Command::RegisterNode { .. }
        | Command::SetSettings { .. }
        | Command::Zk { .. }
        | Command::ZkSecret { .. }
        | Command::ZkBatch { .. }
        | Command::ZkReap { .. }
        | Command::RegisterZkAddr { .. }
        | Command::ZkAttach { .. }
        | Command::Auth(_) => Needs::Root,
        Command::AsUser { command, .. } => needs(command),
    }
}

/// The sessions `command` uses or binds keys and leases to (none for 0, "no session"): the ones
/// whose owner must be the caller. A waiting acquire's re-proposals (`LeaseAcquireRetry`) name the
/// session its first, checked, `LeaseAcquire` named; expiry is the leader's, root only.
pub fn sessions_named(command: &Command) -> Vec<u64> {
    let ids = match command {
        Command::Put { session, .. } => vec![*session],
        Command::Txn { success, failure, .. } => success
            .iter()
            .chain(failure)
            .filter_map(|op| match op {
                TxnOp::Put { session, .. } => Some(*session),
                _ => None,
            })
            .collect(),
        Command::SessionClose { session_id }
        | Command::LeaseAcquire { session_id, .. }
        | Command::LeaseAcquireRetry { session_id, .. } => vec![*session_id],
        Command::AsUser { command, .. } => return sessions_named(command),
        // The others name none a caller chooses: expiry is the leader's (root only here), ZooKeeper
        // commands come from the ZooKeeper port only.
        _ => Vec::new(),
    };
    let mut ids: Vec<u64> = ids.into_iter().filter(|id| *id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::{CompareOp, KeyField, RangeSpec};

    #[test]
    fn a_txn_needs_every_key_of_both_branches_and_its_compares() {
        let cmd = Command::Txn {
            compares: vec![
                Compare::Key { key: b"/a".to_vec(), op: CompareOp::Equal, field: KeyField::Version(1) },
                Compare::Children { prefix: b"/p/".to_vec(), op: CompareOp::Equal, count: 0 },
                Compare::Lease { name: "/l".into(), token: 1 },
            ],
            success: vec![TxnOp::Put { key: b"/b".to_vec(), value: Vec::new(), prev_kv: false, session: 0 }],
            failure: vec![
                TxnOp::Range(RangeSpec {
                    selector: KeySelector::Prefix(b"/r/".to_vec()),
                    limit: 0,
                    keys_only: false,
                    count_only: false,
                }),
                TxnOp::CounterAdd { name: "/c".into(), delta: 1 },
            ],
        };
        let key = |k: &str| KeySelector::Key(k.as_bytes().to_vec());
        assert_eq!(
            needs(&cmd),
            Needs::Keys(vec![
                (PermType::Read, key("/a")),
                (PermType::Read, KeySelector::Prefix(b"/p/".to_vec())),
                (PermType::Read, key("/l")),
                (PermType::Write, key("/b")),
                (PermType::Read, KeySelector::Prefix(b"/r/".to_vec())),
                (PermType::Write, key("/c")),
            ])
        );
        assert_eq!(needs(&Command::SessionOpen { ttl_ms: 1 }), Needs::Keys(Vec::new()));
        assert_eq!(needs(&Command::ZkSecret { secret: [0; 2] }), Needs::Root);
        assert_eq!(needs(&Command::SessionOpenOwned { ttl_ms: 1, owner: "a".into() }), Needs::Keys(Vec::new()));
    }

    #[test]
    fn every_session_a_write_binds_is_named_once() {
        let put = |session| TxnOp::Put { key: b"/k".to_vec(), value: Vec::new(), prev_kv: false, session };
        let txn = Command::Txn { compares: Vec::new(), success: vec![put(7), put(0)], failure: vec![put(3), put(7)] };
        assert_eq!(sessions_named(&txn), vec![3, 7]);
        let ephemeral = Command::Put { key: b"/k".to_vec(), value: Vec::new(), prev_kv: false, session: 5 };
        assert_eq!(sessions_named(&ephemeral), vec![5]);
        let plain = Command::Put { key: b"/k".to_vec(), value: Vec::new(), prev_kv: false, session: 0 };
        assert_eq!(sessions_named(&plain), Vec::<u64>::new());
        let acquire = Command::LeaseAcquire { name: "/l".into(), session_id: 9, info: Vec::new() };
        assert_eq!(sessions_named(&acquire), vec![9]);
        assert_eq!(sessions_named(&Command::SessionClose { session_id: 4 }), vec![4]);
        assert_eq!(sessions_named(&Command::LeaseRelease { name: "/l".into(), token: 1 }), Vec::<u64>::new());
    }
}
