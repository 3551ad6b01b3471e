//! Older encodings of the state machine, read only, so a node keeps loading snapshots written
//! before the current format (`storage/snapshot_file.rs` picks the decoder by format number).
//!
//! Format 1: settings were the node's own `--history-revisions` (not replicated) and the
//! deduplication table's eviction order could grow with writes. Converted, the settings are
//! unset (the defaults apply until the cluster sets them by a logged command, identically on
//! every replica) and the eviction order is rebuilt from the forgotten clients.
//!
//! Format 2: no ZooKeeper namespace bookkeeping (converted: empty, no znodes existed).
//!
//! Format 3: the ZooKeeper table had no TTL nodes and no members' ZooKeeper addresses
//! (converted: none; members register their address again when they start).
//!
//! Formats 1 to 4: no authentication state (converted: no users, no roles, no secret).
//!
//! Formats 1 to 5: no session owners (converted: every session has none, so any user may use
//! it, as before; sessions opened from then on under `--auth` have their opener as owner).

use std::collections::BTreeMap;

use imbl::OrdMap;
use serde::Deserialize;

use super::auth::AuthState;
use super::counters::Counters;
use super::dedup::{Dedup, DedupV1};
use super::mvcc::Mvcc;
use super::sessions::SessionTable;
use super::znodes::{Meta, Znodes};
use super::{SmConfig, StateMachine};

/// The state machine as snapshot format 1 encoded it (field order is the encoding).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct StateMachineV1 {
    /// The writing node's own flag; not carried over (see the module docs).
    pub(crate) _config: SmConfig,
    pub(crate) revision: u64,
    pub(crate) kv: Mvcc,
    pub(crate) counters: Counters,
    pub(crate) dedup: DedupV1,
    pub(crate) sessions: SessionTable,
    pub(crate) client_addrs: BTreeMap<u64, String>,
}

impl From<StateMachineV1> for StateMachine {
    fn from(old: StateMachineV1) -> Self {
        Self {
            settings: None,
            revision: old.revision,
            kv: old.kv,
            counters: old.counters,
            dedup: Dedup::from(old.dedup),
            sessions: old.sessions,
            client_addrs: old.client_addrs,
            znodes: Znodes::default(),
            auth: AuthState::default(),
            session_owners: OrdMap::new(),
        }
    }
}

/// The state machine as snapshot format 2 encoded it (field order is the encoding).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct StateMachineV2 {
    pub(crate) settings: Option<SmConfig>,
    pub(crate) revision: u64,
    pub(crate) kv: Mvcc,
    pub(crate) counters: Counters,
    pub(crate) dedup: Dedup,
    pub(crate) sessions: SessionTable,
    pub(crate) client_addrs: BTreeMap<u64, String>,
}

impl From<StateMachineV2> for StateMachine {
    fn from(old: StateMachineV2) -> Self {
        Self {
            settings: old.settings,
            revision: old.revision,
            kv: old.kv,
            counters: old.counters,
            dedup: old.dedup,
            sessions: old.sessions,
            client_addrs: old.client_addrs,
            znodes: Znodes::default(),
            auth: AuthState::default(),
            session_owners: OrdMap::new(),
        }
    }
}

/// The ZooKeeper table as snapshot format 3 encoded it.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ZnodesV3 {
    pub(crate) nodes: BTreeMap<String, Meta>,
    pub(crate) secret: Option<[u64; 2]>,
}

/// The state machine as snapshot format 3 encoded it (field order is the encoding).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct StateMachineV3 {
    pub(crate) settings: Option<SmConfig>,
    pub(crate) revision: u64,
    pub(crate) kv: Mvcc,
    pub(crate) counters: Counters,
    pub(crate) dedup: Dedup,
    pub(crate) sessions: SessionTable,
    pub(crate) client_addrs: BTreeMap<u64, String>,
    pub(crate) znodes: ZnodesV3,
}

impl From<StateMachineV3> for StateMachine {
    fn from(old: StateMachineV3) -> Self {
        Self {
            settings: old.settings,
            revision: old.revision,
            kv: old.kv,
            counters: old.counters,
            dedup: old.dedup,
            sessions: old.sessions,
            client_addrs: old.client_addrs,
            znodes: Znodes::from_v3(old.znodes.nodes, old.znodes.secret),
            auth: AuthState::default(),
            session_owners: OrdMap::new(),
        }
    }
}

/// The state machine as snapshot format 4 encoded it (field order is the encoding).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct StateMachineV4 {
    pub(crate) settings: Option<SmConfig>,
    pub(crate) revision: u64,
    pub(crate) kv: Mvcc,
    pub(crate) counters: Counters,
    pub(crate) dedup: Dedup,
    pub(crate) sessions: SessionTable,
    pub(crate) client_addrs: BTreeMap<u64, String>,
    pub(crate) znodes: Znodes,
}

impl From<StateMachineV4> for StateMachine {
    fn from(old: StateMachineV4) -> Self {
        Self {
            settings: old.settings,
            revision: old.revision,
            kv: old.kv,
            counters: old.counters,
            dedup: old.dedup,
            sessions: old.sessions,
            client_addrs: old.client_addrs,
            znodes: old.znodes,
            auth: AuthState::default(),
            session_owners: OrdMap::new(),
        }
    }
}

/// The state machine as snapshot format 5 encoded it: format 4's fields, then the auth state.
/// bincode writes a struct as its fields one after the other, with no framing, so the nested
/// `base` reads exactly the bytes of format 5's first eight fields.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct StateMachineV5 {
    pub(crate) base: StateMachineV4,
    pub(crate) auth: AuthState,
}

impl From<StateMachineV5> for StateMachine {
    fn from(old: StateMachineV5) -> Self {
        Self { auth: old.auth, ..Self::from(old.base) }
    }
}

#[cfg(test)]
impl StateMachineV4 {
    /// `sm` as format 4 would have encoded it (its auth state and session owners dropped).
    pub(crate) fn of(sm: &StateMachine) -> Self {
        Self {
            settings: sm.settings,
            revision: sm.revision,
            kv: sm.kv.clone(),
            counters: sm.counters.clone(),
            dedup: sm.dedup.clone(),
            sessions: sm.sessions.clone(),
            client_addrs: sm.client_addrs.clone(),
            znodes: sm.znodes.clone(),
        }
    }
}
