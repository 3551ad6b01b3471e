//! When the leader could not serve (a stall): the rule the expiry loop applies before it expires
//! anything, and the clock that feeds it from the loop's ticks and openraft's metrics.
//!
//! A leader that was paused (GC-like stall, host freeze, a blocked `fdatasync` on its runtime)
//! or had no quorum could not accept keep-alives meanwhile: those are still waiting in its
//! sockets or being retried by their clients. Its deadlines then say nothing about the clients,
//! so they restart at the full TTL, as they do on a new term.

use std::time::Duration;

use tokio::time::Instant;

/// Why the leader could not serve its sessions lately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The expiry tick ran this long after the previous one (the process or its runtime stood
    /// still).
    LateTick(Duration),
    /// No quorum acknowledged this leader for this long; `None`: not yet in this term.
    NoQuorumAck(Option<Duration>),
}

/// The pure rule: the leader could not serve when its expiry tick came more than `limit` after
/// the previous one, or no quorum acknowledged it within `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StallRule {
    limit: Duration,
}

impl StallRule {
    /// A rule for an expiry loop ticking every `tick`, with openraft's leader lease `lease` (the
    /// maximum election timeout: after that long without the leader, followers may elect
    /// another one, which would restart every deadline too). The limit is the lease, and at
    /// least two ticks so that an ordinary late tick is not a stall.
    pub(crate) fn new(tick: Duration, lease: Duration) -> Self {
        Self { limit: lease.max(tick * 2) }
    }

    /// The longest the leader may go without ticking or without a quorum ack.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the leader could not serve: `tick_gap` is the time since the previous expiry
    /// tick (`None` on the first), `quorum_ack_age` the time since a quorum last acknowledged
    /// this leader (`None` when none has in this term).
    pub(crate) fn check(&self, tick_gap: Option<Duration>, quorum_ack_age: Option<Duration>) -> Option<Stall> {
        if let Some(gap) = tick_gap.filter(|g| *g > self.limit) {
            return Some(Stall::LateTick(gap));
        }
        match quorum_ack_age {
            Some(age) if age <= self.limit => None,
            age => Some(Stall::NoQuorumAck(age)),
        }
    }
}

/// What the leader's metrics say about quorum contact at one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuorumAck {
    /// openraft's `millis_since_quorum_ack`, as of the metrics' last report.
    pub millis_since: Option<u64>,
    /// Whether the metrics were reported again since the previous tick. openraft reports them
    /// on every turn of its core loop (at least every 1.5 heartbeats); a report that stays old
    /// means the core is stuck, and the ack ages meanwhile.
    pub new_report: bool,
}

/// Feeds [`StallRule`] from the expiry loop: remembers the previous tick and when the metrics
/// were last reported. Call [`StallClock::tick`] on every expiry tick, leader or not.
#[derive(Debug)]
pub(crate) struct StallClock {
    rule: StallRule,
    last_tick: Option<Instant>,
    last_report: Option<Instant>,
    stalled: bool,
}

impl StallClock {
    /// A clock applying `rule`.
    pub(crate) fn new(rule: StallRule) -> Self {
        Self { rule, last_tick: None, last_report: None, stalled: false }
    }

    /// Records a tick at `now`; returns the stall, if the leader could not serve. `ack` is
    /// `None` when this node does not lead (only the tick is recorded). Logs when a stall begins
    /// and ends, not on every tick of a long one.
    pub(crate) fn tick(&mut self, now: Instant, ack: Option<QuorumAck>) -> Option<Stall> {
        let gap = self.last_tick.map(|t| now.saturating_duration_since(t));
        self.last_tick = Some(now);
        if ack.is_none_or(|a| a.new_report) || self.last_report.is_none() {
            self.last_report = Some(now);
        }
        let stall = ack.and_then(|ack| {
            let unreported = self.last_report.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let age = ack.millis_since.map(|ms| Duration::from_millis(ms) + unreported);
            self.rule.check(gap, age)
        });
        let limit_ms = self.rule.limit().as_millis() as u64;
        match (stall, self.stalled) {
            // A new leader not yet acknowledged: an ordinary election, not worth a warning.
            (Some(s @ Stall::NoQuorumAck(None)), false) => {
                tracing::info!(stall = ?s, limit_ms, "leader not serving yet: session deadlines restart at the full TTL")
            }
            (Some(s), false) => {
                tracing::warn!(stall = ?s, limit_ms, "leader could not serve: session deadlines restart at the full TTL")
            }
            (None, true) => tracing::info!("leader serving again"),
            _ => {}
        }
        self.stalled = stall.is_some();
        stall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(50);
    const LEASE: Duration = Duration::from_millis(300);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fresh(ms: u64) -> Option<QuorumAck> {
        Some(QuorumAck { millis_since: Some(ms), new_report: true })
    }

    #[test]
    fn on_time_ticks_with_quorum_contact_are_no_stall() {
        let rule = StallRule::new(TICK, LEASE);
        assert_eq!(rule.check(None, Some(ms(0))), None);
        assert_eq!(rule.check(Some(ms(50)), Some(ms(40))), None);
        assert_eq!(rule.check(Some(LEASE), Some(LEASE)), None, "the limit itself is still serving");
    }

    #[test]
    fn a_late_tick_is_a_stall() {
        let rule = StallRule::new(TICK, LEASE);
        assert_eq!(rule.check(Some(ms(3_000)), Some(ms(10))), Some(Stall::LateTick(ms(3_000))));
        assert_eq!(rule.check(Some(ms(301)), Some(ms(10))), Some(Stall::LateTick(ms(301))));
    }

    #[test]
    fn no_quorum_contact_for_longer_than_the_lease_is_a_stall() {
        let rule = StallRule::new(TICK, LEASE);
        assert_eq!(rule.check(Some(ms(50)), Some(ms(301))), Some(Stall::NoQuorumAck(Some(ms(301)))));
        assert_eq!(rule.check(Some(ms(50)), None), Some(Stall::NoQuorumAck(None)), "no ack yet in this term");
    }

    #[test]
    fn the_limit_is_at_least_two_ticks() {
        assert_eq!(StallRule::new(ms(500), LEASE).limit(), ms(1_000));
        assert_eq!(StallRule::new(TICK, LEASE).limit(), LEASE);
    }

    #[test]
    fn the_clock_measures_the_gap_between_ticks() {
        let mut clock = StallClock::new(StallRule::new(TICK, LEASE));
        let t0 = Instant::now();
        assert_eq!(clock.tick(t0, fresh(5)), None, "the first tick has no gap");
        assert_eq!(clock.tick(t0 + ms(50), fresh(5)), None);
        assert_eq!(clock.tick(t0 + ms(3_050), fresh(5)), Some(Stall::LateTick(ms(3_000))));
        assert_eq!(clock.tick(t0 + ms(3_100), fresh(5)), None, "serving again on the next tick");
    }

    #[test]
    fn a_node_that_does_not_lead_never_stalls_but_keeps_time() {
        let mut clock = StallClock::new(StallRule::new(TICK, LEASE));
        let t0 = Instant::now();
        assert_eq!(clock.tick(t0, None), None);
        assert_eq!(clock.tick(t0 + ms(3_000), None), None, "a follower's late tick does not matter");
        assert_eq!(clock.tick(t0 + ms(3_050), fresh(5)), None, "the gap counts from the follower's last tick");
    }

    #[test]
    fn metrics_that_stop_being_reported_age_the_quorum_ack() {
        let mut clock = StallClock::new(StallRule::new(TICK, LEASE));
        let t0 = Instant::now();
        assert_eq!(clock.tick(t0, fresh(20)), None);
        let stale = Some(QuorumAck { millis_since: Some(20), new_report: false });
        let mut t = t0;
        for _ in 0..5 {
            t += ms(50);
            assert_eq!(clock.tick(t, stale), None, "{:?} since the report", t - t0);
        }
        t += ms(50);
        assert_eq!(clock.tick(t, stale), Some(Stall::NoQuorumAck(Some(ms(320)))), "the core stopped reporting");
        t += ms(50);
        assert_eq!(clock.tick(t, fresh(20)), None, "a new report with a recent ack");
    }
}
