//! TTL nodes and containers: the leader's candidates (from its clock, outside apply) and the
//! conditional deletion apply performs; snapshot format 3 still loads.

use conclave_proto::zookeeper::Code;

use super::znodes::{create, err, session, stat, zk};
use super::*;
use crate::log_entry::zk::{ZkOp, ZkReapTarget};
use crate::state_machine::zk_result::ZkOpResult;
use crate::state_machine::ReapRules;

fn ttl_node(path: &str, ttl_ms: u64) -> ZkOp {
    ZkOp::CreateTtl { path: path.into(), data: Some(b("t")), sequential: false, acl: vec![], ttl_ms }
}

fn container(path: &str) -> ZkOp {
    ZkOp::Create { path: path.into(), data: None, ephemeral: false, sequential: false, container: true, acl: vec![] }
}

fn paths(targets: &[ZkReapTarget]) -> Vec<&str> {
    targets.iter().map(|t| t.path.as_str()).collect()
}

fn reap(n: &mut Node, targets: Vec<ZkReapTarget>) -> Vec<ZkOpResult> {
    match n.ok(Command::ZkReap { targets }).body {
        OutcomeBody::Zk { results } => results,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ttl_nodes_encode_their_ttl_and_go_only_when_idle_childless_and_unchanged() {
    let mut n = Node::new();
    let s = session(&mut n);
    // Created at leader time 1_000 (`Node::batch`).
    zk(&mut n, s, vec![ttl_node("/t", 500), ttl_node("/busy", 500), create("/busy/child", "")]);
    assert_eq!(stat(&n, "/t").ephemeral_owner, 0xff00_0000_0000_01f4, "ZooKeeper's EphemeralType TTL encoding");
    let rules = ReapRules::default();
    assert!(n.sm.zk_reap_candidates(1_500, rules).is_empty(), "not idle longer than the TTL yet");
    let due = n.sm.zk_reap_candidates(1_501, rules);
    assert_eq!(paths(&due), ["/t"], "a TTL node with a child stays");
    // A data change between the leader's decision and apply keeps the node.
    zk(&mut n, s, vec![ZkOp::SetData { path: "/t".into(), data: None, version: -1 }]);
    assert_eq!(reap(&mut n, due.clone()), vec![err(Code::BadVersion)]);
    assert!(n.sm.zk_stat("/t").is_some());
    let due = n.sm.zk_reap_candidates(10_000, rules);
    assert_eq!(reap(&mut n, due), vec![ZkOpResult::Delete]);
    assert_eq!(n.sm.zk_stat("/t"), None);
    assert_eq!(n.sm.znodes().ttl("/t"), None, "the TTL is forgotten with the node");
    assert_eq!(reap(&mut n, vec![ZkReapTarget { path: "/t".into(), mzxid: 1, cversion: 0 }]), vec![err(Code::NoNode)]);
}

#[test]
fn containers_go_once_emptied_or_never_used_past_the_grace_and_never_with_children() {
    let mut n = Node::new();
    let s = session(&mut n);
    zk(&mut n, s, vec![container("/used"), create("/used/a", ""), container("/fresh"), create("/plain", "")]);
    let rules = ReapRules { never_used_ms: 0 };
    assert!(n.sm.zk_reap_candidates(u64::MAX, rules).is_empty(), "a container with a child stays");
    zk(&mut n, s, vec![ZkOp::Delete { path: "/used/a".into(), version: -1 }]);
    let due = n.sm.zk_reap_candidates(1_000, rules);
    assert_eq!(paths(&due), ["/used"], "emptied: due at the next check; never used: kept (grace 0)");
    // A child created between the decision and apply keeps it.
    zk(&mut n, s, vec![create("/used/b", "")]);
    assert_eq!(reap(&mut n, due.clone()), vec![err(Code::NotEmpty)]);
    zk(&mut n, s, vec![ZkOp::Delete { path: "/used/b".into(), version: -1 }]);
    assert_eq!(reap(&mut n, due), vec![err(Code::BadVersion)], "cversion changed since the decision");
    let grace = ReapRules { never_used_ms: 5_000 };
    assert_eq!(paths(&n.sm.zk_reap_candidates(6_001, grace)), ["/fresh", "/used"]);
    let due = n.sm.zk_reap_candidates(6_001, grace);
    assert_eq!(reap(&mut n, due), vec![ZkOpResult::Delete, ZkOpResult::Delete]);
    assert_eq!((n.sm.zk_stat("/fresh"), n.sm.zk_stat("/used")), (None, None));
    assert!(n.sm.zk_stat("/plain").is_some(), "ordinary nodes are never reaped");
    let forged = ZkReapTarget { path: "/plain".into(), mzxid: stat(&n, "/plain").mzxid, cversion: 0 };
    assert_eq!(reap(&mut n, vec![forged]), vec![err(Code::NoNode)], "only containers and TTL nodes are reapable");
}

#[test]
fn a_format_3_snapshot_loads_without_ttls_or_zookeeper_addresses() {
    use crate::state_machine::legacy::{StateMachineV3, StateMachineV4, ZnodesV3};
    let mut n = Node::new();
    let s = session(&mut n);
    zk(&mut n, s, vec![create("/a", "1")]);
    let sm = n.sm.clone();
    let StateMachineV4 { settings, revision, kv, counters, dedup, sessions, client_addrs, znodes } =
        StateMachineV4::of(&sm);
    let znodes = ZnodesV3 { nodes: znodes.nodes.clone(), secret: znodes.secret() };
    let old = StateMachineV3 { settings, revision, kv, counters, dedup, sessions, client_addrs, znodes };
    let loaded = load_old_format(3, old);
    assert_eq!(loaded, n.sm);
    assert!(loaded.znodes().zk_addrs().is_empty());
}
