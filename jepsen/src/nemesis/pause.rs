//! Process pauses: SIGSTOP, then SIGCONT on heal (a GC pause or a frozen VM, as seen by peers).
//!
//! Besides one node, the leader or a minority, a schedule's pauses stall a majority that
//! includes the leader and then every node, for [`STALL_HOLD`] (1.5 x the session workload's
//! TTL) each: a leader that comes back from such a stall still leading must not expire the
//! sessions whose keep-alives waited for it (issue 17). The first two pauses of every schedule
//! are these two, so every run with the pause nemesis has them.

use std::time::Duration;

use conclave_testkit::Cluster;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::Target;
use crate::workload::session::TTL;

/// How long a majority or all-node stall lasts: longer than any session deadline.
pub const STALL_HOLD: Duration = Duration::from_millis(TTL.as_millis() as u64 * 3 / 2);

/// Between resuming one paused node and the next: longer than the server's 50 ms expiry tick,
/// well under a session TTL.
pub const RESUME_GAP: Duration = Duration::from_millis(500);

/// The stalls every schedule starts its pauses with, in order.
const FIRST: [Target; 2] = [Target::MajorityWithLeader, Target::All];

/// Who the `nth` pause of a schedule (from 0) hits, and its hold when it is a stall (`None`:
/// the schedule's usual jittered hold).
pub fn plan(nth: usize, rng: &mut ChaCha8Rng) -> (Target, Option<Duration>) {
    let target = FIRST.get(nth).copied().unwrap_or_else(|| {
        *[Target::One, Target::Leader, Target::Minority, Target::MajorityWithLeader, Target::All]
            .choose(rng)
            .unwrap_or(&Target::One)
    });
    let hold = matches!(target, Target::MajorityWithLeader | Target::All).then_some(STALL_HOLD);
    (target, hold)
}

/// A majority of `shuffled` (every node id, in random order) that includes `leader`, leader
/// first; a random majority when no leader is known.
pub fn majority_with(leader: Option<u64>, shuffled: &[u64]) -> Vec<u64> {
    let size = shuffled.len() / 2 + 1;
    let mut out: Vec<u64> = leader.filter(|l| shuffled.contains(l)).into_iter().collect();
    out.extend(shuffled.iter().copied().filter(|id| Some(*id) != leader).take(size - out.len()));
    out
}

/// Pauses the nodes.
///
/// # Errors
/// When a node is not running.
pub fn pause(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for &id in nodes {
        cluster.pause(id)?;
    }
    Ok(())
}

/// Resumes the nodes one by one, in the order paused (the leader first), [`RESUME_GAP`] apart,
/// as stalls of several machines seldom end together: the leader then runs its expiry tick,
/// and with a follower forms a quorum, before the last node is back. A node that died
/// meanwhile is left for the kill nemesis to restart.
///
/// # Errors
/// Never for now; kept fallible like the other fault actions.
pub async fn resume(cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
    for (i, &id) in nodes.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(RESUME_GAP).await;
        }
        let _ = cluster.resume(id);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_schedule_starts_with_a_majority_stall_then_an_all_node_stall() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(plan(0, &mut rng), (Target::MajorityWithLeader, Some(STALL_HOLD)));
        assert_eq!(plan(1, &mut rng), (Target::All, Some(STALL_HOLD)));
        assert_eq!(STALL_HOLD, Duration::from_secs(3));
        for nth in 2..50 {
            let (target, hold) = plan(nth, &mut rng);
            assert_eq!(hold.is_some(), matches!(target, Target::MajorityWithLeader | Target::All));
        }
    }

    #[test]
    fn a_majority_includes_the_leader_first() {
        assert_eq!(majority_with(Some(2), &[3, 1, 2]), vec![2, 3]);
        assert_eq!(majority_with(Some(5), &[4, 1, 5, 2, 3]), vec![5, 4, 1]);
        assert_eq!(majority_with(None, &[3, 1, 2]), vec![3, 1]);
        assert_eq!(majority_with(Some(9), &[3, 1, 2]), vec![3, 1], "an unknown leader is ignored");
    }
}
