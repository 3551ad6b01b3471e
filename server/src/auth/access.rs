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

use crate::log_entry::auth::PermType;
use crate::log_entry::{Command, Compare, KeySelector, TxnOp};

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
        Command::SessionOpen { .. } | Command::SessionClose { .. } => Needs::Keys(Vec::new()),
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
    }
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
    }
}
