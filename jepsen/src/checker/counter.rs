//! The `counter` checker for `get_and_add(1)` (checkpoint ids): every acknowledged increment
//! returned a distinct previous value; values respect real-time order (an increment that
//! finished before another started got the smaller value); reads fall between what had surely
//! happened and what could have; and the final read shows no acknowledged increment lost (and
//! gaps only where an unknown-outcome increment may have used the value).
//!
//! History values: `add` has the delta as argument and the previous value as result; `read` and
//! `final-read` have the value read as result.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::register::describe;
use super::{uint, CheckResult, Verdict};
use crate::history::{EventType, Op};

/// Most anomalies listed per kind in a witness.
const SHOWN: usize = 20;

/// Checks a counter history.
pub fn check(ops: &[Op]) -> CheckResult {
    const NAME: &str = "counter";
    let adds: Vec<&Op> = ops.iter().filter(|o| o.f == "add").collect();
    if let Some(bad) = adds.iter().find(|o| uint(&o.arg) != Some(1)) {
        return CheckResult::new(
            NAME,
            Verdict::Unknown,
            format!("only delta 1 is checked (event {})", bad.invoke_index),
        );
    }
    let ok: Vec<(&Op, u64)> =
        adds.iter().filter(|o| o.outcome == EventType::Ok).filter_map(|o| uint(&o.result).map(|v| (*o, v))).collect();
    let unknown = adds.iter().filter(|o| matches!(o.outcome, EventType::Info | EventType::Invoke)).count() as u64;
    let mut errors: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut push = |kind: &'static str, w: Value| {
        let list = errors.entry(kind).or_default();
        if list.len() < SHOWN {
            list.push(w);
        }
    };

    // Unique values.
    let mut by_value: BTreeMap<u64, &Op> = BTreeMap::new();
    let mut duplicates = 0usize;
    for (op, v) in &ok {
        if let Some(first) = by_value.insert(*v, op) {
            duplicates += 1;
            push("duplicate_value", json!({"value": v, "first": describe(first), "second": describe(op)}));
        }
    }

    // Real-time order: walking values downwards, remember which higher-valued increment finished
    // earliest; if it finished before this one was invoked, order is violated.
    let mut order_violations = 0usize;
    let mut earliest_higher: Option<&Op> = None;
    for (v, op) in by_value.iter().rev() {
        if let Some(h) = earliest_higher {
            if h.complete.is_some_and(|c| c < op.invoke) {
                order_violations += 1;
                push(
                    "real_time_order",
                    json!({"earlier_op_got_higher_value": describe(h), "later_op_got_lower_value": describe(op), "value": v}),
                );
            }
        }
        if earliest_higher.is_none_or(|h| op.complete < h.complete) {
            earliest_higher = Some(op);
        }
    }

    // Reads: at least one more than every value handed out before the read began; at most the
    // number of increments invoked before it ended.
    let mut read_violations = 0usize;
    let reads = ops.iter().filter(|o| o.f == "read" && o.outcome == EventType::Ok);
    for r in reads {
        let Some(value) = uint(&r.result) else { continue };
        let Some(done) = r.complete else { continue };
        let floor = ok.iter().filter(|(a, _)| a.complete.is_some_and(|c| c < r.invoke)).map(|(_, v)| v + 1).max();
        let ceiling = adds.iter().filter(|a| a.invoke < done && a.outcome != EventType::Fail).count() as u64;
        if floor.is_some_and(|f| value < f) || value > ceiling {
            read_violations += 1;
            push("read_out_of_bounds", json!({"read": describe(r), "at_least": floor, "at_most": ceiling}));
        }
    }

    // Final read: nothing acknowledged lost, nothing invented.
    let finals: Vec<(&Op, u64)> = ops
        .iter()
        .filter(|o| o.f == "final-read" && o.outcome == EventType::Ok)
        .filter_map(|o| uint(&o.result).map(|v| (o, v)))
        .collect();
    let acknowledged = ok.len() as u64;
    let mut lost = 0usize;
    for (op, last) in &finals {
        let above: Vec<u64> = by_value.keys().copied().filter(|v| v >= last).collect();
        if *last < acknowledged || !above.is_empty() {
            lost += 1;
            push(
                "lost_increment",
                json!({"final_read": describe(op), "acknowledged": acknowledged, "values_not_below_final": above}),
            );
        }
        if *last > acknowledged + unknown {
            lost += 1;
            push("phantom_increment", json!({"final_read": describe(op), "max_possible": acknowledged + unknown}));
        }
        let handed: BTreeSet<u64> = by_value.keys().copied().collect();
        let gaps = (0..*last).filter(|v| !handed.contains(v)).count() as u64;
        if gaps > unknown {
            lost += 1;
            push("unexplained_gaps", json!({"final_read": describe(op), "gaps": gaps, "unknown_increments": unknown}));
        }
    }

    let summary = format!(
        "{} acknowledged, {unknown} unknown increments; {duplicates} duplicates, {order_violations} order \
         violations, {read_violations} bad reads, {} final reads{}",
        ok.len(),
        finals.len(),
        if lost > 0 { format!(", {lost} final-read anomalies") } else { String::new() },
    );
    if !errors.is_empty() {
        return CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(json!(errors));
    }
    if finals.is_empty() {
        return CheckResult::new(NAME, Verdict::Unknown, format!("{summary} (no final read: losses not checked)"));
    }
    CheckResult::new(NAME, Verdict::Valid, summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};

    fn run(h: &H) -> CheckResult {
        check(&pair(&h.events).unwrap())
    }

    fn base() -> H {
        let mut h = H::default();
        h.inv(0, 1, "add", None, json!(1)).ok(10, 1, "add", None, json!(0));
        h.inv(5, 2, "add", None, json!(1)).ok(12, 2, "add", None, json!(1));
        h.inv(13, 3, "add", None, json!(1)).info(30, 3, "add", None);
        h.inv(14, 2, "read", None, Value::Null).ok(15, 2, "read", None, json!(2));
        h.inv(31, 4, "add", None, json!(1)).ok(32, 4, "add", None, json!(3));
        h
    }

    #[test]
    fn valid_counter_history() {
        let mut h = base();
        h.inv(40, 5, "final-read", None, Value::Null).ok(41, 5, "final-read", None, json!(4));
        let r = run(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
    }

    #[test]
    fn duplicated_value_is_invalid() {
        let mut h = base();
        h.inv(33, 6, "add", None, json!(1)).ok(34, 6, "add", None, json!(3));
        let r = run(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.witness.unwrap().get("duplicate_value").is_some());
    }

    #[test]
    fn real_time_order_violation_is_invalid() {
        let mut h = base();
        h.inv(35, 6, "add", None, json!(1)).ok(36, 6, "add", None, json!(2));
        let r = run(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.witness.unwrap().get("real_time_order").is_some());
    }

    #[test]
    fn lost_increment_is_invalid() {
        let mut h = base();
        h.inv(40, 5, "final-read", None, Value::Null).ok(41, 5, "final-read", None, json!(3));
        let r = run(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.witness.unwrap().get("lost_increment").is_some());
    }

    #[test]
    fn stale_read_is_invalid() {
        let mut h = base();
        h.inv(33, 6, "read", None, Value::Null).ok(34, 6, "read", None, json!(1));
        assert_eq!(run(&h).verdict, Verdict::Invalid);
    }

    #[test]
    fn no_final_read_is_unknown() {
        assert_eq!(run(&base()).verdict, Verdict::Unknown);
    }
}
