//! Transactions: compares, then one of two operation lists, atomically at one revision.
//!
//! Atomicity: the chosen list is first checked for failures that depend on state (counter
//! overflow), simulating counter values in order; only if none would fail is anything written.

use std::collections::BTreeMap;

use super::response::{CommandError, CommandResult, OpResult, Outcome, OutcomeBody};
use super::StateMachine;
use crate::log_entry::{Compare, CompareOp, KeyField, TxnOp};

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
        }
    }

    pub(super) fn apply_txn(&mut self, compares: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> CommandResult {
        let succeeded = compares.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { success } else { failure };
        self.check_counter_ops(ops)?;
        let next = self.revision + 1;
        let mut changed = false;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                TxnOp::Range(spec) => {
                    // Reads inside a transaction see the transaction's earlier writes.
                    OpResult::Range(self.range_unchecked(spec, next))
                }
                TxnOp::Put { key, value, prev_kv } => {
                    let change = self.kv.write(key, Some(value.clone()), next);
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
        Ok(Outcome { revision: self.revision, body: OutcomeBody::Txn { succeeded, responses } })
    }

    /// Fails if any counter addition in `ops`, taken in order, would overflow.
    fn check_counter_ops(&self, ops: &[TxnOp]) -> Result<(), CommandError> {
        let mut values: BTreeMap<&str, u64> = BTreeMap::new();
        for op in ops {
            match op {
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
