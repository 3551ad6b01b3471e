//! The `register` checker: per-key read / write / compare-and-set histories must be
//! linearizable. The history is partitioned by key (P-compositionality) and each key is searched
//! separately; `fail` operations are dropped, `info` reads are dropped (they change nothing) and
//! `info` writes and CASes may take effect at any time after their invocation, or never.
//!
//! Values in the history: `write` has the value as argument; `cas` has `[from, to]`; an `ok`
//! `read` has the value read (`null` = the key does not exist).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::linearizable::{self, Model, Outcome, Timed};
use super::{int, CheckResult, Verdict};
use crate::history::{EventType, Op};

/// A register operation with its observed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegOp {
    /// Read this value (`None` = absent).
    Read(Option<i64>),
    /// Write a value (applied, or unknown: always possible).
    Write(i64),
    /// Compare-and-set that succeeded.
    Cas(i64, i64),
    /// Compare-and-set whose outcome is unknown: applies if it matches, else changes nothing.
    CasMaybe(i64, i64),
}

/// The register's sequential specification; the state is the value (`None` = absent).
pub struct Register;

impl Model for Register {
    type State = Option<i64>;
    type Op = RegOp;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, s: &Option<i64>, op: &RegOp) -> Option<Option<i64>> {
        match op {
            RegOp::Read(v) => (v == s).then_some(*s),
            RegOp::Write(v) => Some(Some(*v)),
            RegOp::Cas(from, to) => (*s == Some(*from)).then_some(Some(*to)),
            RegOp::CasMaybe(from, to) => Some(if *s == Some(*from) { Some(*to) } else { *s }),
        }
    }
}

/// Converts one history operation; `None` for operations that cannot matter.
fn convert(op: &Op) -> anyhow::Result<Option<Timed<RegOp>>> {
    let ret = match op.outcome {
        EventType::Ok => op.complete.unwrap_or(u64::MAX),
        EventType::Info | EventType::Invoke => u64::MAX,
        EventType::Fail => return Ok(None),
    };
    let known = op.outcome == EventType::Ok;
    let bad = || anyhow::anyhow!("malformed {} operation (event {})", op.f, op.invoke_index);
    let reg = match op.f.as_str() {
        "read" if known => RegOp::Read(if op.result.is_null() { None } else { Some(int(&op.result).ok_or_else(bad)?) }),
        "read" => return Ok(None),
        "write" => RegOp::Write(int(&op.arg).ok_or_else(bad)?),
        "cas" => {
            let pair = op.arg.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            let (from, to) = (int(&pair[0]).ok_or_else(bad)?, int(&pair[1]).ok_or_else(bad)?);
            if known {
                RegOp::Cas(from, to)
            } else {
                RegOp::CasMaybe(from, to)
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(Timed { op: reg, call: op.invoke, ret }))
}

/// Checks every key's history for linearizability within `budget` (for all keys together).
pub fn check(ops: &[Op], budget: Duration) -> CheckResult {
    const NAME: &str = "linearizable";
    let deadline = Instant::now() + budget;
    let mut by_key: BTreeMap<&str, (Vec<Timed<RegOp>>, Vec<&Op>)> = BTreeMap::new();
    for op in ops.iter().filter(|o| matches!(o.f.as_str(), "read" | "write" | "cas")) {
        let key = op.key.as_deref().unwrap_or("");
        match convert(op) {
            Ok(Some(t)) => {
                let entry = by_key.entry(key).or_default();
                entry.0.push(t);
                entry.1.push(op);
            }
            Ok(None) => {}
            Err(e) => return CheckResult::new(NAME, Verdict::Unknown, format!("cannot check: {e}")),
        }
    }
    let mut timed_out = Vec::new();
    let mut invalid = Vec::new();
    for (key, (timed, source)) in &by_key {
        match linearizable::check(&Register, timed, deadline) {
            Outcome::Linearizable => {}
            Outcome::Timeout => timed_out.push(key.to_string()),
            Outcome::Violation { prefix, blocked } => {
                let mut state = Register.init();
                let order: Vec<Value> = prefix
                    .iter()
                    .map(|&i| {
                        state = Register.step(&state, &timed[i].op).unwrap_or(state);
                        json!({"op": describe(source[i]), "state_after": state})
                    })
                    .collect();
                invalid.push(json!({
                    "key": key,
                    "longest_linearizable_prefix": order,
                    "final_state_of_prefix": state,
                    "cannot_linearize": blocked.map(|i| describe(source[i])),
                    "operations_of_key": source.iter().map(|o| describe(o)).collect::<Vec<_>>(),
                }));
            }
        }
    }
    let checked = by_key.len();
    if !invalid.is_empty() {
        let keys: Vec<&str> = invalid.iter().filter_map(|w| w["key"].as_str()).collect();
        return CheckResult::new(
            NAME,
            Verdict::Invalid,
            format!("{} of {checked} keys not linearizable: {}", keys.len(), keys.join(", ")),
        )
        .with_witness(json!({"anomalies": invalid, "timed_out_keys": timed_out}));
    }
    if !timed_out.is_empty() {
        return CheckResult::new(
            NAME,
            Verdict::Unknown,
            format!("search timed out on {} of {checked} keys", timed_out.len()),
        )
        .with_witness(json!({"timed_out_keys": timed_out}));
    }
    CheckResult::new(NAME, Verdict::Valid, format!("{checked} keys linearizable"))
}

/// A compact description of an operation for witnesses.
pub fn describe(op: &Op) -> Value {
    json!({
        "process": op.process, "f": op.f, "key": op.key, "arg": op.arg, "result": op.result,
        "outcome": op.outcome, "invoke": op.invoke, "complete": op.complete,
        "invoke_index": op.invoke_index, "node": op.node, "error": op.error,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};
    use serde_json::json;

    fn verdict(h: &H) -> Verdict {
        check(&pair(&h.events).unwrap(), Duration::from_secs(10)).verdict
    }

    #[test]
    fn valid_history_with_unknown_write_and_cas() {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("a"), json!(1)).ok(10, 1, "write", Some("a"), Value::Null);
        h.inv(11, 2, "cas", Some("a"), json!([1, 2])).info(20, 2, "cas", Some("a"));
        h.inv(21, 3, "read", Some("a"), Value::Null).ok(22, 3, "read", Some("a"), json!(1));
        h.inv(23, 3, "read", Some("a"), Value::Null).ok(24, 3, "read", Some("a"), json!(2));
        h.inv(25, 4, "write", Some("a"), json!(3)).fail(26, 4, "write", Some("a"));
        h.inv(27, 3, "read", Some("a"), Value::Null).ok(28, 3, "read", Some("a"), json!(2));
        h.inv(0, 5, "read", Some("b"), Value::Null).ok(1, 5, "read", Some("b"), Value::Null);
        assert_eq!(verdict(&h), Verdict::Valid);
    }

    #[test]
    fn stale_read_is_invalid() {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("a"), json!(1)).ok(10, 1, "write", Some("a"), Value::Null);
        h.inv(11, 1, "write", Some("a"), json!(2)).ok(20, 1, "write", Some("a"), Value::Null);
        h.inv(21, 2, "read", Some("a"), Value::Null).ok(22, 2, "read", Some("a"), json!(1));
        let r = check(&pair(&h.events).unwrap(), Duration::from_secs(10));
        assert_eq!(r.verdict, Verdict::Invalid);
        let w = r.witness.unwrap();
        assert_eq!(w["anomalies"][0]["cannot_linearize"]["result"], json!(1));
    }

    #[test]
    fn lost_write_is_invalid() {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("a"), json!(1)).ok(10, 1, "write", Some("a"), Value::Null);
        h.inv(20, 2, "read", Some("a"), Value::Null).ok(22, 2, "read", Some("a"), Value::Null);
        assert_eq!(verdict(&h), Verdict::Invalid);
    }

    #[test]
    fn failed_write_must_not_appear() {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("a"), json!(1)).fail(10, 1, "write", Some("a"));
        h.inv(20, 2, "read", Some("a"), Value::Null).ok(22, 2, "read", Some("a"), json!(1));
        assert_eq!(verdict(&h), Verdict::Invalid);
    }

    #[test]
    fn successful_cas_needs_matching_value() {
        let mut h = H::default();
        h.inv(0, 1, "write", Some("a"), json!(1)).ok(10, 1, "write", Some("a"), Value::Null);
        h.inv(11, 1, "cas", Some("a"), json!([2, 3])).ok(12, 1, "cas", Some("a"), Value::Null);
        assert_eq!(verdict(&h), Verdict::Invalid);
    }

    #[test]
    fn timeout_is_unknown_never_valid() {
        let mut h = H::default();
        for p in 0..30 {
            h.inv(0, p, "write", Some("a"), json!(p));
        }
        for p in 0..30 {
            h.ok(100, p, "write", Some("a"), Value::Null);
        }
        h.inv(101, 99, "read", Some("a"), Value::Null).ok(102, 99, "read", Some("a"), json!(77));
        let r = check(&pair(&h.events).unwrap(), Duration::ZERO);
        assert_eq!(r.verdict, Verdict::Unknown);
    }
}
