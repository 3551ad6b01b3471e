//! The `session` checker: each client opens a session with a TTL, binds an ephemeral key to it
//! and keeps it alive; monitors read the keys. No ephemeral key may be deleted while its
//! session's keep-alives succeed, and once they stop the key must be gone within the documented
//! bound: 2 x TTL + election time after the last keep-alive or the last fault, whichever is later
//! (a new leader restarts every session's deadline at the full TTL). Nor may a session be found
//! expired (a keep-alive answering "not alive", or its key read absent) while its client was
//! still keeping it alive, unless a full TTL of healthy time (outside every fault interval)
//! passed since its last successful renewal: a leader that stalled or lost its quorum restarts
//! the deadlines when it serves again, as a new leader does (issue 17). A client that could not
//! reach a serving leader for a TTL during a fault is flagged as well: the client's failover
//! between members is documented to prevent exactly that.
//!
//! The ZooKeeper-protocol workload (`zk-session`) adds two checks: a session whose `close` was
//! acknowledged has no ephemeral left (a read invoked after the acknowledgement must not find
//! its key; no slack: closing is a committed write and the reads are linearizable), and an
//! existing ephemeral's `ephemeralOwner` is its creator's session id.
//!
//! History values: `open` result `{"session": id, "ttl_ms": ttl}`; `put-ephemeral` key K,
//! argument `{"session": id}`; `keep-alive` argument `{"session": id}`, result `{"alive": bool}`;
//! `abandon` argument `{"session": id}` (keep-alives stop); `close` argument `{"session": id}`
//! (keep-alives stop; `ok` once the close was acknowledged); `read` key K, result
//! `{"exists": bool}`, optionally `"owner": session id` when it exists.

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
    /// Invocations of the open and of every keep-alive that found it alive, in order.
    renewals: Vec<u64>,
    abandoned: Option<u64>,
    /// When its close was acknowledged.
    closed: Option<u64>,
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
                life.renewals.push(op.invoke);
            }
            ("put-ephemeral", EventType::Ok) => {
                life.key = op.key.as_deref();
                life.created = op.complete;
            }
            ("put-ephemeral", EventType::Info) => life.key = op.key.as_deref(),
            ("keep-alive", EventType::Ok) if op.result.get("alive").and_then(|a| a.as_bool()) == Some(true) => {
                life.last_alive_invoke = life.last_alive_invoke.max(Some(op.invoke));
                life.last_renewal = life.last_renewal.max(done);
                life.renewals.push(op.invoke);
            }
            ("keep-alive", EventType::Info) => life.last_renewal = life.last_renewal.max(done),
            ("abandon", _) => life.abandoned = Some(op.invoke),
            ("close", outcome) => {
                life.abandoned = Some(life.abandoned.map_or(op.invoke, |a| a.min(op.invoke)));
                if outcome == EventType::Ok {
                    life.closed = op.complete;
                }
            }
            _ => {}
        }
    }
    let by_key: BTreeMap<&str, (u64, &Life)> = lives.iter().filter_map(|(id, l)| Some((l.key?, (*id, l)))).collect();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut after_close = Vec::new();
    let mut wrong_owner = Vec::new();
    let mut kept_alive = expired_while_kept_alive(ops, &lives, faults);
    let mut reads = 0usize;
    for r in ops.iter().filter(|o| o.f == "read" && o.outcome == EventType::Ok) {
        let (Some(key), Some(done)) = (r.key.as_deref(), r.complete) else { continue };
        let Some(&(id, life)) = by_key.get(key) else { continue };
        let Some(exists) = r.result.get("exists").and_then(|e| e.as_bool()) else { continue };
        reads += 1;
        if !exists && life.created.is_some_and(|c| c < r.invoke) {
            if life.last_alive_invoke.is_some_and(|k| k > done) {
                early.push(json!({"session": id, "read": describe(r), "later_keep_alive_found_it_alive_at": life.last_alive_invoke}));
            } else if let Some(w) = kept_alive_witness(life, r, faults) {
                kept_alive.entry(id).or_insert(w);
            }
        }
        if exists && life.closed.is_some_and(|c| c < r.invoke) {
            after_close.push(json!({"session": id, "read": describe(r), "close_acknowledged_at": life.closed}));
        }
        if let Some(owner) = r.result.get("owner").and_then(uint).filter(|o| exists && *o != id) {
            wrong_owner.push(json!({"session": id, "ephemeral_owner": owner, "read": describe(r)}));
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
        "{} sessions, {reads} reads of their keys; {} deleted early, {} expired while kept alive, {} outlived the bound, {} seen after close, {} with a wrong owner",
        lives.len(),
        early.len(),
        kept_alive.len(),
        late.len(),
        after_close.len(),
        wrong_owner.len()
    );
    let anomalies = [&early, &late, &after_close, &wrong_owner];
    if anomalies.iter().any(|a| !a.is_empty()) || !kept_alive.is_empty() {
        for a in [&mut early, &mut late, &mut after_close, &mut wrong_owner] {
            a.truncate(20);
        }
        return CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(json!({
            "deleted_while_alive": early,
            "expired_while_kept_alive": kept_alive.iter().take(20).map(|(id, w)| json!({"session": id, "detail": w})).collect::<Vec<_>>(),
            "outlived_bound": late,
            "seen_after_close": after_close,
            "wrong_ephemeral_owner": wrong_owner,
        }));
    }
    if reads == 0 {
        return CheckResult::new(NAME, Verdict::Unknown, "no read of a session key succeeded");
    }
    CheckResult::new(NAME, Verdict::Valid, summary)
}

/// Sessions a keep-alive found "not alive" although they were still being kept alive and less
/// than a TTL of healthy time had passed since their last renewal (see the module docs), each
/// with its first witness.
fn expired_while_kept_alive(
    ops: &[Op],
    lives: &BTreeMap<u64, Life>,
    faults: &[FaultInterval],
) -> BTreeMap<u64, serde_json::Value> {
    let dead = |op: &&Op| {
        op.f == "keep-alive"
            && op.outcome == EventType::Ok
            && op.result.get("alive").and_then(|a| a.as_bool()) == Some(false)
    };
    let mut out = BTreeMap::new();
    for op in ops.iter().filter(dead) {
        let Some(id) = op.arg.get("session").and_then(uint) else { continue };
        if let Some(w) = lives.get(&id).and_then(|life| kept_alive_witness(life, op, faults)) {
            out.entry(id).or_insert(w);
        }
    }
    out
}

/// Why `seen` (an operation that found the session gone) came too early, if it did: the session
/// was not abandoned before it completed, and less than a TTL of time outside every fault
/// passed between its last renewal (invocation) and that completion.
fn kept_alive_witness(life: &Life, seen: &Op, faults: &[FaultInterval]) -> Option<serde_json::Value> {
    let at = seen.complete?;
    if life.ttl_ns == 0 || life.abandoned.is_some_and(|a| a < at) {
        return None;
    }
    let renewal = life.renewals.iter().copied().filter(|r| *r < at).max()?;
    let healthy = healthy_ns(renewal, at, faults);
    (healthy < life.ttl_ns).then(|| {
        json!({
            "seen_gone_by": describe(seen), "last_renewal_invoked": renewal,
            "healthy_ms_since": healthy / 1_000_000, "ttl_ms": life.ttl_ns / 1_000_000,
        })
    })
}

/// Time in `[from, to]` (ns) covered by no fault interval.
fn healthy_ns(from: u64, to: u64, faults: &[FaultInterval]) -> u64 {
    let mut covered: Vec<(u64, u64)> =
        faults.iter().map(|f| (f.start.max(from), f.end.min(to))).filter(|(s, e)| s < e).collect();
    covered.sort_unstable();
    let (mut faulty, mut reach) = (0, from);
    for (s, e) in covered {
        let s = s.max(reach);
        if e > s {
            faulty += e - s;
            reach = e;
        }
    }
    to.saturating_sub(from).saturating_sub(faulty)
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

    /// The stalled-leader history of issue 17: keep-alives succeed up to a pause of the leader
    /// and a follower, time out during it, and the first answer after it says "expired".
    fn stalled(abandon: bool) -> Vec<Op> {
        let mut h = base();
        h.inv(1500 * MS, 1, "keep-alive", None, json!({"session": 7})).ok(
            1501 * MS,
            1,
            "keep-alive",
            None,
            json!({"alive": true}),
        );
        if abandon {
            h.inv(1502 * MS, 1, "abandon", None, json!({"session": 7})).ok(1502 * MS, 1, "abandon", None, Value::Null);
        }
        for t in [2000u64, 3500] {
            h.inv(t * MS, 1, "keep-alive", None, json!({"session": 7})).info(t * MS + 1500 * MS, 1, "keep-alive", None);
        }
        h.inv(5100 * MS, 1, "keep-alive", None, json!({"session": 7})).ok(
            5200 * MS,
            1,
            "keep-alive",
            None,
            json!({"alive": false}),
        );
        h.inv(5300 * MS, 2, "read", Some("e/1"), Value::Null).ok(
            5301 * MS,
            2,
            "read",
            Some("e/1"),
            json!({"exists": false}),
        );
        pair(&h.events).unwrap()
    }

    fn pause(start_ms: u64, end_ms: u64) -> FaultInterval {
        FaultInterval { start: start_ms * MS, end: end_ms * MS, what: "pause majority-with-leader n1,n2".into() }
    }

    #[test]
    fn session_expired_right_after_a_stall_while_kept_alive_is_invalid() {
        let r = check(&stalled(false), &[pause(1800, 4800)]);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
        assert!(r.summary.contains("1 expired while kept alive"), "{}", r.summary);
    }

    #[test]
    fn ephemeral_seen_after_acknowledged_close_or_with_another_owner_is_invalid() {
        let read = |h: &mut H, t: u64, v: Value| {
            h.inv(t * MS, 2, "read", Some("e/1"), Value::Null).ok(t * MS + 1, 2, "read", Some("e/1"), v);
        };
        let mut h = base();
        h.inv(1100 * MS, 1, "close", None, json!({"session": 7})).ok(1200 * MS, 1, "close", None, Value::Null);
        read(&mut h, 1150, json!({"exists": true, "owner": 7}));
        read(&mut h, 1300, json!({"exists": false}));
        assert_eq!(check(&pair(&h.events).unwrap(), &[]).verdict, Verdict::Valid);
        read(&mut h, 1400, json!({"exists": true, "owner": 7}));
        let r = check(&pair(&h.events).unwrap(), &[]);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
        assert!(r.summary.contains("1 seen after close"), "{}", r.summary);
        let mut h = base();
        read(&mut h, 500, json!({"exists": true, "owner": 8}));
        let r = check(&pair(&h.events).unwrap(), &[]);
        assert!(r.summary.contains("1 with a wrong owner"), "{}", r.summary);
        assert_eq!(r.verdict, Verdict::Invalid);
    }

    #[test]
    fn healthy_time_leaves_out_overlapping_faults() {
        let f = |a, b| FaultInterval { start: a, end: b, what: String::new() };
        assert_eq!(healthy_ns(0, 100, &[]), 100);
        assert_eq!(healthy_ns(0, 100, &[f(10, 30), f(20, 40), f(90, 200)]), 60);
        assert_eq!(healthy_ns(50, 60, &[f(0, 100)]), 0);
    }

    #[test]
    fn expiry_a_ttl_of_healthy_time_after_the_last_renewal_or_after_abandon_is_valid() {
        // Abandoned before the stall: the client stopped; expiry is expected.
        assert_eq!(check(&stalled(true), &[pause(1800, 4800)]).verdict, Verdict::Valid);
        // No fault: 3.7 s of healthy time without a successful keep-alive; the cluster may expire it.
        assert_eq!(check(&stalled(false), &[]).verdict, Verdict::Valid);
        // A short fault leaves more than a TTL of healthy time: may expire too.
        assert_eq!(check(&stalled(false), &[pause(1800, 2800)]).verdict, Verdict::Valid);
    }
}
