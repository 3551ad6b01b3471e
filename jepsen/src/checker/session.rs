//! The `session` checker: each client opens a session with a TTL, binds an ephemeral key to it
//! and keeps it alive; monitors read the keys. No ephemeral key may be deleted while its
//! session's keep-alives succeed, and once they stop the key must be gone within the documented
//! bound: 2 x TTL + election time after the last keep-alive or the last fault, whichever is later
//! (a new leader restarts every session's deadline at the full TTL).
//!
//! History values: `open` result `{"session": id, "ttl_ms": ttl}`; `put-ephemeral` key K,
//! argument `{"session": id}`; `keep-alive` argument `{"session": id}`, result `{"alive": bool}`;
//! `abandon` argument `{"session": id}` (keep-alives stop); `read` key K, result
//! `{"exists": bool}`.

use std::collections::BTreeMap;

use serde_json::json;

use super::register::describe;
use super::{uint, CheckResult, Verdict};
use crate::history::{EventType, FaultInterval, Op};

/// Election time and commit slack added to 2 x TTL (ms).
pub const SLACK_MS: u64 = 2_000;

#[derive(Default)]
struct Life<'a> {
    ttl_ns: u64,
    key: Option<&'a str>,
    /// When the key surely existed (its put completed).
    created: Option<u64>,
    /// Invocation of the latest keep-alive that found the session alive.
    last_alive_invoke: Option<u64>,
    /// Latest time a keep-alive may have renewed it (completion of any non-failed one).
    last_renewal: u64,
    abandoned: Option<u64>,
}

/// Checks a session history against the fault intervals of the run.
pub fn check(ops: &[Op], faults: &[FaultInterval]) -> CheckResult {
    const NAME: &str = "session";
    let mut lives: BTreeMap<u64, Life> = BTreeMap::new();
    let session_of = |op: &Op| op.arg.get("session").and_then(uint).or_else(|| op.result.get("session").and_then(uint));
    for op in ops {
        let Some(id) = session_of(op) else { continue };
        let life = lives.entry(id).or_default();
        let done = op.complete.unwrap_or(u64::MAX);
        match (op.f.as_str(), op.outcome) {
            ("open", EventType::Ok) => {
                life.ttl_ns = op.result.get("ttl_ms").and_then(uint).unwrap_or(0) * 1_000_000;
                life.last_renewal = life.last_renewal.max(done);
            }
            ("put-ephemeral", EventType::Ok) => {
                life.key = op.key.as_deref();
                life.created = op.complete;
            }
            ("put-ephemeral", EventType::Info) => life.key = op.key.as_deref(),
            ("keep-alive", EventType::Ok) if op.result.get("alive").and_then(|a| a.as_bool()) == Some(true) => {
                life.last_alive_invoke = life.last_alive_invoke.max(Some(op.invoke));
                life.last_renewal = life.last_renewal.max(done);
            }
            ("keep-alive", EventType::Info) => life.last_renewal = life.last_renewal.max(done),
            ("abandon", _) => life.abandoned = Some(op.invoke),
            _ => {}
        }
    }
    let by_key: BTreeMap<&str, (u64, &Life)> = lives.iter().filter_map(|(id, l)| Some((l.key?, (*id, l)))).collect();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut reads = 0usize;
    for r in ops.iter().filter(|o| o.f == "read" && o.outcome == EventType::Ok) {
        let (Some(key), Some(done)) = (r.key.as_deref(), r.complete) else { continue };
        let Some(&(id, life)) = by_key.get(key) else { continue };
        let Some(exists) = r.result.get("exists").and_then(|e| e.as_bool()) else { continue };
        reads += 1;
        if !exists && life.created.is_some_and(|c| c < r.invoke) && life.last_alive_invoke.is_some_and(|k| k > done) {
            early.push(json!({"session": id, "read": describe(r), "later_keep_alive_found_it_alive_at": life.last_alive_invoke}));
        }
        if exists && life.abandoned.is_some() {
            if faults.iter().any(|f| f.start <= r.invoke && r.invoke <= f.end) {
                continue;
            }
            let quiet_since = faults.iter().filter(|f| f.end <= r.invoke).map(|f| f.end).max().unwrap_or(0);
            let bound = 2 * life.ttl_ns + SLACK_MS * 1_000_000;
            let from = life.last_renewal.max(quiet_since).max(life.abandoned.unwrap_or(0));
            if r.invoke > from.saturating_add(bound) {
                late.push(json!({
                    "session": id, "read": describe(r), "bound_ms": bound / 1_000_000,
                    "last_renewal_or_fault_end": from,
                }));
            }
        }
    }
    let summary = format!(
        "{} sessions, {reads} reads of their keys; {} deleted early, {} outlived the bound",
        lives.len(),
        early.len(),
        late.len()
    );
    if !early.is_empty() || !late.is_empty() {
        early.truncate(20);
        late.truncate(20);
        return CheckResult::new(NAME, Verdict::Invalid, summary)
            .with_witness(json!({"deleted_while_alive": early, "outlived_bound": late}));
    }
    if reads == 0 {
        return CheckResult::new(NAME, Verdict::Unknown, "no read of a session key succeeded");
    }
    CheckResult::new(NAME, Verdict::Valid, summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};
    use serde_json::Value;

    const MS: u64 = 1_000_000;

    fn base() -> H {
        let mut h = H::default();
        h.inv(0, 1, "open", None, Value::Null).ok(MS, 1, "open", None, json!({"session": 7, "ttl_ms": 2000}));
        h.inv(2 * MS, 1, "put-ephemeral", Some("e/1"), json!({"session": 7}));
        h.ok(3 * MS, 1, "put-ephemeral", Some("e/1"), Value::Null);
        h.inv(1000 * MS, 1, "keep-alive", None, json!({"session": 7}));
        h.ok(1001 * MS, 1, "keep-alive", None, json!({"alive": true}));
        h
    }

    #[test]
    fn key_deleted_while_keep_alives_succeed_is_invalid() {
        let mut h = base();
        h.inv(500 * MS, 2, "read", Some("e/1"), Value::Null).ok(
            501 * MS,
            2,
            "read",
            Some("e/1"),
            json!({"exists": false}),
        );
        let r = check(&pair(&h.events).unwrap(), &[]);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
    }

    #[test]
    fn key_outliving_bound_is_invalid_but_not_during_faults() {
        let mut h = base();
        h.inv(1002 * MS, 1, "abandon", None, json!({"session": 7})).ok(1002 * MS, 1, "abandon", None, Value::Null);
        h.inv(3000 * MS, 2, "read", Some("e/1"), Value::Null).ok(
            3001 * MS,
            2,
            "read",
            Some("e/1"),
            json!({"exists": true}),
        );
        let ops = pair(&h.events).unwrap();
        assert_eq!(check(&ops, &[]).verdict, Verdict::Valid);
        let mut h2 = base();
        h2.inv(1002 * MS, 1, "abandon", None, json!({"session": 7})).ok(1002 * MS, 1, "abandon", None, Value::Null);
        h2.inv(8000 * MS, 2, "read", Some("e/1"), Value::Null).ok(
            8001 * MS,
            2,
            "read",
            Some("e/1"),
            json!({"exists": true}),
        );
        let ops = pair(&h2.events).unwrap();
        assert_eq!(check(&ops, &[]).verdict, Verdict::Invalid);
        let fault = FaultInterval { start: 4000 * MS, end: 7000 * MS, what: "partition".into() };
        assert_eq!(check(&ops, &[fault]).verdict, Verdict::Valid);
    }
}
