//! AppendEntries that carry entries: bounded by bytes, run in their own task with a timeout
//! sized to them, and answered to openraft across its retries.
//!
//! Why: openraft 0.9 cancels every AppendEntries call after the heartbeat interval (50 ms), and
//! one call may carry 64 entries of up to ~5.5 MiB each (an entry is a batch of proposals). A
//! follower that missed a burst of large writes was sent the same huge range, which could not
//! arrive in 50 ms, again and again (issue 17: applied index 3 against the leader's 104 for 60 s).
//!
//! Guarantees:
//! - A request carries at most [`MAX_APPEND_BYTES`] of encoded entries, or one entry when that
//!   one alone is larger. Handed more, this answers openraft `PayloadTooLarge` with the number
//!   of entries that fit, and openraft re-reads just that many (for its next 10 requests).
//! - A request runs in its own task with a timeout of [`APPEND_TIMEOUT_BASE`] plus its size at
//!   [`APPEND_MIN_BANDWIDTH`] (never less than openraft's). openraft cancelling its call does not
//!   cancel the request: the retry (same leader vote, same `prev_log_id`) waits for the request
//!   already in flight instead of sending it again, and gets the follower's answer, stated for
//!   the retried range (`Success`, or `PartialSuccess` up to the last entry the request carried).
//! - At most one such request is in flight per connection; a call for another range (openraft
//!   moved on, e.g. after a conflict) aborts the stale request first. Heartbeats (no entries)
//!   do not wait for it.
//!
//! Failure: a request that times out or fails is answered with its error (`Unreachable` for a
//! transport failure or a timeout, so openraft backs off), and the next call sends anew.
//!
//! openraft stamps an answer with the time its own call started, so an answer collected by a
//! retry carries the retry's time. In openraft 0.9.25 that stamp feeds only a metric
//! (`millis_since_quorum_ack`): reads confirm leadership with fresh heartbeats
//! (`ensure_linearizable`), which never wait here, so no lease is extended by it. Each `PayloadTooLarge`
//! is logged by openraft as an error (once per 10 requests while entries are large).

use std::time::Duration;

use openraft::error::{Infallible, NetworkError, PayloadTooLarge, RPCError};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::Vote;
use tokio::task::JoinHandle;

use super::{exchange, Kind, PeerClient, RpcErr};
use crate::log_entry::{encode, encoded_len};
use crate::raft::{LogId, NodeId, TypeConfig};

/// Most encoded entry bytes one AppendEntries carries (unless a single entry is larger). 2 MiB
/// moves in a few milliseconds on a LAN or loopback and is one or two batches of the largest
/// proposals (1.5 MiB requests); small entries still go 64 to a request.
pub const MAX_APPEND_BYTES: usize = 2 * 1024 * 1024;
/// Fixed part of a request's timeout: a follower's append and fsync, scheduling on a busy host.
pub const APPEND_TIMEOUT_BASE: Duration = Duration::from_secs(1);
/// The slowest transfer a request is given time for, bytes per second.
pub const APPEND_MIN_BANDWIDTH: u64 = 8 * 1024 * 1024;

type AppendResult = Result<AppendEntriesResponse<NodeId>, RpcErr<Infallible>>;

/// An AppendEntries request with entries, running in its own task.
pub(super) struct InFlight {
    vote: Vote<NodeId>,
    prev: Option<LogId>,
    /// The last entry it carries.
    last: LogId,
    task: JoinHandle<AppendResult>,
}

impl InFlight {
    /// Stops the request (its answer is no longer wanted).
    pub(super) fn abort(self) {
        self.task.abort();
    }

    /// Whether `rpc` asks for what this request is already doing: same leader, same start.
    fn continues(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
        self.vote == rpc.vote && self.prev == rpc.prev_log_id
    }
}

/// The timeout of a request of `bytes` encoded bytes; at least `openraft`'s own.
pub fn append_timeout(bytes: usize, openraft: Duration) -> Duration {
    let transfer = Duration::from_secs_f64(bytes as f64 / APPEND_MIN_BANDWIDTH as f64);
    (APPEND_TIMEOUT_BASE + transfer).max(openraft)
}

/// How many leading entries of encoded `sizes` one request carries: as many as fit in `budget`
/// bytes, and at least one.
pub fn entries_that_fit(sizes: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let (mut total, mut n) = (0usize, 0usize);
    for size in sizes {
        total = total.saturating_add(size);
        if n > 0 && total > budget {
            break;
        }
        n += 1;
    }
    n
}

/// openraft's answer for a call that asked for entries up to `requested`, when the follower
/// accepted a request (same leader, same start) that carried entries up to `carried`.
fn answer_for(requested: LogId, carried: LogId) -> AppendEntriesResponse<NodeId> {
    if carried.index >= requested.index {
        AppendEntriesResponse::Success
    } else {
        AppendEntriesResponse::PartialSuccess(Some(carried))
    }
}

fn network_err(e: &(impl std::error::Error + 'static)) -> RpcErr<Infallible> {
    RPCError::Network(NetworkError::new(e))
}

impl PeerClient {
    /// AppendEntries with at least one entry (see the module docs).
    pub(super) async fn append_bounded(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> AppendResult {
        let Some(requested) = rpc.entries.last().map(|e| e.log_id) else {
            return self.call(Kind::Append, &rpc, option).await;
        };
        if self.in_flight.as_ref().is_some_and(|f| !f.continues(&rpc)) {
            if let Some(stale) = self.in_flight.take() {
                stale.abort();
            }
        }
        if self.in_flight.is_none() {
            let sizes: Vec<usize> =
                rpc.entries.iter().map(encoded_len).collect::<Result<_, _>>().map_err(|e| network_err(&e))?;
            let fit = entries_that_fit(sizes.iter().copied(), MAX_APPEND_BYTES);
            if fit < rpc.entries.len() {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit as u64)));
            }
            self.in_flight = Some(self.start(rpc, requested, option.hard_ttl())?);
        }
        let Some(request) = self.in_flight.as_mut() else {
            return Err(network_err(&super::Msg("no append request in flight".into())));
        };
        // If openraft cancels this call here, the request stays in flight for its retry.
        let result = (&mut request.task).await;
        let Some(request) = self.in_flight.take() else {
            return Err(network_err(&super::Msg("no append request in flight".into())));
        };
        match result {
            Err(e) => Err(network_err(&e)),
            Ok(Ok(AppendEntriesResponse::Success)) => Ok(answer_for(requested, request.last)),
            Ok(other) => other,
        }
    }

    /// Encodes `rpc` and sends it in a task of its own, with a timeout sized to it.
    fn start(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        last: LogId,
        openraft_timeout: Duration,
    ) -> Result<InFlight, RpcErr<Infallible>> {
        let payload = encode(&rpc).map_err(|e| network_err(&e))?;
        let timeout = append_timeout(payload.len(), openraft_timeout);
        let to = self.peer();
        let target = self.target;
        let (entries, bytes) = (rpc.entries.len(), payload.len());
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = exchange(to, Kind::Append, payload, timeout).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(target, entries, bytes, elapsed_ms, ok = result.is_ok(), "append request done");
            result
        });
        Ok(InFlight { vote: rpc.vote, prev: rpc.prev_log_id, last, task })
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    #[test]
    fn a_request_carries_what_fits_and_at_least_one_entry() {
        let mib = 1024 * 1024;
        assert_eq!(entries_that_fit([100; 64], MAX_APPEND_BYTES), 64, "small entries all go");
        assert_eq!(entries_that_fit([mib / 2; 64], 2 * mib), 4);
        assert_eq!(entries_that_fit([5 * mib, 10], 2 * mib), 1, "an entry larger than the bound goes alone");
        assert_eq!(entries_that_fit([mib, 5 * mib], 2 * mib), 1, "the larger one waits for the next request");
    }

    #[test]
    fn the_timeout_grows_with_the_request() {
        let heartbeat = Duration::from_millis(50);
        assert_eq!(append_timeout(0, heartbeat), APPEND_TIMEOUT_BASE);
        assert_eq!(append_timeout(8 * 1024 * 1024, heartbeat), APPEND_TIMEOUT_BASE + Duration::from_secs(1));
        assert_eq!(append_timeout(10, Duration::from_secs(5)), Duration::from_secs(5), "never below openraft's");
    }

    #[test]
    fn a_retry_is_answered_for_its_own_range() {
        assert_eq!(answer_for(log_id(10), log_id(10)), AppendEntriesResponse::Success);
        assert_eq!(answer_for(log_id(10), log_id(12)), AppendEntriesResponse::Success, "the follower got more");
        assert_eq!(answer_for(log_id(10), log_id(7)), AppendEntriesResponse::PartialSuccess(Some(log_id(7))));
    }
}
