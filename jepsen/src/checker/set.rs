//! The `set` checker: elements are added one by one, then read back at the end (from every
//! node). Every acknowledged add must be in every final read (else it is lost); an element that
//! was never added must never appear; adds with an unknown outcome may or may not be there.
//!
//! History values: `add` has the element as argument; `final-read` has the sorted list of
//! elements read as result.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{int, CheckResult, Verdict};
use crate::history::{EventType, Op};

/// Checks a set history.
pub fn check(ops: &[Op]) -> CheckResult {
    const NAME: &str = "set";
    let mut acknowledged = BTreeSet::new();
    let mut attempted: BTreeMap<i64, EventType> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f == "add") {
        let Some(e) = int(&op.arg) else { continue };
        if op.outcome != EventType::Fail {
            attempted.insert(e, op.outcome);
        }
        if op.outcome == EventType::Ok {
            acknowledged.insert(e);
        }
    }
    let finals: Vec<&Op> = ops.iter().filter(|o| o.f == "final-read" && o.outcome == EventType::Ok).collect();
    if finals.is_empty() {
        return CheckResult::new(
            NAME,
            Verdict::Unknown,
            format!("{} acknowledged adds, but no final read succeeded", acknowledged.len()),
        );
    }
    let mut anomalies = Vec::new();
    let mut lost_total = BTreeSet::new();
    let mut unexpected_total = BTreeSet::new();
    let mut recovered: BTreeSet<i64> = BTreeSet::new();
    for read in &finals {
        let Some(seen) = read.result.as_array() else {
            return CheckResult::new(
                NAME,
                Verdict::Unknown,
                format!("malformed final read (event {})", read.invoke_index),
            );
        };
        let seen: BTreeSet<i64> = seen.iter().filter_map(int).collect();
        let lost: Vec<i64> = acknowledged.difference(&seen).copied().collect();
        let unexpected: Vec<i64> = seen.iter().copied().filter(|e| !attempted.contains_key(e)).collect();
        recovered.extend(seen.iter().filter(|e| attempted.get(e) == Some(&EventType::Info)));
        if !lost.is_empty() || !unexpected.is_empty() {
            anomalies.push(json!({
                "final_read_event": read.invoke_index, "node": read.node, "lost": lost, "unexpected": unexpected,
            }));
        }
        lost_total.extend(lost);
        unexpected_total.extend(unexpected);
    }
    let summary = format!(
        "{} acknowledged, {} unknown adds ({} of them present); {} final reads; {} lost, {} unexpected",
        acknowledged.len(),
        attempted.values().filter(|k| **k != EventType::Ok).count(),
        recovered.len(),
        finals.len(),
        lost_total.len(),
        unexpected_total.len()
    );
    if anomalies.is_empty() {
        CheckResult::new(NAME, Verdict::Valid, summary)
    } else {
        CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(json!({"anomalies": anomalies}))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};
    use serde_json::Value;

    fn adds() -> H {
        let mut h = H::default();
        h.inv(0, 1, "add", None, json!(1)).ok(1, 1, "add", None, Value::Null);
        h.inv(2, 1, "add", None, json!(2)).info(3, 1, "add", None);
        h.inv(4, 2, "add", None, json!(3)).fail(5, 2, "add", None);
        h.inv(6, 2, "add", None, json!(4)).ok(7, 2, "add", None, Value::Null);
        h
    }

    #[test]
    fn valid_set() {
        let mut h = adds();
        h.inv(10, 3, "final-read", None, Value::Null).ok(11, 3, "final-read", None, json!([1, 2, 4]));
        h.inv(12, 3, "final-read", None, Value::Null).ok(13, 3, "final-read", None, json!([1, 4]));
        assert_eq!(check(&pair(&h.events).unwrap()).verdict, Verdict::Valid);
    }

    #[test]
    fn lost_element_is_invalid() {
        let mut h = adds();
        h.inv(10, 3, "final-read", None, Value::Null).ok(11, 3, "final-read", None, json!([1, 2]));
        let r = check(&pair(&h.events).unwrap());
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.witness.unwrap()["anomalies"][0]["lost"], json!([4]));
    }

    #[test]
    fn failed_add_present_is_invalid() {
        let mut h = adds();
        h.inv(10, 3, "final-read", None, Value::Null).ok(11, 3, "final-read", None, json!([1, 3, 4]));
        assert_eq!(check(&pair(&h.events).unwrap()).verdict, Verdict::Invalid);
    }

    #[test]
    fn no_final_read_is_unknown() {
        assert_eq!(check(&pair(&adds().events).unwrap()).verdict, Verdict::Unknown);
    }
}
