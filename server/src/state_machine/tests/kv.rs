//! Revisions, puts, deletes and ranges.

use super::*;

// ---- revisions ----

#[test]
fn revision_bumps_once_per_changing_proposal() {
    let mut n = Node::new();
    assert_eq!(n.ok(put("a", "1")).revision, 1);
    assert_eq!(n.ok(put("b", "1")).revision, 2);

    let noop_delete = n.ok(del(key("missing"), true));
    assert_eq!(noop_delete, Outcome { revision: 2, body: OutcomeBody::DeleteRange { deleted: 0, prev_kvs: vec![] } });
    let read_only = n.ok(txn(vec![], vec![TxnOp::Range(spec(prefix(""))), op_get("c")], vec![]));
    assert_eq!(read_only.revision, 2, "a txn of reads changes nothing");
    let failed = n.ok(txn(vec![cmp("a", Equal, KeyField::Value(b("no")))], vec![op_put("x", "1")], vec![]));
    assert_eq!(
        failed,
        Outcome { revision: 2, body: OutcomeBody::Txn { succeeded: false, responses: vec![], fencing_failure: None } }
    );
    assert_eq!(n.get("x"), None, "the success branch did not run");
    let deletes_nothing = txn(vec![], vec![TxnOp::DeleteRange { selector: prefix("zz"), prev_kv: false }], vec![]);
    assert_eq!(n.ok(deletes_nothing).revision, 2);
    assert_eq!(
        n.ok(del_counter("missing")),
        Outcome { revision: 2, body: OutcomeBody::CounterDelete { deleted: false } }
    );
    let registered = n.ok(Command::RegisterNode { node_id: 7, client_addr: "h:1".into() });
    assert_eq!(registered, Outcome { revision: 2, body: OutcomeBody::Registered });
    assert_eq!(n.sm.client_addrs().get(&7).map(String::as_str), Some("h:1"));

    // Within one batch, each changing proposal gets its own revision.
    let results =
        n.batch(vec![prop(put("c", "1")), prop(del(key("missing"), false)), prop(add("n", 1)), prop(put("c", "2"))]);
    let revisions: Vec<u64> = results.into_iter().map(|r| r.expect("ok").revision).collect();
    assert_eq!(revisions, vec![3, 3, 4, 5]);
    assert_eq!(n.sm.revision(), 5);
}

// ---- put / delete / range ----

#[test]
fn put_and_delete_track_revisions_versions_and_prev_kv() {
    let mut n = Node::new();
    n.ok(put("a", "1"));
    assert_eq!(n.get("a"), Some(kv("a", "1", 1, 1, 1)));
    n.ok(put("other", "x"));
    assert_eq!(n.ok(put("a", "2")).body, OutcomeBody::Put { prev: None }, "prev_kv only when asked");
    assert_eq!(n.ok(put_prev("a", "3")).body, OutcomeBody::Put { prev: Some(kv("a", "2", 1, 3, 2)) });
    assert_eq!(n.get("a"), Some(kv("a", "3", 1, 4, 3)));
    assert_eq!(n.ok(put_prev("new", "v")).body, OutcomeBody::Put { prev: None }, "no previous key");

    let deleted = n.ok(del(key("a"), true));
    let body = OutcomeBody::DeleteRange { deleted: 1, prev_kvs: vec![kv("a", "3", 1, 4, 3)] };
    assert_eq!(deleted, Outcome { revision: 6, body });
    let all = n.ok(del(prefix(""), false));
    assert_eq!(all, Outcome { revision: 7, body: OutcomeBody::DeleteRange { deleted: 2, prev_kvs: vec![] } });
    n.ok(put("a", "again"));
    assert_eq!(n.get("a"), Some(kv("a", "again", 8, 8, 1)), "a recreated key starts over");
}

#[test]
fn range_selectors_limit_and_flags() {
    let mut n = Node::new();
    for k in ["a", "ab", "abc", "b", "c"] {
        n.ok(put(k, &k.to_uppercase()));
    }
    let keys = |sel| names(&n.read(sel, 0).expect("readable"));
    assert_eq!(keys(key("ab")), ["ab"]);
    assert!(keys(key("zz")).is_empty());
    assert_eq!(keys(prefix("ab")), ["ab", "abc"]);
    assert_eq!(keys(KeySelector::Interval { start: b("ab"), end: b("c") }), ["ab", "abc", "b"]);

    let range = |limit, keys_only, count_only| {
        n.sm.range(&RangeSpec { selector: prefix(""), limit, keys_only, count_only }, 0).expect("readable")
    };
    let limited = range(2, false, false);
    assert_eq!((names(&limited), limited.more, limited.count), (vec!["a".into(), "ab".into()], true, 5));
    let exact = range(5, false, false);
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (5, false, 5));
    let keys_only = range(0, true, false);
    assert_eq!(keys_only.kvs[1], KeyValue { value: vec![], ..kv("ab", "AB", 2, 2, 1) });
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(range(1, false, true), RangeResult { kvs: vec![], more: false, count: 5 });
}

#[test]
fn range_at_past_revisions_and_future_error() {
    let mut n = Node::new();
    n.ok(put("a", "1"));
    n.ok(put("a", "2"));
    n.ok(put("b", "1"));
    n.ok(del(key("a"), false));
    assert_eq!(n.read(key("a"), 1).expect("readable").kvs, vec![kv("a", "1", 1, 1, 1)]);
    assert_eq!(n.values(2), ["a=2"]);
    assert_eq!(n.values(3), ["a=2", "b=1"]);
    assert_eq!(n.values(4), ["b=1"]);
    assert_eq!(n.values(0), n.values(4), "revision 0 means current");
    assert_eq!(n.read(prefix(""), 5), Err(ReadError::Future { requested: 5, current: 4 }));
}
