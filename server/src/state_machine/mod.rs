//! The replicated state machine: a pure, deterministic function of (state, command, entry).
//!
//! [`StateMachine::apply_batch`] never reads a clock, draws randomness or touches the network.
//! Time never decides anything here: session expiry is decided by the leader's clock and
//! proposed as a command (`SessionExpire`). Every replica that applies the same log
//! reaches the same state and the same results. One global revision increments once per proposal
//! that changes anything; all changes of one proposal share that revision.

pub mod access;
pub mod auth;
pub mod counters;
pub mod dedup;
pub mod hash;
pub mod history;
pub(crate) mod legacy;
pub mod mvcc;
pub mod response;
pub mod sessions;
mod txn;
mod zk_reap;
pub mod zk_result;
pub mod znodes;

pub use zk_reap::ReapRules;

use std::collections::BTreeMap;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::log_entry::{BatchV1, Command, KeySelector, Proposal, RangeSpec};
use counters::Counters;
use dedup::Dedup;
use mvcc::{Change, KeyValue, Mvcc};
use response::{CommandError, CommandResult, Outcome, OutcomeBody, RangeResult};
use sessions::SessionTable;
use znodes::Znodes;

/// Most revisions of history one compaction drops (see `StateMachine::maybe_compact`).
pub const COMPACT_STEP: u64 = 256;

/// Cluster-wide settings of the state machine. Part of the replicated state, so every replica
/// applies with the same values: unset in a new cluster (the [`Default`] values apply), set by
/// `Command::SetSettings` (the first leader proposes its `--history-revisions` flag; later
/// values only through that command), kept in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmConfig {
    /// Revisions of history retained for past reads and watch catch-up. History is compacted
    /// when it grows to twice this, back to this many revisions.
    pub history_revisions: u64,
}

impl Default for SmConfig {
    fn default() -> Self {
        Self { history_revisions: 10_000 }
    }
}

/// The whole replicated state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateMachine {
    /// Replicated settings; `None` until the cluster set them (defaults apply meanwhile).
    settings: Option<SmConfig>,
    revision: u64,
    kv: Mvcc,
    counters: Counters,
    dedup: Dedup,
    sessions: SessionTable,
    /// Client addresses nodes registered, by node id.
    client_addrs: BTreeMap<u64, String>,
    /// The ZooKeeper namespace's bookkeeping (`znodes`).
    znodes: Znodes,
    /// Users, roles and the token secret (`auth`).
    auth: auth::AuthState,
    /// The user who opened each owned session (`Command::SessionOpenOwned`, under `--auth`),
    /// by session id; sessions opened otherwise have none. Removed with the session.
    session_owners: OrdMap<u64, String>,
}

/// Why a read could not be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum ReadError {
    /// The revision is older than the compaction point.
    #[error("revision {requested} has been compacted; the oldest available revision is {oldest}")]
    Compacted {
        /// Requested revision.
        requested: u64,
        /// Oldest readable revision.
        oldest: u64,
    },
    /// The revision has not happened yet.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    Future {
        /// Requested revision.
        requested: u64,
        /// Current revision.
        current: u64,
    },
}

impl Default for StateMachine {
    /// An empty state machine whose settings are unset (what every node starts a new cluster
    /// with, whatever its flags).
    fn default() -> Self {
        Self {
            settings: None,
            revision: 0,
            kv: Mvcc::default(),
            counters: Counters::default(),
            dedup: Dedup::default(),
            sessions: SessionTable::default(),
            client_addrs: BTreeMap::new(),
            znodes: Znodes::default(),
            auth: auth::AuthState::default(),
            session_owners: OrdMap::new(),
        }
    }
}

impl StateMachine {
    /// An empty state machine whose settings are already set to `settings` (tests, benches).
    pub fn new(settings: SmConfig) -> Self {
        Self { settings: Some(settings), ..Self::default() }
    }

    /// The settings apply uses: the replicated ones, or the defaults while unset.
    pub fn settings(&self) -> SmConfig {
        self.settings.unwrap_or_default()
    }

    /// The replicated settings, `None` while the cluster has not set them.
    pub fn replicated_settings(&self) -> Option<SmConfig> {
        self.settings
    }

    /// An empty state machine with an injected deduplication table (tests of eviction).
    #[cfg(test)]
    pub(crate) fn with_dedup(config: SmConfig, dedup: Dedup) -> Self {
        Self { dedup, ..Self::new(config) }
    }

    /// Current revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Oldest revision still readable.
    pub fn compact_revision(&self) -> u64 {
        self.kv.compact_revision()
    }

    /// Registered client addresses by node id.
    pub fn client_addrs(&self) -> &BTreeMap<u64, String> {
        &self.client_addrs
    }

    /// The key space (for watch catch-up).
    pub fn kv(&self) -> &Mvcc {
        &self.kv
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sessions and leases.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Users, roles and the token secret.
    pub fn auth(&self) -> &auth::AuthState {
        &self.auth
    }

    /// The user who opened live session `id`, if it has an owner (`None` also for a session
    /// that is not live: ask [`Self::sessions`] which).
    pub fn session_owner(&self, id: u64) -> Option<&str> {
        self.session_owners.get(&id).map(String::as_str)
    }

    /// Applies one log entry's batch; returns one result per proposal, in order.
    pub fn apply_batch(&mut self, batch: &BatchV1, log_index: u64) -> Vec<CommandResult> {
        batch.proposals.iter().map(|p| self.apply_proposal(p, log_index, batch.leader_time_ms)).collect()
    }

    fn apply_proposal(&mut self, proposal: &Proposal, log_index: u64, time_ms: u64) -> CommandResult {
        if let Some(id) = &proposal.request_id {
            if let Some(previous) = self.dedup.check(id) {
                return previous;
            }
        }
        let result = self.apply_command(&proposal.command, time_ms);
        if let Some(id) = &proposal.request_id {
            self.dedup.record(id, &result, log_index);
        }
        self.maybe_compact();
        result
    }

    /// `time_ms`: the batch's `leader_time_ms` (znode ctime/mtime).
    fn apply_command(&mut self, command: &Command, time_ms: u64) -> CommandResult {
        let next = self.revision + 1;
        let (changed, body) = match command {
            Command::Put { key, value, prev_kv, session } => {
                self.require_session(*session)?;
                let change = self.write_key(key, Some((value.clone(), *session)), next);
                let prev = if *prev_kv { change.and_then(|c| c.prev) } else { None };
                (true, OutcomeBody::Put { prev })
            }
            Command::DeleteRange { selector, prev_kv } => {
                let prev_kvs = self.delete_range(selector, next);
                let deleted = prev_kvs.len() as u64;
                let prev_kvs = if *prev_kv { prev_kvs } else { Vec::new() };
                (deleted > 0, OutcomeBody::DeleteRange { deleted, prev_kvs })
            }
            Command::Txn { compares, success, failure } => return self.apply_txn(compares, success, failure),
            Command::AsUser { user, command } => {
                if let Some(message) = access::refusal(self, user, command) {
                    return Err(CommandError::PermissionDenied { message });
                }
                return self.apply_command(command, time_ms);
            }
            Command::CounterAdd { name, delta } => {
                let previous = self.counters.value(name);
                let value = txn::checked_add(name, previous, *delta)?;
                self.counters.set(name, value, next);
                (true, OutcomeBody::CounterAdd { previous, value })
            }
            Command::CounterSet { name, value } => {
                let previous = self.counters.set(name, *value, next);
                (true, OutcomeBody::CounterSet { previous })
            }
            Command::CounterDelete { name } => {
                let deleted = self.counters.delete(name);
                (deleted, OutcomeBody::CounterDelete { deleted })
            }
            Command::SessionOpen { ttl_ms } => {
                let session_id = self.sessions.open(*ttl_ms);
                (false, OutcomeBody::SessionOpened { session_id })
            }
            Command::SessionOpenOwned { ttl_ms, owner } => {
                let session_id = self.sessions.open(*ttl_ms);
                self.session_owners.insert(session_id, owner.clone());
                (false, OutcomeBody::SessionOpened { session_id })
            }
            Command::SessionClose { session_id } => {
                self.require_session(*session_id)?;
                self.end_session(*session_id, next)
            }
            Command::SessionExpire { session_id } => self.end_session(*session_id, next),
            Command::LeaseAcquire { name, session_id, info } => {
                self.require_session(*session_id)?;
                let (holder, granted) = self.sessions.acquire(name, *session_id, info, next);
                (holder.token == next, OutcomeBody::LeaseAcquired { granted, holder })
            }
            Command::LeaseAcquireRetry { name, session_id, info, original } => {
                self.require_session(*session_id)?;
                if self.dedup.high_seq(original.client_id).is_some_and(|high| high > original.seq) {
                    // The caller moved on (gave up on this wait and wrote again): not granted.
                    let holder = self.sessions.lease(name).and_then(|l| l.holder.clone()).unwrap_or_default();
                    (false, OutcomeBody::LeaseAcquired { granted: false, holder })
                } else {
                    let (holder, granted) = self.sessions.acquire(name, *session_id, info, next);
                    (holder.token == next, OutcomeBody::LeaseAcquired { granted, holder })
                }
            }
            Command::LeaseRelease { name, token } => {
                self.sessions.check_fence(name, *token).map_err(|current| CommandError::LeaseNotHeld {
                    name: name.clone(),
                    token: *token,
                    current,
                })?;
                self.sessions.release(name);
                (true, OutcomeBody::LeaseReleased)
            }
            Command::RegisterNode { node_id, client_addr } => {
                self.client_addrs.insert(*node_id, client_addr.clone());
                (false, OutcomeBody::Registered)
            }
            Command::SetSettings { history_revisions, bootstrap } => {
                if !(*bootstrap && self.settings.is_some()) {
                    self.settings = Some(SmConfig { history_revisions: (*history_revisions).max(1) });
                }
                (false, OutcomeBody::Settings { history_revisions: self.settings().history_revisions })
            }
            Command::Zk { session, ids, ops } => {
                let (changed, results) = self.apply_zk(*session, ids, ops, time_ms, next);
                (changed, OutcomeBody::Zk { results })
            }
            Command::ZkSecret { secret } => (false, self.apply_zk_secret(*secret)),
            // Each request bumps the revision itself; nothing is left to bump here.
            Command::ZkBatch { session, ids, requests } => {
                (false, self.apply_zk_batch(*session, ids, requests, time_ms))
            }
            Command::ZkReap { targets } => self.apply_zk_reap(targets, next),
            Command::ZkAttach { session_id, owner } => {
                if self.sessions.get(*session_id).is_some() {
                    self.znodes.owners.insert(*session_id, *owner);
                }
                (false, OutcomeBody::Registered)
            }
            Command::RegisterZkAddr { node_id, zk_addr } => {
                self.znodes.zk_addrs.insert(*node_id, zk_addr.clone());
                (false, OutcomeBody::Registered)
            }
            // Auth changes have their own revision (`AuthState::revision`), not the key space's.
            Command::Auth(c) => (false, self.auth.apply(c)?),
        };
        if changed {
            self.revision = next;
        }
        Ok(Outcome { revision: self.revision, body })
    }

    /// Fails unless `session` is 0 (none) or live.
    fn require_session(&self, session: u64) -> Result<(), CommandError> {
        if session != 0 && self.sessions.get(session).is_none() {
            return Err(CommandError::SessionNotFound { session_id: session });
        }
        Ok(())
    }

    /// Writes a key and keeps the session table's ephemeral-key sets in step.
    fn write_key(&mut self, key: &[u8], value: Option<(Vec<u8>, u64)>, revision: u64) -> Option<Change> {
        let change = self.kv.write(key, value, revision)?;
        let from = change.prev.as_ref().map_or(0, |p| p.session);
        let to = change.current.as_ref().map_or(0, |c| c.session);
        self.sessions.rebind_key(key, from, to);
        Some(change)
    }

    /// Deletes the selected keys at `revision`; returns their previous key-values.
    fn delete_range(&mut self, selector: &KeySelector, revision: u64) -> Vec<KeyValue> {
        let mut keys = Vec::new();
        self.kv.scan_at(selector, u64::MAX, |k, _| {
            keys.push(k.to_vec());
            true
        });
        keys.iter().filter_map(|k| self.write_key(k, None, revision).and_then(|c| c.prev)).collect()
    }

    /// Ends a session: deletes its ephemeral keys and releases its leases, all at `revision`.
    fn end_session(&mut self, session_id: u64, revision: u64) -> (bool, OutcomeBody) {
        let Some(session) = self.sessions.remove(session_id) else {
            return (false, OutcomeBody::SessionClosed { deleted_keys: 0, released_leases: Vec::new() });
        };
        self.znodes.owners.remove(&session_id);
        self.session_owners.remove(&session_id);
        let deleted_keys = session.keys.iter().filter(|k| self.kv.write(k, None, revision).is_some()).count() as u64;
        for path in session.keys.iter().filter_map(|k| znodes::path_of(k)) {
            self.znode_removed(path, revision);
        }
        let released_leases: Vec<String> = session.leases.into_iter().collect();
        for name in &released_leases {
            self.sessions.release(name);
        }
        let changed = deleted_keys > 0 || !released_leases.is_empty();
        (changed, OutcomeBody::SessionClosed { deleted_keys, released_leases })
    }

    /// Reads a range at `revision` (0 = current).
    ///
    /// # Errors
    /// [`ReadError`] when the revision is compacted or in the future.
    pub fn range(&self, spec: &RangeSpec, revision: u64) -> Result<RangeResult, ReadError> {
        let at = self.readable_revision(revision)?;
        Ok(self.range_unchecked(spec, at))
    }

    /// `revision` (0: the current one) if reads can be served at it.
    ///
    /// # Errors
    /// [`ReadError`] when the revision is compacted or in the future.
    fn readable_revision(&self, revision: u64) -> Result<u64, ReadError> {
        let at = if revision == 0 { self.revision } else { revision };
        if at > self.revision {
            return Err(ReadError::Future { requested: at, current: self.revision });
        }
        if at < self.kv.compact_revision() {
            return Err(ReadError::Compacted { requested: at, oldest: self.kv.compact_revision() });
        }
        Ok(at)
    }

    fn range_unchecked(&self, spec: &RangeSpec, at: u64) -> RangeResult {
        let mut result = RangeResult::default();
        self.kv.scan_at(&spec.selector, at, |key, kref| {
            result.count += 1;
            if !spec.count_only {
                if spec.limit == 0 || (result.kvs.len() as u64) < spec.limit {
                    result.kvs.push(kref.to_kv(key, !spec.keys_only));
                } else {
                    result.more = true;
                }
            }
            true
        });
        result
    }

    /// Compacts history deterministically, driven only by the revision.
    /// Keeps `history_revisions` revisions of history, dropping the oldest `step` at a time
    /// (`step` = the window, at most [`COMPACT_STEP`]): once history reaches window + step it
    /// is compacted back to the window. Dropping 10,000 revisions in one apply held the member's
    /// thread for 60-80 ms with a million keys; 256 cost about 2 ms. A function of the revision
    /// and the replicated window only, so every replica compacts at the same revisions.
    fn maybe_compact(&mut self) {
        let window = self.settings().history_revisions.max(1);
        let step = window.min(COMPACT_STEP);
        if self.revision >= self.kv.compact_revision() + window + step {
            self.kv.compact(self.revision - window);
        }
    }
}

#[cfg(test)]
mod tests;
