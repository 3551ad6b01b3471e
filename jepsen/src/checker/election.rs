//! The `election` checker: contenders acquire a lease (leader election) and make writes fenced
//! by their token. Tokens are the revisions of their grants, so an accepted write at revision R
//! carrying token T was stale iff some grant with token T' had T < T' < R: the history is
//! invalid if any such write was accepted. Two contenders *believing* they lead at once is
//! expected (a belief ends only when its holder learns it lost) and only reported.
//!
//! History values: `acquire` result `{"granted": bool, "token": T}` (the holder's token either
//! way, 0 if none); `fenced-write` argument `{"token": T}`, result `{"revision": R}` when accepted,
//! `{"current_token": C}` on a fencing failure (`fail`); `read-lease` result
//! `{"token": T, "last_token": L}`; `release` argument `{"token": T}`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::register::describe;
use super::{uint, CheckResult, Verdict};
use crate::history::{EventType, Op};

/// Checks an election history.
pub fn check(ops: &[Op]) -> CheckResult {
    const NAME: &str = "election";
    // Every grant anyone learned about.
    let mut grants: BTreeSet<u64> = BTreeSet::new();
    for op in ops {
        for field in ["token", "last_token", "current_token"] {
            if let Some(t) = op.result.get(field).and_then(uint).filter(|t| *t > 0) {
                grants.insert(t);
            }
        }
    }
    let mut stale = Vec::new();
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    for op in ops.iter().filter(|o| o.f == "fenced-write") {
        match op.outcome {
            EventType::Ok => accepted += 1,
            EventType::Fail => {
                rejected += 1;
                continue;
            }
            _ => continue,
        }
        let (Some(token), Some(revision)) =
            (op.arg.get("token").and_then(uint), op.result.get("revision").and_then(uint))
        else {
            return CheckResult::new(
                NAME,
                Verdict::Unknown,
                format!("malformed fenced write (event {})", op.invoke_index),
            );
        };
        if let Some(newer) = grants.range(token + 1..revision).next() {
            stale.push(json!({"write": describe(op), "superseded_by_token": newer}));
        }
    }
    let overlaps = overlapping_beliefs(ops);
    let summary = format!(
        "{} grants seen, {accepted} fenced writes accepted, {rejected} rejected as stale, {} stale accepted; \
         {overlaps} overlapping leadership beliefs (reported, not failed)",
        grants.len(),
        stale.len()
    );
    if stale.is_empty() {
        CheckResult::new(NAME, Verdict::Valid, summary)
    } else {
        CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(json!({"stale_writes_accepted": stale}))
    }
}

/// Counts pairs of processes whose leadership beliefs overlapped in time. A belief runs from a
/// granted acquire's completion until its process learns otherwise (a rejected fenced write, a
/// release, an unknown outcome) or stops.
fn overlapping_beliefs(ops: &[Op]) -> usize {
    let mut by_process: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_process.entry(op.process).or_default().push(op);
    }
    let mut beliefs: Vec<(u64, u64, i64)> = Vec::new();
    for (p, list) in &by_process {
        let mut since: Option<u64> = None;
        for op in list {
            let granted = op.f == "acquire"
                && op.outcome == EventType::Ok
                && op.result.get("granted").and_then(|g| g.as_bool()) == Some(true);
            if granted {
                since = since.or(op.complete);
                continue;
            }
            let lost = op.outcome != EventType::Ok || op.f == "release" || op.f == "revoked";
            if let (true, Some(s)) = (lost, since) {
                beliefs.push((s, op.complete.unwrap_or(op.invoke), *p));
                since = None;
            }
        }
        if let (Some(s), Some(last)) = (since, list.last()) {
            beliefs.push((s, last.complete.unwrap_or(last.invoke), *p));
        }
    }
    beliefs.sort_unstable();
    let mut count = 0;
    for (i, a) in beliefs.iter().enumerate() {
        count += beliefs[i + 1..].iter().take_while(|b| b.0 < a.1).filter(|b| b.2 != a.2).count();
    }
    count
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{build::H, pair};
    use serde_json::Value;

    fn history(stale_write_accepted: bool) -> H {
        let mut h = H::default();
        // p1 wins with token 5 and writes at revision 6.
        h.inv(0, 1, "acquire", Some("l"), Value::Null).ok(
            1,
            1,
            "acquire",
            Some("l"),
            json!({"granted": true, "token": 5}),
        );
        h.inv(2, 1, "fenced-write", Some("l"), json!({"token": 5}));
        h.ok(3, 1, "fenced-write", Some("l"), json!({"revision": 6}));
        // p1's session expires; p2 wins with token 9.
        h.inv(10, 2, "acquire", Some("l"), Value::Null).ok(
            11,
            2,
            "acquire",
            Some("l"),
            json!({"granted": true, "token": 9}),
        );
        // p1 still believes it leads and writes with token 5.
        h.inv(12, 1, "fenced-write", Some("l"), json!({"token": 5}));
        if stale_write_accepted {
            h.ok(13, 1, "fenced-write", Some("l"), json!({"revision": 10}));
        } else {
            h.ev(13, 1, EventType::Fail, "fenced-write", Some("l"), json!({"current_token": 9}));
        }
        h.inv(14, 2, "fenced-write", Some("l"), json!({"token": 9}));
        h.ok(15, 2, "fenced-write", Some("l"), json!({"revision": 11}));
        h
    }

    #[test]
    fn fenced_history_is_valid_and_overlap_is_reported() {
        let r = check(&pair(&history(false).events).unwrap());
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
        assert!(r.summary.contains("1 overlapping"), "{}", r.summary);
    }

    #[test]
    fn write_with_stale_token_is_invalid() {
        let r = check(&pair(&history(true).events).unwrap());
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.witness.unwrap()["stale_writes_accepted"][0]["superseded_by_token"], json!(9));
    }
}
