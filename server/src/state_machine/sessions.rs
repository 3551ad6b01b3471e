//! Sessions (with their ephemeral keys) and named leases with fencing tokens: the replicated
//! part. Deadlines are not here: the leader tracks them in memory (`crate::sessions`) and
//! proposes expiry as a command, so this table is a pure function of the log.

use std::collections::BTreeSet;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// One live session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Time to live, milliseconds.
    pub ttl_ms: u64,
    /// Ephemeral keys bound to it.
    pub keys: BTreeSet<Vec<u8>>,
    /// Leases it holds.
    pub leases: BTreeSet<String>,
}

/// The current holder of a lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Holding session.
    pub session_id: u64,
    /// Free-form description given at acquisition.
    pub info: Vec<u8>,
    /// Fencing token (= grant revision).
    pub token: u64,
}

/// A lease's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// Current holder, if held.
    pub holder: Option<Holder>,
    /// Grants after the first.
    pub transitions: u64,
    /// Highest token granted so far.
    pub last_token: u64,
}

/// Sessions and leases. Persistent maps, like the key space: a snapshot's copy of the table
/// is O(1) however many sessions are open (`state_machine::mvcc::Mvcc`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable {
    sessions: OrdMap<u64, Session>,
    leases: OrdMap<String, LeaseState>,
    next_id: u64,
}

impl SessionTable {
    /// Creates a session; returns its id (ids are never reused).
    pub fn open(&mut self, ttl_ms: u64) -> u64 {
        self.next_id += 1;
        self.sessions.insert(self.next_id, Session { ttl_ms, ..Session::default() });
        self.next_id
    }

    /// A session, if live.
    pub fn get(&self, id: u64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Every live session.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Session)> {
        self.sessions.iter()
    }

    /// Live sessions with an id greater than `after`, in id order.
    pub fn iter_after(&self, after: u64) -> impl Iterator<Item = (&u64, &Session)> {
        self.sessions.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
    }

    /// Removes a session, returning it (its keys must then be deleted and leases released by
    /// the caller, at one revision).
    pub fn remove(&mut self, id: u64) -> Option<Session> {
        self.sessions.remove(&id)
    }

    /// Moves ephemeral-key ownership: `key` was bound to `from` (0 = none) and is now bound
    /// to `to` (0 = none, e.g. deleted).
    pub fn rebind_key(&mut self, key: &[u8], from: u64, to: u64) {
        if from == to {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&from) {
            s.keys.remove(key);
        }
        if let Some(s) = self.sessions.get_mut(&to) {
            s.keys.insert(key.to_vec());
        }
    }

    /// A lease's state.
    pub fn lease(&self, name: &str) -> Option<&LeaseState> {
        self.leases.get(name)
    }

    /// Grants `name` to `session_id` at `revision` if it is free; if that session already holds
    /// it, keeps the existing grant. Returns the holder afterwards and whether this call
    /// granted or kept it.
    pub fn acquire(&mut self, name: &str, session_id: u64, info: &[u8], revision: u64) -> (Holder, bool) {
        let state = self.leases.entry(name.to_owned()).or_default();
        if let Some(h) = &state.holder {
            return (h.clone(), h.session_id == session_id);
        }
        if state.last_token > 0 {
            state.transitions += 1;
        }
        state.last_token = revision;
        let holder = Holder { session_id, info: info.to_vec(), token: revision };
        state.holder = Some(holder.clone());
        if let Some(s) = self.sessions.get_mut(&session_id) {
            s.leases.insert(name.to_owned());
        }
        (holder, true)
    }

    /// Releases `name` (whoever holds it); returns the former holder.
    pub fn release(&mut self, name: &str) -> Option<Holder> {
        let holder = self.leases.get_mut(name)?.holder.take()?;
        if let Some(s) = self.sessions.get_mut(&holder.session_id) {
            s.leases.remove(name);
        }
        Some(holder)
    }

    /// Whether `name` is held with exactly `token`; otherwise the current token (0 = free).
    pub fn check_fence(&self, name: &str, token: u64) -> Result<(), u64> {
        match self.leases.get(name).and_then(|l| l.holder.as_ref()) {
            Some(h) if h.token == token => Ok(()),
            Some(h) => Err(h.token),
            None => Err(0),
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
