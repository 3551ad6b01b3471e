//! Transactions: compares, then one of two operation lists, atomically at one revision.
//!
//! Fencing first: if any lease compare fails, the transaction is rejected outright (neither
//! branch runs) and the outcome names the lease and its current token.
//! Atomicity: the chosen list is then checked for failures that depend on state (counter
//! overflow, unknown session), simulating counter values in order; only if none would fail is
//! anything written.

use std::collections::BTreeMap;

use super::response::{CommandError, CommandResult, FencingFailure, OpResult, Outcome, OutcomeBody};
use super::StateMachine;
use crate::log_entry::{Compare, CompareOp, KeyField, KeySelector, TxnOp};

/// `value + delta`, or the overflow error.
pub(super) fn checked_add(name: &str, value: u64, delta: u64) -> Result<u64, CommandError> {
    value.checked_add(delta).ok_or_else(|| CommandError::CounterOverflow { name: name.to_owned(), value, delta })
}

fn holds<T: Ord + ?Sized>(actual: &T, op: CompareOp, operand: &T) -> bool {
    match op {
        CompareOp::Equal => actual == operand,
        CompareOp::NotEqual => actual != operand,
        CompareOp::Greater => actual > operand,
        CompareOp::Less => actual < operand,
    }
}

impl StateMachine {
    /// Whether one compare holds against the current state.
    pub(super) fn compare_holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::Key { key, op, field } => {
                let kv = self.kv.get(key);
                match field {
                    KeyField::Value(v) => kv.is_some_and(|kv| holds(kv.value.as_slice(), *op, v.as_slice())),
                    KeyField::Version(v) => holds(&kv.map_or(0, |kv| kv.version), *op, v),
                    KeyField::CreateRevision(v) => holds(&kv.map_or(0, |kv| kv.create_revision), *op, v),
                    KeyField::ModRevision(v) => holds(&kv.map_or(0, |kv| kv.mod_revision), *op, v),
                    KeyField::Exists(v) => holds(&kv.is_some(), *op, v),
                }
            }
            Compare::Counter { name, op, value } => holds(&self.counters.value(name), *op, value),
            Compare::Lease { name, token } => self.sessions.check_fence(name, *token).is_ok(),
            Compare::Children { prefix, op, count } => {
                // Counting past `count + 1` cannot change the answer of any operator: stop
                // there, so the work is bounded by the operand (see `limits::MAX_TXN_COST`).
                let mut n = 0u64;
                self.kv.scan_at(&KeySelector::Prefix(prefix.clone()), self.revision, |_, _| {
                    n += 1;
                    n <= *count
                });
                holds(&n, *op, count)
            }
        }
    }

    /// The first failing lease compare, if any.
    fn fencing_failure(&self, compares: &[Compare]) -> Option<FencingFailure> {
        compares.iter().find_map(|c| match c {
            Compare::Lease { name, token } => self
                .sessions
                .check_fence(name, *token)
                .err()
                .map(|current| FencingFailure { lease: name.clone(), presented_token: *token, current_token: current }),
            _ => None,
        })
    }

    pub(super) fn apply_txn(&mut self, compares: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> CommandResult {
        if let Some(f) = self.fencing_failure(compares) {
            let body = OutcomeBody::Txn { succeeded: false, responses: Vec::new(), fencing_failure: Some(f) };
            return Ok(Outcome { revision: self.revision, body });
        }
        let succeeded = compares.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { success } else { failure };
        self.precheck(ops)?;
        let next = self.revision + 1;
        let mut changed = false;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                TxnOp::Range(spec) => {
                    // Reads inside a transaction see the transaction's earlier writes.
                    OpResult::Range(self.range_unchecked(spec, next))
                }
                TxnOp::Put { key, value, prev_kv, session } => {
                    let change = self.write_key(key, Some((value.clone(), *session)), next);
                    changed = true;
                    OpResult::Put { prev: if *prev_kv { change.and_then(|c| c.prev) } else { None } }
                }
                TxnOp::DeleteRange { selector, prev_kv } => {
                    let prev = self.delete_range(selector, next);
                    changed |= !prev.is_empty();
                    OpResult::DeleteRange {
                        deleted: prev.len() as u64,
                        prev_kvs: if *prev_kv { prev } else { Vec::new() },
                    }
                }
                TxnOp::CounterAdd { name, delta } => {
                    let previous = self.counters.value(name);
                    let value = previous.saturating_add(*delta); // overflow ruled out above
                    self.counters.set(name, value, next);
                    changed = true;
                    OpResult::CounterAdd { previous, value }
                }
                TxnOp::CounterGet { name } => {
                    let c = self.counters.get(name);
                    OpResult::CounterGet {
                        value: c.map_or(0, |c| c.value),
                        exists: c.is_some(),
                        mod_revision: c.map_or(0, |c| c.mod_revision),
                    }
                }
                TxnOp::CounterSet { name, value } => {
                    changed = true;
                    OpResult::CounterSet { previous: self.counters.set(name, *value, next) }
                }
                TxnOp::CounterDelete { name } => {
                    let deleted = self.counters.delete(name);
                    changed |= deleted;
                    OpResult::CounterDelete { deleted }
                }
            };
            responses.push(result);
        }
        if changed {
            self.revision = next;
        }
        Ok(Outcome { revision: self.revision, body: OutcomeBody::Txn { succeeded, responses, fencing_failure: None } })
    }

    /// Fails if any operation in `ops`, taken in order, would fail: a counter addition that
    /// overflows, or a put bound to a session that does not exist.
    fn precheck(&self, ops: &[TxnOp]) -> Result<(), CommandError> {
        let mut values: BTreeMap<&str, u64> = BTreeMap::new();
        for op in ops {
            match op {
                TxnOp::Put { session, .. } => self.require_session(*session)?,
                TxnOp::CounterAdd { name, delta } => {
                    let current = *values.entry(name).or_insert_with(|| self.counters.value(name));
                    values.insert(name, checked_add(name, current, *delta)?);
                }
                TxnOp::CounterSet { name, value } => {
                    values.insert(name, *value);
                }
                TxnOp::CounterDelete { name } => {
                    values.insert(name, 0);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
