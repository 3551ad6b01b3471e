//! The Prometheus registry and every metric family, behind one process-wide handle.
//!
//! Two kinds of metrics:
//! - **Hooks**: counters and histograms other layers feed with one call (`observe_*`,
//!   [`track_proposal`], [`watcher_opened`], ...). Each is a few atomic operations (a labelled
//!   family adds the crate's read lock on its map); nothing allocates on the hot path except a
//!   labelled family's first sample of a label set.
//! - **Gauges filled at scrape time** from the node facade (`scrape.rs`): leader, indexes, lag,
//!   sessions, state size.
//!
//! Names follow what an etcd operator looks for first, with a `conclave_` prefix; counters get
//! `_total` from the encoder. The exposition is OpenMetrics text (`prometheus-client`), which
//! Prometheus scrapes natively.

use std::borrow::Cow;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::Error;
use conclave_proto::errors::Outcome;

/// Labels of a gRPC request: full method path and status code name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `/package.Service/Method`, or `unknown` for a method the server does not have.
    pub method: Cow<'static, str>,
    /// The gRPC status code name (`OK`, `UNAVAILABLE`, ...).
    pub code: &'static str,
}

/// Labels of a per-peer metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's node id.
    pub peer: u64,
}

type Hist = Family<RpcLabels, Histogram, fn() -> Histogram>;
type PeerHist = Family<PeerLabels, Histogram, fn() -> Histogram>;

/// Latencies from 50 µs to ~1.6 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Durations from 1 ms to ~65 s (snapshots).
fn slow_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric family. Fields are public so `scrape.rs` can set the gauges.
pub struct Metrics {
    registry: Registry,
    /// 1 when this member knows a leader heard from within the lease.
    pub has_leader: Gauge,
    /// 1 on the leader.
    pub is_leader: Gauge,
    /// 1 when the readiness rule says serving.
    pub ready: Gauge,
    /// Leader changes this member has seen (including the first leader).
    pub leader_changes: Counter,
    /// Current term.
    pub term: Gauge,
    /// Commit index this member knows.
    pub committed_index: Gauge,
    /// Applied index.
    pub applied_index: Gauge,
    /// Last log index.
    pub last_log_index: Gauge,
    /// Last snapshot's index.
    pub snapshot_index: Gauge,
    /// Leader only: entries each follower's matched index trails the leader's last log index.
    pub follower_lag: Family<PeerLabels, Gauge>,
    /// Client writes through this member whose result came back from the log.
    pub proposals_committed: Counter,
    /// Commands applied by this member's state machine (every member applies every write).
    pub proposals_applied: Counter,
    /// Client writes through this member waiting for their result.
    pub proposals_pending: Gauge,
    /// Client writes through this member that ended without a result from the log.
    pub proposals_failed: Counter,
    /// Client writes this member forwarded to the leader.
    pub forwarded_writes: Counter,
    /// Peer calls that carried them (several writes share a call when they wait together).
    pub forward_calls: Counter,
    /// Read indexes (linearizable reads, readiness checks) this member asked of the leader.
    pub forwarded_read_indexes: Counter,
    /// Peer calls that carried them.
    pub read_index_calls: Counter,
    /// Read indexes this leader answered from its read lease, without a heartbeat round.
    pub read_index_leased: Counter,
    /// Peer calls this member made over the framed peer wire (not gRPC).
    pub peer_wire_calls: Counter,
    /// 1 while Raft log appends run on a pool thread (the disk is slow), 0 in place.
    pub appends_offloaded: Gauge,
    /// Raft log appends this member wrote as leader without waiting for their fsync (the
    /// flusher fsyncs them while they are replicated).
    pub appends_pipelined: Counter,
    /// Raft log append fsync (fdatasync) duration.
    pub fsync: Histogram,
    /// Duration of one apply call (a run of committed entries).
    pub apply: Histogram,
    /// Snapshot build (encode + write + fsync) duration.
    pub snapshot_save: Histogram,
    /// Snapshot install (from the leader) duration.
    pub snapshot_install: Histogram,
    /// Size of the last snapshot built or installed.
    pub snapshot_size: Gauge,
    /// Read index (leader confirms its leadership with a quorum) duration, on the leader.
    pub read_index: Histogram,
    /// AppendEntries round trip per peer (heartbeats included; the peer's fsync is in it).
    pub peer_rtt: PeerHist,
    /// Open sessions.
    pub sessions: Gauge,
    /// Keys bound to a session.
    pub ephemeral_keys: Gauge,
    /// Leases currently held.
    pub leases: Gauge,
    /// Active watches on this member.
    pub watchers: Gauge,
    /// Watch streams that fell behind (their buffer was full when a response was ready).
    pub slow_watchers: Counter,
    /// Sessions this member expired as the leader.
    pub sessions_expired: Counter,
    /// Live keys.
    pub state_keys: Gauge,
    /// Counters.
    pub state_counters: Gauge,
    /// Current revision.
    pub state_revision: Gauge,
    /// Oldest revision still readable.
    pub compact_revision: Gauge,
    /// gRPC requests handled on the client port, by method and code.
    pub grpc_handled: Family<RpcLabels, Counter>,
    /// gRPC request latency (to the response headers) by method and code.
    pub grpc_latency: Hist,
}

impl Metrics {
    fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            ready: Gauge::default(),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            follower_lag: Family::default(),
            proposals_committed: Counter::default(),
            proposals_applied: Counter::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            forwarded_writes: Counter::default(),
            forward_calls: Counter::default(),
            forwarded_read_indexes: Counter::default(),
            read_index_calls: Counter::default(),
            read_index_leased: Counter::default(),
            peer_wire_calls: Counter::default(),
            appends_offloaded: Gauge::default(),
            appends_pipelined: Counter::default(),
            fsync: latency_histogram(),
            apply: latency_histogram(),
            snapshot_save: slow_histogram(),
            snapshot_install: slow_histogram(),
            snapshot_size: Gauge::default(),
            read_index: latency_histogram(),
            peer_rtt: Family::new_with_constructor(latency_histogram),
            sessions: Gauge::default(),
            ephemeral_keys: Gauge::default(),
            leases: Gauge::default(),
            watchers: Gauge::default(),
            slow_watchers: Counter::default(),
            sessions_expired: Counter::default(),
            state_keys: Gauge::default(),
            state_counters: Gauge::default(),
            state_revision: Gauge::default(),
            compact_revision: Gauge::default(),
            grpc_handled: Family::default(),
            grpc_latency: Family::new_with_constructor(latency_histogram),
        };
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {
                r.register(concat!("conclave_", $name), $help, $metric.clone())
            };
        }
        reg!("has_leader", "1 when this member knows a leader heard from within the leader lease", self.has_leader);
        reg!("is_leader", "1 on the leader", self.is_leader);
        reg!("ready", "1 when the readiness rule says serving (grpc.health.v1, /readyz)", self.ready);
        reg!("leader_changes_seen", "Leader changes this member has seen", self.leader_changes);
        reg!("raft_term", "Current Raft term", self.term);
        reg!("raft_committed_index", "Commit index this member knows", self.committed_index);
        reg!("raft_applied_index", "Last applied log index", self.applied_index);
        reg!("raft_last_log_index", "Last log index", self.last_log_index);
        reg!("raft_snapshot_index", "Log index of the last snapshot", self.snapshot_index);
        reg!(
            "follower_match_lag_entries",
            "Leader only: entries a follower's matched index trails the leader's last log index",
            self.follower_lag
        );
        reg!(
            "proposals_committed",
            "Client writes through this member that came back from the log",
            self.proposals_committed
        );
        reg!("proposals_applied", "Commands applied by this member's state machine", self.proposals_applied);
        reg!("proposals_pending", "Client writes through this member waiting for their result", self.proposals_pending);
        reg!(
            "proposals_failed",
            "Client writes through this member that ended without a result from the log",
            self.proposals_failed
        );
        reg!("forwarded_writes", "Client writes this member forwarded to the leader", self.forwarded_writes);
        reg!("forward_calls", "Peer calls to the leader that carried the forwarded writes", self.forward_calls);
        reg!(
            "forwarded_read_indexes",
            "Read indexes (linearizable reads, readiness checks) this member asked of the leader",
            self.forwarded_read_indexes
        );
        reg!("read_index_calls", "Peer calls to the leader that carried the read indexes", self.read_index_calls);
        reg!(
            "read_index_leased",
            "Read indexes this leader answered from its read lease, without a heartbeat round",
            self.read_index_leased
        );
        reg!(
            "peer_wire_calls",
            "Peer calls this member made over the framed peer wire (not gRPC)",
            self.peer_wire_calls
        );
        reg!(
            "log_appends_offloaded",
            "1 while Raft log appends run on a pool thread because the disk is slow, 0 in place",
            self.appends_offloaded
        );
        reg!(
            "log_appends_pipelined",
            "Raft log appends written by the leader without waiting for their fsync, which runs while they are replicated",
            self.appends_pipelined
        );
        reg!("log_fsync_duration_seconds", "Raft log append fdatasync duration", self.fsync);
        reg!("apply_duration_seconds", "Duration of applying one run of committed entries", self.apply);
        reg!("snapshot_save_duration_seconds", "Snapshot build and save duration", self.snapshot_save);
        reg!(
            "snapshot_install_duration_seconds",
            "Duration of installing a snapshot from the leader",
            self.snapshot_install
        );
        reg!("snapshot_size_bytes", "Size of the last snapshot built or installed", self.snapshot_size);
        reg!("read_index_duration_seconds", "Leader: read index (quorum confirmation) duration", self.read_index);
        reg!("peer_round_trip_seconds", "AppendEntries round trip per peer (heartbeats included)", self.peer_rtt);
        reg!("sessions", "Open sessions", self.sessions);
        reg!("ephemeral_keys", "Keys bound to a session", self.ephemeral_keys);
        reg!("leases", "Leases currently held", self.leases);
        reg!("watchers", "Active watches on this member", self.watchers);
        reg!("slow_watchers", "Watch streams that fell behind their reader", self.slow_watchers);
        reg!("sessions_expired", "Sessions this member expired as the leader", self.sessions_expired);
        reg!("state_keys", "Live keys", self.state_keys);
        reg!("state_counters", "Counters", self.state_counters);
        reg!("state_revision", "Current revision", self.state_revision);
        reg!("state_compact_revision", "Oldest revision still readable", self.compact_revision);
        reg!("grpc_server_handled", "gRPC requests handled on the client port, by method and code", self.grpc_handled);
        reg!(
            "grpc_server_handling_seconds",
            "gRPC request latency to the response headers (a stream's opening), by method and code",
            self.grpc_latency
        );
        self
    }

    /// The exposition of every metric (OpenMetrics text).
    ///
    /// # Errors
    /// Only if formatting into a `String` fails (it does not).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Runs `f` (a Raft log append's fdatasync) and records its duration.
pub fn timed_fsync<T>(f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let r = f();
    observe_fsync(started.elapsed());
    r
}

/// Records `writes` writes forwarded to the leader in `calls` peer calls.
pub fn forwarded(writes: usize, calls: usize) {
    let m = global();
    m.forwarded_writes.inc_by(writes as u64);
    m.forward_calls.inc_by(calls as u64);
}

/// Records one read-index call to the leader shared by `reads` reads.
pub fn forwarded_read_indexes(reads: usize) {
    let m = global();
    m.forwarded_read_indexes.inc_by(reads as u64);
    m.read_index_calls.inc();
}

/// Records one Raft log fsync's duration.
pub fn observe_fsync(d: Duration) {
    global().fsync.observe(d.as_secs_f64());
}

/// Records one apply call: its duration and the commands it applied.
pub fn observe_apply(d: Duration, commands: usize) {
    let m = global();
    m.apply.observe(d.as_secs_f64());
    m.proposals_applied.inc_by(commands as u64);
}

/// Records a snapshot built and saved by this member.
pub fn observe_snapshot_save(d: Duration, bytes: usize) {
    let m = global();
    m.snapshot_save.observe(d.as_secs_f64());
    m.snapshot_size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// Records a snapshot installed from the leader.
pub fn observe_snapshot_install(d: Duration, bytes: usize) {
    let m = global();
    m.snapshot_install.observe(d.as_secs_f64());
    m.snapshot_size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// Counts one read index answered from the read lease.
pub fn read_index_leased() {
    global().read_index_leased.inc();
}

/// Counts one peer call made over the framed peer wire.
pub fn peer_wire_call() {
    global().peer_wire_calls.inc();
}

/// Records one quorum check's duration.
pub fn observe_read_index(d: Duration) {
    global().read_index.observe(d.as_secs_f64());
}

/// Records one successful AppendEntries round trip to `peer`.
pub fn observe_peer_rtt(peer: u64, d: Duration) {
    global().peer_rtt.get_or_create(&PeerLabels { peer }).observe(d.as_secs_f64());
}

/// Counts a session expired by this member as the leader.
pub fn session_expired() {
    global().sessions_expired.inc();
}

/// Counts a watch stream that fell behind its reader.
pub fn slow_watcher() {
    global().slow_watchers.inc();
}

/// Counts an active watch until the guard is dropped.
#[must_use = "the watch counts as active while the guard lives"]
pub struct WatcherGuard(());

/// Counts a watch as active until the returned guard is dropped.
pub fn watcher_opened() -> WatcherGuard {
    global().watchers.inc();
    WatcherGuard(())
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        global().watchers.dec();
    }
}

/// Decrements the pending proposals when dropped (also when the request is cancelled).
struct Pending;

impl Drop for Pending {
    fn drop(&mut self) {
        global().proposals_pending.dec();
    }
}

/// Runs a client write's proposal, counting it pending meanwhile, then committed (it has a
/// result from the log, a deterministic failure included) or failed.
pub async fn track_proposal<T>(proposal: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let m = global();
    m.proposals_pending.inc();
    let _pending = Pending;
    let result = proposal.await;
    match &result {
        Ok(_) => m.proposals_committed.inc(),
        Err(e) if e.outcome() == Outcome::Applied => m.proposals_committed.inc(),
        Err(_) => m.proposals_failed.inc(),
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed_under_their_names() -> Result<(), std::fmt::Error> {
        observe_peer_rtt(2, Duration::from_millis(1));
        let guard = watcher_opened();
        let text = global().encode()?;
        drop(guard);
        for name in [
            "conclave_has_leader ",
            "conclave_leader_changes_seen_total ",
            "conclave_log_fsync_duration_seconds_bucket{le=",
            "conclave_peer_round_trip_seconds_count{peer=\"2\"} ",
            "conclave_watchers 1",
            "conclave_proposals_failed_total ",
        ] {
            assert!(text.contains(name), "{name:?} missing from\n{text}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn proposals_are_counted_by_outcome() {
        let m = global();
        let (committed, failed) = (m.proposals_committed.get(), m.proposals_failed.get());
        let _ = track_proposal(async { Ok::<_, Error>(()) }).await;
        let _ = track_proposal(async { Err::<(), _>(Error::NoLeader(1)) }).await;
        assert!(m.proposals_committed.get() > committed);
        assert!(m.proposals_failed.get() > failed);
        assert_eq!(m.proposals_pending.get(), 0, "nothing left pending");
    }
}
