//! The ZooKeeper namespace: exact Stat bookkeeping, sequential names, all-or-nothing multi,
//! ephemerals bound to sessions, containers, determinism.

use conclave_proto::zookeeper::Code;

use super::*;
use crate::log_entry::zk::ZkOp;
use crate::state_machine::zk_result::{ZStat, ZkOpResult};

pub(super) fn create(path: &str, data: &str) -> ZkOp {
    ZkOp::Create {
        path: path.into(),
        data: Some(b(data)),
        ephemeral: false,
        sequential: false,
        container: false,
        acl: vec![],
    }
}

pub(super) fn zk(n: &mut Node, session: u64, ops: Vec<ZkOp>) -> (u64, Vec<ZkOpResult>) {
    let outcome = n.ok(Command::Zk { session, ids: vec![], ops });
    match outcome.body {
        OutcomeBody::Zk { results } => (outcome.revision, results),
        other => panic!("not a zk outcome: {other:?}"),
    }
}

pub(super) fn session(n: &mut Node) -> u64 {
    match n.ok(Command::SessionOpen { ttl_ms: 10_000 }).body {
        OutcomeBody::SessionOpened { session_id } => session_id,
        other => panic!("{other:?}"),
    }
}

pub(super) fn err(code: Code) -> ZkOpResult {
    ZkOpResult::Error { code: code.value() }
}

pub(super) fn stat(n: &Node, path: &str) -> ZStat {
    n.sm.zk_stat(path).expect("exists")
}

#[test]
fn stat_fields_follow_zookeeper() {
    let mut n = Node::new();
    let s = session(&mut n);
    let (rev, r) = zk(&mut n, s, vec![create("/a", "xy")]);
    assert_eq!(rev, 1);
    let created =
        ZStat { czxid: 1, mzxid: 1, ctime: 1_000, mtime: 1_000, data_length: 2, pzxid: 1, ..ZStat::default() };
    assert_eq!(r, vec![ZkOpResult::Create { path: "/a".into(), stat: created }]);
    zk(&mut n, s, vec![create("/a/b", "")]);
    zk(&mut n, s, vec![ZkOp::SetData { path: "/a".into(), data: Some(b("z")), version: 0 }]);
    let st = stat(&n, "/a");
    assert_eq!((st.czxid, st.mzxid, st.version, st.data_length), (1, 3, 1, 1));
    assert_eq!((st.cversion, st.num_children, st.pzxid), (1, 1, 2), "a child changes cversion and pzxid, not mzxid");
    zk(&mut n, s, vec![ZkOp::Delete { path: "/a/b".into(), version: -1 }]);
    let st = stat(&n, "/a");
    assert_eq!((st.cversion, st.num_children, st.pzxid, st.mzxid), (2, 0, 4, 3));
    assert_eq!(stat(&n, "/").num_children, 1);
}

#[test]
fn errors_are_zookeepers_codes() {
    let mut n = Node::new();
    let s = session(&mut n);
    zk(&mut n, s, vec![create("/a", "")]);
    zk(&mut n, s, vec![create("/a/b", "")]);
    let one = |n: &mut Node, op| zk(n, s, vec![op]).1;
    assert_eq!(one(&mut n, create("/a", "")), vec![err(Code::NodeExists)]);
    assert_eq!(one(&mut n, create("/x/y", "")), vec![err(Code::NoNode)]);
    assert_eq!(one(&mut n, ZkOp::Delete { path: "/a".into(), version: -1 }), vec![err(Code::NotEmpty)]);
    assert_eq!(one(&mut n, ZkOp::Delete { path: "/a/b".into(), version: 3 }), vec![err(Code::BadVersion)]);
    assert_eq!(one(&mut n, ZkOp::SetData { path: "/q".into(), data: None, version: -1 }), vec![err(Code::NoNode)]);
    let eph = ZkOp::Create {
        path: "/e".into(),
        data: None,
        ephemeral: true,
        sequential: false,
        container: false,
        acl: vec![],
    };
    one(&mut n, eph);
    assert_eq!(one(&mut n, create("/e/c", "")), vec![err(Code::NoChildrenForEphemerals)]);
    assert_eq!(zk(&mut n, 999, vec![create("/z", "")]).1, vec![err(Code::SessionExpired)]);
}

#[test]
fn sequential_names_use_the_parents_cversion() {
    let mut n = Node::new();
    let s = session(&mut n);
    zk(&mut n, s, vec![create("/q", "")]);
    zk(&mut n, s, vec![create("/q/other", "")]);
    let seq = |n: &mut Node| {
        let op = ZkOp::Create {
            path: "/q/lock-".into(),
            data: None,
            ephemeral: true,
            sequential: true,
            container: false,
            acl: vec![],
        };
        match zk(n, s, vec![op]).1.remove(0) {
            ZkOpResult::Create { path, .. } => path,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seq(&mut n), "/q/lock-0000000001");
    assert_eq!(seq(&mut n), "/q/lock-0000000002");
}

#[test]
fn a_failed_multi_changes_nothing_and_reports_like_zookeeper() {
    let mut n = Node::new();
    let s = session(&mut n);
    let ops =
        vec![create("/m", ""), create("/m/c", ""), ZkOp::Check { path: "/m".into(), version: 5 }, create("/n", "")];
    let (rev, r) = zk(&mut n, s, ops);
    assert_eq!(r, vec![err(Code::Ok), err(Code::Ok), err(Code::BadVersion), err(Code::RuntimeInconsistency)]);
    assert_eq!((rev, n.sm.zk_stat("/m")), (0, None), "nothing applied");
    let ops = vec![create("/m", ""), create("/m/c", ""), ZkOp::Check { path: "/m".into(), version: 0 }];
    let (rev, r) = zk(&mut n, s, ops);
    assert_eq!(rev, 1, "one revision for the whole multi");
    assert_eq!(r.len(), 3);
    assert_eq!(stat(&n, "/m/c").czxid, 1);
}

#[test]
fn ephemerals_go_with_their_session_and_containers_with_their_last_child() {
    let mut n = Node::new();
    let s = session(&mut n);
    let container = ZkOp::Create {
        path: "/c".into(),
        data: None,
        ephemeral: false,
        sequential: false,
        container: true,
        acl: vec![],
    };
    let eph = ZkOp::Create {
        path: "/c/e".into(),
        data: None,
        ephemeral: true,
        sequential: false,
        container: false,
        acl: vec![],
    };
    zk(&mut n, s, vec![container, eph]);
    assert_eq!(stat(&n, "/c/e").ephemeral_owner, s);
    assert_eq!(n.sm.sessions().get(s).map(|x| x.keys.len()), Some(1), "a ZooKeeper ephemeral is a session-bound key");
    n.ok(Command::SessionExpire { session_id: s });
    assert_eq!(n.sm.zk_stat("/c/e"), None, "the ephemeral went with its session");
    let c = stat(&n, "/c");
    assert_eq!(
        (c.num_children, c.cversion, c.ephemeral_owner),
        (0, 2, 1 << 63),
        "the emptied container stays until the leader's check deletes it (zk_reap)"
    );
    // An empty container that never had a child stays.
    let s2 = session(&mut n);
    let container = ZkOp::Create {
        path: "/d".into(),
        data: None,
        ephemeral: false,
        sequential: false,
        container: true,
        acl: vec![],
    };
    zk(&mut n, s2, vec![container]);
    assert!(n.sm.zk_stat("/d").is_some());
}

#[test]
fn the_secret_is_set_once_and_znodes_survive_a_snapshot() {
    let mut n = Node::new();
    assert!(matches!(n.ok(Command::ZkSecret { secret: [1, 2] }).body, OutcomeBody::ZkSecret { secret: [1, 2] }));
    assert!(matches!(n.ok(Command::ZkSecret { secret: [3, 4] }).body, OutcomeBody::ZkSecret { secret: [1, 2] }));
    let s = session(&mut n);
    zk(&mut n, s, vec![create("/a", "1"), create("/a/b", "2")]);
    let meta = crate::types::SnapshotMeta::default();
    let bytes = SnapshotContents { format: SNAPSHOT_FORMAT, meta, state: n.sm.clone() }.to_bytes().expect("encodes");
    let loaded = SnapshotContents::from_bytes(&bytes).expect("decodes");
    assert_eq!(loaded.state, n.sm);
    assert_eq!(loaded.state.znodes().secret(), Some([1, 2]));
}

#[test]
fn replicas_applying_the_same_zookeeper_log_agree() {
    let run = || {
        let mut n = Node::new();
        let s = session(&mut n);
        for i in 0..40u64 {
            let path = format!("/n{}", i % 5);
            let ops = match i % 4 {
                0 => vec![create(&path, "v")],
                1 => vec![ZkOp::Create {
                    path: format!("{path}/s-"),
                    data: None,
                    ephemeral: i % 3 == 0,
                    sequential: true,
                    container: false,
                    acl: vec![],
                }],
                2 => vec![ZkOp::SetData { path: path.clone(), data: Some(b("w")), version: -1 }],
                _ => vec![ZkOp::Delete { path, version: -1 }],
            };
            n.index += 1;
            let batch = BatchV1 {
                leader_time_ms: 1_000 + i,
                proposals: vec![prop(Command::Zk { session: s, ids: vec![], ops })],
            };
            n.sm.apply_batch(&batch, n.index);
        }
        n.ok(Command::SessionClose { session_id: s });
        n.sm
    };
    assert_eq!(run(), run());
}

#[test]
fn acls_are_checked_by_apply_in_zookeepers_order() {
    use crate::log_entry::zk::{ZkAcl, ZkId};
    let mut n = Node::new();
    let s = session(&mut n);
    let alice = ZkId { scheme: "digest".into(), id: "alice:hash".into() };
    let only_alice = vec![ZkAcl { perms: 31, scheme: "digest".into(), id: "alice:hash".into() }];
    let guarded = ZkOp::Create {
        path: "/g".into(),
        data: None,
        ephemeral: false,
        sequential: false,
        container: false,
        acl: only_alice,
    };
    zk(&mut n, s, vec![guarded]);
    let as_ = |n: &mut Node, ids: Vec<ZkId>, op: ZkOp| match n.ok(Command::Zk { session: s, ids, ops: vec![op] }).body {
        OutcomeBody::Zk { mut results } => results.remove(0),
        other => panic!("{other:?}"),
    };
    let set = || ZkOp::SetData { path: "/g".into(), data: Some(b("x")), version: 5 };
    assert_eq!(as_(&mut n, vec![], set()), err(Code::NoAuth), "NoAuth comes before BadVersion");
    assert_eq!(as_(&mut n, vec![alice.clone()], set()), err(Code::BadVersion));
    assert_eq!(as_(&mut n, vec![], create("/g/c", "")), err(Code::NoAuth));
    assert!(matches!(as_(&mut n, vec![alice.clone()], create("/g/c", "")), ZkOpResult::Create { .. }));
    let open = vec![ZkAcl { perms: 1, scheme: "ip".into(), id: "10.0.0.0/8".into() }];
    let set_acl = ZkOp::SetAcl { path: "/g".into(), acl: open, version: 0 };
    assert!(matches!(as_(&mut n, vec![alice], set_acl), ZkOpResult::SetAcl { stat } if stat.aversion == 1));
    let from = |ip: &str| vec![ZkId { scheme: "ip".into(), id: ip.into() }];
    assert_eq!(as_(&mut n, from("10.1.2.3"), ZkOp::Check { path: "/g".into(), version: -1 }), ZkOpResult::Check);
    assert_eq!(as_(&mut n, from("11.1.2.3"), ZkOp::Check { path: "/g".into(), version: -1 }), err(Code::NoAuth));
}

#[test]
fn a_batch_of_pipelined_requests_equals_the_requests_one_by_one() {
    let requests = vec![
        vec![create("/p", "")],
        vec![create("/p", "")],
        vec![create("/p/a", "1")],
        vec![ZkOp::SetData { path: "/p/a".into(), data: Some(b("2")), version: 0 }],
        vec![ZkOp::SetData { path: "/p/a".into(), data: Some(b("3")), version: 0 }],
        vec![ZkOp::Delete { path: "/p".into(), version: -1 }],
    ];
    let mut one = Node::new();
    let s = session(&mut one);
    let singles: Vec<(u64, Vec<ZkOpResult>)> = requests.iter().map(|ops| zk(&mut one, s, ops.clone())).collect();
    let mut batched = Node::new();
    let s2 = session(&mut batched);
    let outcome = batched.ok(Command::ZkBatch { session: s2, ids: vec![], requests });
    let OutcomeBody::ZkBatch { results } = outcome.body else { panic!("not a batch outcome") };
    assert_eq!(results, singles, "same revisions and results, request by request");
    assert_eq!(outcome.revision, 3, "three of the six requests changed something");
    assert_eq!(batched.sm.zk_stat("/p/a").map(|st| st.version), Some(1));
    assert_eq!(batched.sm.kv().get(b"zk/p/a").map(|kv| kv.value), Some(b("2")));
}

#[test]
fn a_re_attach_moves_the_session_and_its_end_forgets_the_owner() {
    let mut n = Node::new();
    let s = session(&mut n);
    assert_eq!(n.sm.znodes().owner(s), 0, "the opening connection owns a new session");
    n.ok(Command::ZkAttach { session_id: s, owner: 7 });
    assert_eq!(n.sm.znodes().owner(s), 7);
    n.ok(Command::ZkAttach { session_id: 999, owner: 9 });
    assert_eq!(n.sm.znodes().owner(999), 0, "an unknown session gets no owner");
    n.ok(Command::SessionClose { session_id: s });
    assert_eq!(n.sm.znodes().owner(s), 0);
}
