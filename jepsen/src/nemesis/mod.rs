//! Nemeses: the faults a run injects, a seeded schedule of them, and the executor that applies
//! and heals them on the cluster (inside the run's private network namespace).

pub mod clock;
mod executor;
pub mod kill;
pub mod membership;
pub mod partition;
pub mod pause;
pub mod power;

pub use executor::Nemesis;

use std::sync::Arc;
use std::time::Duration;

use conclave_testkit::Cluster;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

/// The cluster, shared by the nemesis and the runner.
pub type SharedCluster = Arc<Mutex<Cluster>>;

/// A family of faults (`--nemesis` takes a list of these, or `all`, or `none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Network partitions with iptables.
    Partition,
    /// `kill -9` and restart.
    Kill,
    /// SIGSTOP / SIGCONT.
    Pause,
    /// Wall-clock skew with libfaketime.
    Clock,
    /// Power loss: `kill -9`, unsynced writes lost (faultfs data dirs), restart.
    Power,
    /// Membership: a node replaced by one with a fresh data dir (it must rejoin by itself), or
    /// removed from the cluster and added back (`member remove`, `member add`, promotion).
    Membership,
}

impl Kind {
    /// Every kind, in the order `all` lists them.
    pub const ALL: [Kind; 6] = [Kind::Partition, Kind::Kill, Kind::Pause, Kind::Clock, Kind::Power, Kind::Membership];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Clock => "clock",
            Kind::Power => "power",
            Kind::Membership => "membership",
        }
    }
}

/// Parses `--nemesis`: a comma-separated list of kinds, `all`, or `none`.
///
/// # Errors
/// On an unknown name.
pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "all" => out.extend(Kind::ALL),
            "none" => {}
            other => out.push(
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == other)
                    .ok_or_else(|| format!("unknown nemesis {other:?}"))?,
            ),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Which nodes a process fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One random node.
    One,
    /// The current leader.
    Leader,
    /// A random minority.
    Minority,
    /// A majority that includes the leader.
    MajorityWithLeader,
    /// Every node at once.
    All,
}

/// One fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Cut the network between nodes.
    Partition(partition::Shape),
    /// `kill -9` the targets (restarted on heal).
    Kill(Target),
    /// SIGSTOP the targets (SIGCONT on heal).
    Pause(Target),
    /// Move the wall clock of random nodes by the given seconds (reset on heal).
    Clock,
    /// `kill -9` the targets and cut their disks' power (restarted on heal).
    Power(Target),
    /// Replace the target (one node or the leader) with a fresh data dir (restarted on heal).
    Replace(Target),
    /// `member remove` the target (one node or the leader); added back as a learner and
    /// restarted on an empty data dir on heal (promoted by the server when caught up).
    Remove(Target),
}

/// A fault at a time, with the randomness for choosing its nodes drawn in advance.
#[derive(Clone, Debug)]
pub struct Planned {
    /// When to apply it (from the start of the workload).
    pub at: Duration,
    /// How long it lasts.
    pub hold: Duration,
    /// What it is.
    pub fault: Fault,
    /// Seed for its random choices.
    pub seed: u64,
}

/// Builds the fault schedule: quiet for `quiet`, then alternating healthy and faulty periods of
/// about `interval` each, the last fault healed before `time_limit`. Same seed, same schedule.
pub fn schedule(kinds: &[Kind], seed: u64, time_limit: Duration, quiet: Duration, interval: Duration) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e656d65736973);
    let mut plan = Vec::new();
    if kinds.is_empty() {
        return plan;
    }
    let jitter = |rng: &mut ChaCha8Rng| interval.mul_f64(rng.random_range(0.6..1.4));
    let mut t = quiet;
    let mut pauses = 0;
    loop {
        let mut hold = jitter(&mut rng);
        if t + hold + Duration::from_secs(1) > time_limit {
            break;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let fault = match kind {
            Kind::Partition => Fault::Partition(
                *[
                    partition::Shape::IsolateOne,
                    partition::Shape::IsolateLeader,
                    partition::Shape::Halves,
                    partition::Shape::MajoritiesRing,
                ]
                .choose(&mut rng)
                .unwrap_or(&partition::Shape::Halves),
            ),
            Kind::Kill => Fault::Kill(
                *[Target::One, Target::Leader, Target::Minority, Target::All].choose(&mut rng).unwrap_or(&Target::One),
            ),
            Kind::Pause => {
                let (target, stall_hold) = pause::plan(pauses, &mut rng);
                pauses += 1;
                hold = stall_hold.unwrap_or(hold);
                Fault::Pause(target)
            }
            Kind::Clock => Fault::Clock,
            Kind::Power => {
                Fault::Power(*[Target::One, Target::Minority, Target::All].choose(&mut rng).unwrap_or(&Target::One))
            }
            Kind::Membership => {
                let target = *[Target::One, Target::Leader].choose(&mut rng).unwrap_or(&Target::One);
                if rng.random_bool(0.5) {
                    Fault::Replace(target)
                } else {
                    Fault::Remove(target)
                }
            }
        };
        if t + hold + Duration::from_secs(1) > time_limit {
            break;
        }
        plan.push(Planned { at: t, hold, fault, seed: rng.random() });
        t += hold + jitter(&mut rng);
    }
    plan
}

/// The leader most running nodes agree on, if any (each asked with a short deadline).
pub async fn leader_of(cluster: &Cluster) -> Option<u64> {
    let mut votes: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for n in cluster.nodes().iter().filter(|n| n.pid().is_some() && !n.is_paused()) {
        let status = tokio::time::timeout(Duration::from_millis(700), cluster.status(n.id)).await;
        if let Ok(Ok(s)) = status {
            if s.leader_id != 0 {
                *votes.entry(s.leader_id).or_default() += 1;
            }
        }
    }
    votes.into_iter().max_by_key(|(_, v)| *v).map(|(l, _)| l)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!(parse_list("all").unwrap(), Kind::ALL.to_vec());
        assert_eq!(parse_list("kill,partition,kill").unwrap(), vec![Kind::Partition, Kind::Kill]);
        assert_eq!(parse_list("none").unwrap(), vec![]);
        assert_eq!(parse_list("membership,kill").unwrap(), vec![Kind::Kill, Kind::Membership]);
        assert!(parse_list("bogus").is_err());
    }

    #[test]
    fn same_seed_same_schedule() {
        let limit = Duration::from_secs(60);
        let s = |seed| {
            schedule(&Kind::ALL, seed, limit, Duration::from_secs(5), Duration::from_secs(5))
                .into_iter()
                .map(|p| (p.at, p.hold, p.fault, p.seed))
                .collect::<Vec<_>>()
        };
        assert_eq!(s(7), s(7));
        assert_ne!(s(7), s(8));
        let plan = s(7);
        assert!(plan.len() >= 3, "{plan:?}");
        assert!(plan.iter().all(|(at, hold, _, _)| *at + *hold + Duration::from_secs(1) <= limit));
    }

    /// test-all runs the pause nemesis on its own with its defaults (60 s, faults every ~5 s):
    /// every such run stalls a majority with the leader and then every node, 1.5 x TTL each.
    #[test]
    fn a_pause_run_stalls_a_majority_with_the_leader_and_every_node() {
        for seed in 1..20 {
            let plan =
                schedule(&[Kind::Pause], seed, Duration::from_secs(60), Duration::from_secs(5), Duration::from_secs(5));
            let stalls: Vec<_> = plan.iter().filter(|p| p.hold == pause::STALL_HOLD).map(|p| p.fault.clone()).collect();
            assert_eq!(
                stalls[..2],
                [Fault::Pause(Target::MajorityWithLeader), Fault::Pause(Target::All)],
                "seed {seed}"
            );
        }
    }
}
