//! The one readiness rule, shared by `grpc.health.v1` and `/readyz`.
//!
//! A member is **ready** (SERVING) when
//! 1. it knows a leader and has heard from it within the leader lease (2 × the election
//!    timeout; a leader counts itself), and
//! 2. that leader confirms its commit index with a quorum (a read index, the same round a
//!    linearizable read makes; an isolated leader, which openraft 0.9 lets keep its role,
//!    fails here) within [`LEADER_CHECK_TIMEOUT`], and
//! 3. this member's applied index is at most [`MAX_APPLY_LAG`] entries behind that commit index.
//!
//! Otherwise it is NOT_SERVING with a reason. [`assess`] is the rule as a pure function;
//! [`spawn`] evaluates it every [`CHECK_INTERVAL`] from the node facade and publishes the result
//! (so probes never trigger quorum rounds themselves). Bound: a member cut off from its leader
//! flips within the lease + one check interval (+ the check timeout for a leader that lost its
//! quorum): ~0.6-2 s with the default 150 ms election timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::node::Node;
use crate::raft::leader_presence::LeaderContact;

/// How far (log entries) a ready member's applied index may trail the leader's commit index.
pub const MAX_APPLY_LAG: u64 = 1_000;
/// How often the rule is evaluated.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How long the leader may take to confirm its commit index before the member counts as not
/// ready.
pub const LEADER_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The `grpc.health.v1` service names that follow the rule: "" (the whole server, what a
/// Kubernetes `grpc:` probe asks by default) and the KV service.
pub const HEALTH_SERVICES: [&str; 2] = ["", "conclave.v1.KV"];

/// What the rule looks at.
#[derive(Clone, Debug)]
pub struct ReadinessInputs {
    /// Who this member believes leads, and when it last heard from it.
    pub contact: LeaderContact,
    /// The leader lease: how recently a follower must have heard from its leader.
    pub lease: Duration,
    /// The commit index the leader confirmed with a quorum (`Err`: why it did not).
    pub leader_commit: Result<u64, String>,
    /// This member's applied index, read after the leader answered.
    pub applied_index: u64,
}

/// The rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Serving.
    Ready,
    /// Not serving, and why (for `/readyz` and the log).
    NotReady(String),
}

impl Readiness {
    /// Whether it is [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        *self == Readiness::Ready
    }
}

/// Whether the contact alone rules readiness out (then the leader is not asked).
pub fn precheck(contact: &LeaderContact, lease: Duration) -> Option<Readiness> {
    if contact.has_live_leader(lease) {
        return None;
    }
    let Some(leader) = contact.leader_id else {
        return Some(Readiness::NotReady("no leader known".into()));
    };
    match contact.silent_for {
        Some(silent) => Some(Readiness::NotReady(format!(
            "leader {leader} not heard from for {} ms (lease {} ms)",
            silent.as_millis(),
            lease.as_millis()
        ))),
        None => Some(Readiness::NotReady(format!("leader {leader} never heard from"))),
    }
}

/// The readiness rule (see the module documentation).
pub fn assess(inputs: &ReadinessInputs) -> Readiness {
    if let Some(verdict) = precheck(&inputs.contact, inputs.lease) {
        return verdict;
    }
    let commit = match &inputs.leader_commit {
        Ok(c) => *c,
        Err(e) => return Readiness::NotReady(format!("the leader did not confirm its commit index: {e}")),
    };
    let behind = commit.saturating_sub(inputs.applied_index);
    if behind > MAX_APPLY_LAG {
        return Readiness::NotReady(format!(
            "applied index {} is {behind} entries behind the leader's commit index {commit} (bound {MAX_APPLY_LAG})",
            inputs.applied_index
        ));
    }
    Readiness::Ready
}

/// Evaluates the rule once from the node.
pub async fn evaluate(node: &Node, lease: Duration) -> Readiness {
    let contact = node.leader_contact().await;
    if let Some(verdict) = precheck(&contact, lease) {
        return verdict;
    }
    let leader_commit = match tokio::time::timeout(LEADER_CHECK_TIMEOUT, node.leader_commit_index()).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", LEADER_CHECK_TIMEOUT.as_millis())),
    };
    let applied_index = node.status().applied_index;
    assess(&ReadinessInputs { contact, lease, leader_commit, applied_index })
}

/// Starts evaluating the rule every [`CHECK_INTERVAL`]; the receiver holds the latest verdict
/// (NOT_SERVING until the first evaluation), and `reporter` gets every change for
/// [`HEALTH_SERVICES`]. The task ends when every receiver is gone.
pub fn spawn(node: Arc<Node>, lease: Duration, reporter: HealthReporter) -> watch::Receiver<Readiness> {
    let (tx, rx) = watch::channel(Readiness::NotReady("starting".into()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut serving: Option<bool> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tx.closed() => return,
            }
            let verdict = evaluate(&node, lease).await;
            let ready = verdict.is_ready();
            if serving != Some(ready) {
                match &verdict {
                    Readiness::Ready => tracing::info!("ready: serving"),
                    Readiness::NotReady(why) => tracing::warn!("not ready: {why}"),
                }
                let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                for service in HEALTH_SERVICES {
                    reporter.set_service_status(service, status).await;
                }
                serving = Some(ready);
            }
            tx.send_replace(verdict);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(300);

    fn follower(silent_ms: Option<u64>) -> LeaderContact {
        LeaderContact {
            leader_id: Some(2),
            state: openraft::ServerState::Follower,
            silent_for: silent_ms.map(Duration::from_millis),
            committed_index: 0,
        }
    }

    fn inputs(contact: LeaderContact, leader_commit: Result<u64, String>, applied_index: u64) -> ReadinessInputs {
        ReadinessInputs { contact, lease: LEASE, leader_commit, applied_index }
    }

    #[test]
    fn ready_only_with_a_heard_leader_that_confirms_and_little_apply_lag() {
        assert!(assess(&inputs(follower(Some(10)), Ok(5_000), 4_500)).is_ready());
        assert!(assess(&inputs(follower(Some(300)), Ok(5_000), 4_000)).is_ready(), "the bounds are inclusive");
        let leader = LeaderContact {
            leader_id: Some(1),
            state: openraft::ServerState::Leader,
            silent_for: None,
            committed_index: 9,
        };
        assert!(assess(&inputs(leader, Ok(9), 9)).is_ready(), "a leader counts itself as heard");
    }

    #[test]
    fn each_condition_makes_it_not_ready_and_says_why() {
        let no_leader = LeaderContact { leader_id: None, ..follower(Some(1)) };
        let cases = [
            (inputs(no_leader, Ok(1), 1), "no leader"),
            (inputs(follower(Some(301)), Ok(1), 1), "not heard from for 301 ms"),
            (inputs(follower(None), Ok(1), 1), "never heard"),
            (inputs(follower(Some(1)), Err("timeout".into()), 1), "did not confirm its commit index: timeout"),
            (inputs(follower(Some(1)), Ok(5_001), 4_000), "1001 entries behind"),
        ];
        for (i, why) in cases {
            match assess(&i) {
                Readiness::NotReady(reason) => assert!(reason.contains(why), "{reason:?} should say {why:?}"),
                Readiness::Ready => panic!("{i:?} must not be ready"),
            }
        }
    }

    #[test]
    fn precheck_skips_the_leader_round_only_when_it_cannot_matter() {
        assert!(precheck(&follower(Some(1)), LEASE).is_none());
        assert!(precheck(&follower(Some(400)), LEASE).is_some());
    }
}
