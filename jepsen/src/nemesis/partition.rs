//! Network partitions: iptables DROP rules between node addresses, in a dedicated chain of the
//! run's private network namespace (flushed to heal; gone with the namespace). Clients connect
//! from 127.0.0.1, which no rule matches: only node-to-node traffic is cut.

use std::net::IpAddr;
use std::process::Command;

use conclave_testkit::Cluster;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The chain holding the partition rules.
const CHAIN: &str = "CONCLAVE_JEPSEN";

/// Partition shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One random node cut off from all others.
    IsolateOne,
    /// The leader cut off from all others.
    IsolateLeader,
    /// Two random halves (the smaller one a minority).
    Halves,
    /// Every node sees a majority, but no two the same one (3 nodes: one link cut, a "bridge").
    MajoritiesRing,
}

/// Which pairs of nodes cannot talk.
#[derive(Clone, Debug, PartialEq)]
pub struct Grudge {
    /// Unordered pairs of node ids whose traffic is dropped both ways.
    pub cuts: Vec<(u64, u64)>,
    /// For humans.
    pub description: String,
}

fn cut_between(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter().flat_map(|x| b.iter().map(move |y| ((*x).min(*y), (*x).max(*y)))).collect()
}

fn names(ids: &[u64]) -> String {
    ids.iter().map(|n| format!("n{n}")).collect::<Vec<_>>().join(",")
}

/// Computes the pairs to cut for a shape.
pub fn grudge(shape: Shape, ids: &[u64], leader: Option<u64>, rng: &mut ChaCha8Rng) -> Grudge {
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(rng);
    let isolate = |node: u64, what: &str| {
        let rest: Vec<u64> = ids.iter().copied().filter(|n| *n != node).collect();
        Grudge { cuts: cut_between(&[node], &rest), description: format!("{what} n{node} | {}", names(&rest)) }
    };
    match shape {
        Shape::IsolateOne => isolate(shuffled[0], "isolate-one"),
        Shape::IsolateLeader => match leader {
            Some(l) => isolate(l, "isolate-leader"),
            None => isolate(shuffled[0], "isolate-leader (none known: random)"),
        },
        Shape::Halves => {
            let (a, b) = shuffled.split_at(ids.len() / 2);
            Grudge { cuts: cut_between(a, b), description: format!("halves {} | {}", names(a), names(b)) }
        }
        Shape::MajoritiesRing if ids.len() <= 3 => {
            let (a, b) = (shuffled[0].min(shuffled[1]), shuffled[0].max(shuffled[1]));
            Grudge { cuts: vec![(a, b)], description: format!("bridge n{a} x n{b}") }
        }
        Shape::MajoritiesRing => {
            let n = shuffled.len();
            // Each node keeps its ring neighbours within distance d: 2d + 1 >= a majority.
            let d = (n / 2).div_ceil(2);
            let mut cuts = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    let dist = (j - i).min(n - (j - i));
                    if dist > d {
                        cuts.push((shuffled[i].min(shuffled[j]), shuffled[i].max(shuffled[j])));
                    }
                }
            }
            let _ = rng.random::<u8>();
            Grudge { cuts, description: format!("majorities-ring {}", names(&shuffled)) }
        }
    }
}

/// The iptables chain of this namespace.
pub struct Net {
    _private: (),
}

fn iptables(args: &[&str]) -> anyhow::Result<bool> {
    let out = Command::new("iptables").arg("-w").args(args).output()?;
    Ok(out.status.success())
}

impl Net {
    /// Creates (or empties) the chain and hooks it into INPUT.
    ///
    /// # Errors
    /// When iptables is missing or fails, or when not inside a private network namespace.
    pub fn setup() -> anyhow::Result<Self> {
        crate::netns::ensure_private()?;
        if !iptables(&["-N", CHAIN])? && !iptables(&["-F", CHAIN])? {
            anyhow::bail!("cannot create the iptables chain {CHAIN} (is iptables installed?)");
        }
        if !iptables(&["-C", "INPUT", "-j", CHAIN])? && !iptables(&["-I", "INPUT", "-j", CHAIN])? {
            anyhow::bail!("cannot hook {CHAIN} into INPUT");
        }
        Ok(Self { _private: () })
    }

    /// Drops all traffic between the nodes of each pair.
    ///
    /// # Errors
    /// When iptables fails.
    pub fn cut(&self, cluster: &Cluster, pairs: &[(u64, u64)]) -> anyhow::Result<()> {
        let ip = |id: u64| -> anyhow::Result<IpAddr> {
            cluster.node(id).ip().ok_or_else(|| anyhow::anyhow!("node {id} has no IP address"))
        };
        for &(a, b) in pairs {
            let (a, b) = (ip(a)?.to_string(), ip(b)?.to_string());
            for (src, dst) in [(&a, &b), (&b, &a)] {
                if !iptables(&["-A", CHAIN, "-s", src, "-d", dst, "-j", "DROP"])? {
                    anyhow::bail!("iptables refused a rule {src} -> {dst}");
                }
            }
        }
        Ok(())
    }

    /// Removes every rule.
    ///
    /// # Errors
    /// When iptables fails.
    pub fn heal(&self) -> anyhow::Result<()> {
        if !iptables(&["-F", CHAIN])? {
            anyhow::bail!("cannot flush {CHAIN}");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ring_of_five_leaves_each_node_a_majority() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let g = grudge(Shape::MajoritiesRing, &[1, 2, 3, 4, 5], None, &mut rng);
        for n in 1..=5u64 {
            let cut = g.cuts.iter().filter(|(a, b)| *a == n || *b == n).count();
            assert_eq!(cut, 2, "node {n} sees itself and two others: {g:?}");
        }
        let halves = grudge(Shape::Halves, &[1, 2, 3], None, &mut rng);
        assert_eq!(halves.cuts.len(), 2);
    }
}
