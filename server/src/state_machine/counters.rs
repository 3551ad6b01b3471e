//! Named u64 counters. Each change happens at a revision of the global sequence; counters keep
//! no history (a read at a past revision sees only keys).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A counter's stored state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Current value.
    pub value: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
}

/// All counters by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    by_name: BTreeMap<String, Counter>,
}

impl Counters {
    /// A counter's state, if it exists.
    pub fn get(&self, name: &str) -> Option<Counter> {
        self.by_name.get(name).copied()
    }

    /// Current value (0 when missing).
    pub fn value(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |c| c.value)
    }

    /// Sets a counter at `revision`; returns the previous value (0 when missing).
    pub fn set(&mut self, name: &str, value: u64, revision: u64) -> u64 {
        let prev = self.value(name);
        self.by_name.insert(name.to_owned(), Counter { value, mod_revision: revision });
        prev
    }

    /// Deletes a counter; returns whether it existed.
    pub fn delete(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are no counters.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
