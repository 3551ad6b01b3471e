//! Exactly-once retries: remembers recent results per client so a retried write (same client id
//! and sequence number) gets its original result instead of being applied twice.
//!
//! Bounded: a client's results below its reported `first_incomplete` are forgotten, at most
//! [`MAX_RESULTS_PER_CLIENT`] are kept per client, and at most `max_clients` clients are tracked
//! (the least recently active are forgotten first). Of a forgotten client only its highest
//! sequence number is kept (for up to [`EVICTED_PER_CLIENT_SLOT`] x `max_clients` clients), so
//! its later new writes apply normally; a forgotten client that writes again is tracked again and
//! leaves the forgotten set entirely (both its high-water mark and its place in the eviction
//! order), so the table's size depends on the number of clients only, never on the number of
//! writes. A retry whose result was forgotten gets
//! [`CommandError::RetryTooOld`]: its outcome cannot be known, and it is not applied again.
//! Everything here is a deterministic function of the applied log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::response::{CommandError, CommandResult};
use crate::log_entry::RequestId;

/// Results kept per client at most.
pub const MAX_RESULTS_PER_CLIENT: usize = 4096;
/// Forgotten clients whose highest sequence number is remembered, per tracked-client slot.
pub const EVICTED_PER_CLIENT_SLOT: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ClientResults {
    results: BTreeMap<u64, CommandResult>,
    /// Results of sequence numbers below this were forgotten.
    floor: u64,
    /// Log index of the client's last write (recency, for eviction).
    last_index: u64,
    /// Highest sequence number applied.
    high: u64,
}

/// The deduplication table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    clients: BTreeMap<u64, ClientResults>,
    max_clients: usize,
    /// Forgotten clients: highest applied sequence number and place in `evicted_order`.
    evicted: BTreeMap<u64, Evicted>,
    /// Forgotten clients by when they were forgotten (oldest first); exactly the ids in
    /// `evicted`, so it is bounded with it.
    evicted_order: BTreeMap<u64, u64>,
    /// Place the next forgotten client gets in `evicted_order`.
    next_eviction: u64,
}

/// What is kept of a forgotten client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Evicted {
    /// Highest applied sequence number.
    high: u64,
    /// Its key in `evicted_order`.
    order: u64,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::with_max_clients(16_384)
    }
}

impl Dedup {
    /// Looks up a write before applying it: `Some(result)` when it was already applied (or its
    /// result was forgotten), `None` when it is new. Also forgets results the client no longer needs.
    pub fn check(&mut self, id: &RequestId) -> Option<CommandResult> {
        let Some(client) = self.clients.get_mut(&id.client_id) else {
            let high = self.evicted.get(&id.client_id)?.high;
            return (id.seq <= high).then_some(Err(CommandError::RetryTooOld { client_id: id.client_id, seq: id.seq }));
        };
        if id.first_incomplete > client.floor {
            client.floor = id.first_incomplete;
            client.results = client.results.split_off(&id.first_incomplete);
        }
        if let Some(result) = client.results.get(&id.seq) {
            return Some(result.clone());
        }
        if id.seq < client.floor {
            return Some(Err(CommandError::RetryTooOld { client_id: id.client_id, seq: id.seq }));
        }
        None
    }

    /// Records the result of a newly applied write.
    pub fn record(&mut self, id: &RequestId, result: &CommandResult, log_index: u64) {
        let revived_floor = self.forget_eviction(id.client_id).map_or(0, |high| high + 1);
        let client = self
            .clients
            .entry(id.client_id)
            .or_insert_with(|| ClientResults { floor: revived_floor, ..ClientResults::default() });
        client.last_index = log_index;
        client.high = client.high.max(id.seq);
        if id.seq < client.floor {
            return;
        }
        client.results.insert(id.seq, result.clone());
        while client.results.len() > MAX_RESULTS_PER_CLIENT {
            if let Some((seq, _)) = client.results.pop_first() {
                client.floor = client.floor.max(seq + 1);
            }
        }
        if self.clients.len() > self.max_clients {
            self.evict_oldest();
        }
    }

    /// Forgets the least recently active eighth of the clients (amortizes the scan).
    fn evict_oldest(&mut self) {
        let mut recency: Vec<(u64, u64)> = self.clients.iter().map(|(id, c)| (c.last_index, *id)).collect();
        recency.sort_unstable();
        let n = (self.max_clients / 8).max(1);
        for (_, id) in recency.into_iter().take(n) {
            if let Some(c) = self.clients.remove(&id) {
                let order = self.next_eviction;
                self.next_eviction += 1;
                self.evicted.insert(id, Evicted { high: c.high.max(c.floor.saturating_sub(1)), order });
                self.evicted_order.insert(order, id);
            }
        }
        while self.evicted.len() > self.max_clients * EVICTED_PER_CLIENT_SLOT {
            match self.evicted_order.pop_first() {
                Some((_, id)) => {
                    self.evicted.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Removes a forgotten client from the forgotten set (it is tracked again); returns its
    /// highest applied sequence number.
    fn forget_eviction(&mut self, client_id: u64) -> Option<u64> {
        let evicted = self.evicted.remove(&client_id)?;
        self.evicted_order.remove(&evicted.order);
        Some(evicted.high)
    }

    /// The highest sequence number applied for `client_id`, if it is remembered.
    pub fn high_seq(&self, client_id: u64) -> Option<u64> {
        self.clients.get(&client_id).map(|c| c.high).or_else(|| self.evicted.get(&client_id).map(|e| e.high))
    }

    /// Number of tracked clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn with_max_clients(max_clients: usize) -> Self {
        Self {
            clients: BTreeMap::new(),
            max_clients,
            evicted: BTreeMap::new(),
            evicted_order: BTreeMap::new(),
            next_eviction: 0,
        }
    }
}

/// The table as snapshot format 1 encoded it (an eviction order that could hold revived and
/// repeated ids). Read only, to load old snapshots.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct DedupV1 {
    clients: BTreeMap<u64, ClientResults>,
    max_clients: usize,
    evicted: BTreeMap<u64, u64>,
    evicted_order: std::collections::VecDeque<u64>,
}

impl From<DedupV1> for Dedup {
    /// Keeps each forgotten client at its latest place in the old order (where it was last
    /// forgotten); ids no longer forgotten are dropped.
    fn from(old: DedupV1) -> Self {
        let mut latest: BTreeMap<u64, usize> = BTreeMap::new();
        for (position, id) in old.evicted_order.iter().enumerate() {
            if old.evicted.contains_key(id) {
                latest.insert(*id, position);
            }
        }
        let mut ordered: Vec<(usize, u64)> =
            old.evicted.keys().map(|id| (latest.get(id).copied().unwrap_or(usize::MAX), *id)).collect();
        ordered.sort_unstable();
        let mut table = Self { clients: old.clients, ..Self::with_max_clients(old.max_clients) };
        for (order, (_, id)) in ordered.into_iter().enumerate() {
            let order = order as u64;
            table.evicted.insert(id, Evicted { high: old.evicted[&id], order });
            table.evicted_order.insert(order, id);
            table.next_eviction = order + 1;
        }
        table
    }
}

#[cfg(test)]
impl DedupV1 {
    /// A format-1 table with `evicted` forgotten clients (id, high) listed in `order`, which may
    /// repeat ids or name revived ones, as the old code left it.
    pub(crate) fn for_test(max_clients: usize, evicted: &[(u64, u64)], order: &[u64]) -> Self {
        Self {
            clients: BTreeMap::new(),
            max_clients,
            evicted: evicted.iter().copied().collect(),
            evicted_order: order.iter().copied().collect(),
        }
    }
}
