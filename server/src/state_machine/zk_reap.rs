//! Deleting TTL nodes and containers like ZooKeeper's `ContainerManager`, with time kept out of
//! apply: the leader picks the candidates from its clock ([`StateMachine::zk_reap_candidates`],
//! a read) and proposes `Command::ZkReap`; apply ([`StateMachine::apply_zk_reap`]) deletes each
//! one only if it is still exactly as the leader saw it (same mzxid and cversion) and
//! childless, so a write or a child racing the proposal keeps the node.

use conclave_proto::zookeeper::Code;

use super::response::OutcomeBody;
use super::zk_result::ZkOpResult;
use super::znodes::key_of;
use super::StateMachine;
use crate::log_entry::zk::ZkReapTarget;

/// When containers are due (ZooKeeper's `znode.container.*` rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapRules {
    /// A container that never had a child is deleted once its mtime is this old (ms); 0 keeps
    /// it forever (ZooKeeper's `znode.container.maxNeverUsedIntervalMs`, default 0).
    pub never_used_ms: u64,
}

impl StateMachine {
    /// The znodes due for deletion at `now_ms` (the leader's clock): childless TTL nodes whose
    /// data has not changed for their TTL, childless containers that had a child, and
    /// childless containers never used for `rules.never_used_ms`. One pass over the table.
    pub fn zk_reap_candidates(&self, now_ms: u64, rules: ReapRules) -> Vec<ZkReapTarget> {
        let mut out = Vec::new();
        for (path, meta) in &self.znodes.nodes {
            if !meta.children.is_empty() {
                continue;
            }
            let idle = now_ms.saturating_sub(meta.mtime);
            let due = match self.znodes.ttl(path) {
                Some(ttl) => idle > ttl,
                None if meta.container => meta.cversion > 0 || (rules.never_used_ms > 0 && idle > rules.never_used_ms),
                None => false,
            };
            if let (true, Some(kv)) = (due, self.kv.get(&key_of(path))) {
                out.push(ZkReapTarget { path: path.clone(), mzxid: kv.mod_revision, cversion: meta.cversion });
            }
        }
        out
    }

    /// Deletes each target still unchanged (see the module docs) at revision `next`; one
    /// result per target: deleted, or NONODE / BADVERSION / NOTEMPTY when it changed.
    pub(super) fn apply_zk_reap(&mut self, targets: &[ZkReapTarget], next: u64) -> (bool, OutcomeBody) {
        let mut changed = false;
        let mut results = Vec::with_capacity(targets.len());
        for t in targets {
            let key = key_of(&t.path);
            let meta = self.znodes.nodes.get(&t.path);
            let reapable = meta.is_some_and(|m| m.container || self.znodes.ttl(&t.path).is_some());
            let code = match (self.kv.get(&key), meta) {
                (Some(kv), Some(m)) if reapable => {
                    if !m.children.is_empty() {
                        Some(Code::NotEmpty)
                    } else if kv.mod_revision != t.mzxid || m.cversion != t.cversion {
                        Some(Code::BadVersion)
                    } else {
                        None
                    }
                }
                _ => Some(Code::NoNode),
            };
            results.push(match code {
                Some(code) => ZkOpResult::Error { code: code.value() },
                None => {
                    self.write_key(&key, None, next);
                    self.znode_removed(&t.path, next);
                    changed = true;
                    ZkOpResult::Delete
                }
            });
        }
        (changed, OutcomeBody::Zk { results })
    }
}
