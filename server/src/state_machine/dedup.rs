//! Exactly-once retries: remembers recent results per client so a retried write (same client id
//! and sequence number) gets its original result instead of being applied twice.
//!
//! Bounded: a client's results below its reported `first_incomplete` are forgotten, at most
//! [`MAX_RESULTS_PER_CLIENT`] are kept per client, and at most `max_clients` clients are tracked
//! (the least recently active are forgotten first). Of a forgotten client only its highest
//! sequence number is kept (for up to [`EVICTED_PER_CLIENT_SLOT`] x `max_clients` clients), so
//! its later new writes apply normally. A retry whose result was forgotten gets
//! [`CommandError::RetryTooOld`]: its outcome cannot be known, and it is not applied again.
//! Everything here is a deterministic function of the applied log.

use std::collections::{BTreeMap, VecDeque};

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
    /// Highest applied sequence number of forgotten clients.
    evicted: BTreeMap<u64, u64>,
    /// Order in which clients were forgotten (oldest first; may hold ids since revived).
    evicted_order: VecDeque<u64>,
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
            let high = *self.evicted.get(&id.client_id)?;
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
        let revived_floor = self.evicted.remove(&id.client_id).map_or(0, |high| high + 1);
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
                self.evicted.insert(id, c.high.max(c.floor.saturating_sub(1)));
                self.evicted_order.push_back(id);
            }
        }
        while self.evicted.len() > self.max_clients * EVICTED_PER_CLIENT_SLOT {
            match self.evicted_order.pop_front() {
                Some(id) => {
                    self.evicted.remove(&id);
                }
                None => break,
            }
        }
    }

    /// The highest sequence number applied for `client_id`, if it is remembered.
    pub fn high_seq(&self, client_id: u64) -> Option<u64> {
        self.clients.get(&client_id).map(|c| c.high).or_else(|| self.evicted.get(&client_id).copied())
    }

    /// Number of tracked clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn with_max_clients(max_clients: usize) -> Self {
        Self { clients: BTreeMap::new(), max_clients, evicted: BTreeMap::new(), evicted_order: VecDeque::new() }
    }
}
