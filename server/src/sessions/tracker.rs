//! The leader's session deadlines and the expiry loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::deadlines::Deadlines;
use super::stall::{QuorumAck, StallClock, StallRule};
use crate::log_entry::{Command, Proposal};
use crate::raft::router::Router;
use crate::raft::PeerNode;

/// Liveness of one session as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTime {
    /// Session id.
    pub session_id: u64,
    /// Whether it exists and is not being expired.
    pub alive: bool,
    /// Its TTL (0 when unknown).
    pub ttl_ms: u64,
    /// Milliseconds until the leader expires it.
    pub remaining_ms: u64,
}

#[derive(Default)]
struct State {
    /// Term in which the deadlines were set; a new term (new leadership) resets them.
    term: u64,
    deadlines: Deadlines,
}

/// Deadlines of every session, valid only while this node leads in `State::term`.
pub struct SessionTracker {
    router: Arc<Router>,
    state: Mutex<State>,
}

impl SessionTracker {
    /// A tracker for this node.
    pub fn new(router: Arc<Router>) -> Arc<Self> {
        Arc::new(Self { router, state: Mutex::default() })
    }

    /// Leadership term if this node is the leader now.
    fn leader_term(&self) -> Option<u64> {
        let metrics = self.router.raft().metrics();
        let m = metrics.borrow();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    /// Resets the deadlines when leadership changed (a new term restarts every deadline at the
    /// full TTL); returns whether this node leads.
    fn check_term(&self, st: &mut State) -> bool {
        match self.leader_term() {
            Some(term) => {
                if st.term != term {
                    st.deadlines.clear();
                    st.term = term;
                }
                true
            }
            None => {
                st.deadlines.clear();
                st.term = 0;
                false
            }
        }
    }

    /// Adds the sessions opened since the last tick, then returns sessions whose deadline has
    /// passed (marking them expiring). After a stall (`stalled`: the leader could not serve)
    /// every deadline first restarts at the full TTL, so nothing expires on this tick.
    /// O(new sessions + deadlines reached) but for a stall or a new term (`deadlines.rs`).
    fn sync(&self, now: Instant, stalled: bool) -> Vec<u64> {
        let Ok(mut st) = self.state.lock() else { return Vec::new() };
        if !self.check_term(&mut st) {
            return Vec::new();
        }
        let Ok(sm) = self.router.shared().sm.read() else { return Vec::new() };
        let sessions = sm.sessions();
        let seen = st.deadlines.seen();
        st.deadlines.add_new(sessions.iter_after(seen).map(|(id, s)| (*id, s.ttl_ms)), now);
        if stalled {
            st.deadlines.restart_all(|id| sessions.get(id).map(|s| s.ttl_ms), now);
        }
        st.deadlines.due(now, |id| sessions.get(id).is_some())
    }

    /// Renews (`renew`) or only reports the given sessions (all when `ids` is empty and not
    /// renewing). Call only after confirming leadership with a quorum. Costs O(ids), so many
    /// keep-alives per second stay cheap however many sessions exist.
    pub fn touch(&self, ids: &[u64], renew: bool) -> Vec<SessionTime> {
        let now = Instant::now();
        let Ok(mut st) = self.state.lock() else { return Vec::new() };
        let leading = self.check_term(&mut st);
        let Ok(sm) = self.router.shared().sm.read() else { return Vec::new() };
        let sessions = sm.sessions();
        let ids: Vec<u64> =
            if ids.is_empty() && !renew { sessions.iter().map(|(id, _)| *id).collect() } else { ids.to_vec() };
        ids.into_iter()
            .map(|id| {
                let Some(s) = sessions.get(id) else {
                    return SessionTime { session_id: id, alive: false, ttl_ms: 0, remaining_ms: 0 };
                };
                let ttl = Duration::from_millis(s.ttl_ms);
                if !leading {
                    // Only the leader tracks deadlines: report the full TTL.
                    return SessionTime { session_id: id, alive: true, ttl_ms: s.ttl_ms, remaining_ms: s.ttl_ms };
                }
                let d = st.deadlines.entry(id, ttl, now);
                if d.expiring {
                    return SessionTime { session_id: id, alive: false, ttl_ms: s.ttl_ms, remaining_ms: 0 };
                }
                if renew {
                    d.at = now + ttl;
                }
                let remaining = d.at.saturating_duration_since(now).as_millis() as u64;
                SessionTime { session_id: id, alive: true, ttl_ms: s.ttl_ms, remaining_ms: remaining }
            })
            .collect()
    }

    /// Runs the expiry loop every `tick` until the process ends.
    pub fn spawn_expiry_loop(self: &Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let lease = Duration::from_millis(this.router.raft().config().election_timeout_max);
            let mut stall = StallClock::new(StallRule::new(tick, lease));
            let mut metrics = this.router.raft().metrics();
            loop {
                interval.tick().await;
                let now = Instant::now();
                let stalled = stall.tick(now, quorum_ack(&mut metrics)).is_some();
                for id in this.sync(now, stalled) {
                    let router = this.router.clone();
                    let tracker = this.clone();
                    tokio::spawn(async move {
                        let proposal =
                            Proposal { request_id: None, command: Command::SessionExpire { session_id: id } };
                        match router.propose_local(proposal, 16).await {
                            Ok(_) => {
                                tracing::info!(session_id = id, "session expired");
                                crate::ops::metrics::session_expired();
                            }
                            Err(e) => {
                                tracing::warn!(session_id = id, "expiry not committed: {e}");
                                tracker.unmark(id);
                            }
                        }
                    });
                }
            }
        })
    }

    fn unmark(&self, id: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.deadlines.unmark(id);
        }
    }
}

/// Quorum contact as openraft's metrics report it, `None` when this node does not lead.
fn quorum_ack(metrics: &mut watch::Receiver<RaftMetrics<u64, PeerNode>>) -> Option<QuorumAck> {
    let new_report = metrics.has_changed().unwrap_or(false);
    let m = metrics.borrow_and_update();
    (m.state == ServerState::Leader).then_some(QuorumAck { millis_since: m.millis_since_quorum_ack, new_report })
}
