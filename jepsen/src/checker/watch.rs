//! The `watch` checker: writers put unique values to watched keys; watchers stream the changes.
//! Every watcher's sequence of a key must be duplicate-free and in increasing revision order,
//! agree with the writes (an event's value was written, at that revision if the write's revision
//! is known), have no gaps (every acknowledged write inside the span it covers is there), and all
//! watchers must agree wherever their spans overlap: each sees a prefix of the same history.
//!
//! History values: `write` argument is the value (null = delete), result `{"revision": R}`;
//! `watch` argument `{"start_revision": S}`, result `{"events": [[revision, value], ...]}`
//! (recorded when the watcher stops; `info` with the same result when it broke early).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{int, uint, CheckResult, Verdict};
use crate::history::{EventType, Op};

/// Per key: each written value, with its revision when acknowledged, and the write's outcome.
type Writes<'a> = BTreeMap<&'a str, BTreeMap<Option<i64>, (Option<u64>, EventType)>>;

/// One watcher's observations of one key.
struct Seen<'a> {
    op: &'a Op,
    start: u64,
    events: Vec<(u64, Option<i64>)>,
}

/// Checks a watch history.
pub fn check(ops: &[Op]) -> CheckResult {
    const NAME: &str = "watch";
    // Writes per key: value -> (revision if acknowledged, outcome).
    let mut writes: Writes = BTreeMap::new();
    let mut acked: BTreeMap<&str, BTreeMap<u64, Option<i64>>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f == "write") {
        let key = op.key.as_deref().unwrap_or("");
        let value = int(&op.arg);
        let revision = op.result.get("revision").and_then(uint).filter(|_| op.outcome == EventType::Ok);
        writes.entry(key).or_default().insert(value, (revision, op.outcome));
        if let Some(r) = revision {
            acked.entry(key).or_default().insert(r, value);
        }
    }
    let mut watchers: BTreeMap<&str, Vec<Seen>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f == "watch" && o.outcome != EventType::Fail) {
        let key = op.key.as_deref().unwrap_or("");
        let start = op.arg.get("start_revision").and_then(uint).unwrap_or(0);
        let events = op.result.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
        let events = events.iter().filter_map(|e| Some((e.get(0).and_then(uint)?, e.get(1).and_then(int)))).collect();
        watchers.entry(key).or_default().push(Seen { op, start, events });
    }
    let mut anomalies = Vec::new();
    let mut delivered = 0usize;
    for (key, list) in &watchers {
        let empty = BTreeMap::new();
        let key_writes = writes.get(key).unwrap_or(&empty);
        let empty_acked = BTreeMap::new();
        let key_acked = acked.get(key).unwrap_or(&empty_acked);
        for w in list {
            delivered += w.events.len();
            let mut bad = |kind: &str, detail: Value| {
                anomalies.push(json!({"key": key, "watcher_event": w.op.invoke_index, "kind": kind, "detail": detail}))
            };
            for pair in w.events.windows(2) {
                if pair[1].0 <= pair[0].0 {
                    bad("duplicate_or_out_of_order", json!([pair[0].0, pair[1].0]));
                }
            }
            for &(rev, value) in &w.events {
                if rev < w.start {
                    bad("before_start_revision", json!(rev));
                }
                match key_writes.get(&value) {
                    None => bad("value_never_written", json!({"revision": rev, "value": value})),
                    Some((_, EventType::Fail)) => {
                        bad("failed_write_delivered", json!({"revision": rev, "value": value}))
                    }
                    Some((Some(r), _)) if *r != rev => {
                        bad("wrong_revision", json!({"delivered": rev, "acknowledged": r, "value": value}))
                    }
                    _ => {}
                }
            }
            if let Some(&(last, _)) = w.events.last() {
                let seen: Vec<u64> = w.events.iter().map(|e| e.0).collect();
                for (rev, value) in key_acked.range(w.start..=last) {
                    if seen.binary_search(rev).is_err() {
                        bad("gap", json!({"missing_revision": rev, "value": value}));
                    }
                }
            }
        }
        // Pairwise agreement on the overlap of spans.
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let (Some(la), Some(lb)) = (a.events.last(), b.events.last()) else { continue };
                let (lo, hi) = (a.start.max(b.start), la.0.min(lb.0));
                let part = |s: &Seen| s.events.iter().filter(|e| e.0 >= lo && e.0 <= hi).copied().collect::<Vec<_>>();
                let (pa, pb) = (part(a), part(b));
                if pa != pb {
                    anomalies.push(json!({
                        "key": key, "kind": "watchers_disagree",
                        "watchers": [a.op.invoke_index, b.op.invoke_index], "span": [lo, hi],
                        "first": pa, "second": pb,
                    }));
                }
            }
        }
    }
    let count: usize = watchers.values().map(Vec::len).sum();
    let summary = format!(
        "{count} watch streams on {} keys, {delivered} events delivered, {} anomalies",
        watchers.len(),
        anomalies.len()
    );
    if !anomalies.is_empty() {
        anomalies.truncate(50);
        return CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(json!({"anomalies": anomalies}));
    }
    if count == 0 {
        return CheckResult::new(NAME, Verdict::Unknown, "no watch stream recorded");
    }
    CheckResult::new(NAME, Verdict::Valid, summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};

    fn writes() -> H {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("k"), json!(1)).ok(1, 1, "write", Some("k"), json!({"revision": 10}));
        h.inv(2, 1, "write", Some("k"), json!(2)).info(3, 1, "write", Some("k"));
        h.inv(4, 2, "write", Some("k"), json!(3)).ok(5, 2, "write", Some("k"), json!({"revision": 14}));
        h.inv(6, 2, "write", Some("k"), json!(4)).fail(7, 2, "write", Some("k"));
        h
    }

    fn watcher(h: &mut H, p: i64, start: u64, events: Value) {
        h.inv(0, p, "watch", Some("k"), json!({"start_revision": start}));
        h.ok(20, p, "watch", Some("k"), json!({ "events": events }));
    }

    #[test]
    fn consistent_watchers_are_valid() {
        let mut h = writes();
        watcher(&mut h, 10, 1, json!([[10, 1], [12, 2], [14, 3]]));
        watcher(&mut h, 11, 1, json!([[10, 1], [12, 2]]));
        watcher(&mut h, 12, 13, json!([[14, 3]]));
        let r = check(&pair(&h.events).unwrap());
        assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.witness);
    }

    #[test]
    fn gap_is_invalid() {
        let mut h = writes();
        watcher(&mut h, 10, 1, json!([[10, 1], [14, 3]]));
        watcher(&mut h, 11, 1, json!([[14, 3]]));
        let r = check(&pair(&h.events).unwrap());
        assert_eq!(r.verdict, Verdict::Invalid);
        let text = r.witness.unwrap().to_string();
        assert!(text.contains("gap"), "{text}");
    }

    #[test]
    fn duplicate_and_disagreement_are_invalid() {
        let mut h = writes();
        watcher(&mut h, 10, 1, json!([[10, 1], [10, 1], [14, 3]]));
        let r = check(&pair(&h.events).unwrap());
        assert!(r.witness.unwrap().to_string().contains("duplicate_or_out_of_order"));
        let mut h = writes();
        watcher(&mut h, 10, 1, json!([[10, 1], [12, 2], [14, 3]]));
        watcher(&mut h, 11, 1, json!([[10, 1], [14, 3]]));
        let r = check(&pair(&h.events).unwrap());
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.witness.unwrap().to_string().contains("watchers_disagree"));
    }

    #[test]
    fn failed_write_delivered_is_invalid() {
        let mut h = writes();
        watcher(&mut h, 10, 1, json!([[10, 1], [13, 4], [14, 3]]));
        assert_eq!(check(&pair(&h.events).unwrap()).verdict, Verdict::Invalid);
    }
}
