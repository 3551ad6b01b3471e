//! The nemesis executor: applies each planned fault to the cluster, holds it, heals it, and
//! records both as nemesis events in the history.

use std::sync::Arc;

use conclave_testkit::Cluster;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::{clock, kill, leader_of, membership, partition, pause, power, Fault, Planned, SharedCluster, Target};
use crate::history::{Event, EventType, Recorder, NEMESIS};

/// Applies and heals faults on a cluster, recording each as nemesis events.
pub struct Nemesis {
    cluster: SharedCluster,
    recorder: Arc<Recorder>,
    net: partition::Net,
    clock: Option<clock::Clocks>,
    disks: Option<Arc<power::Disks>>,
    /// Descriptions of every fault applied.
    pub applied: Vec<String>,
    /// Nodes found dead that no nemesis killed (crashed by themselves).
    pub unexpected_exits: Vec<u64>,
    /// Nodes the nemesis killed and has not restarted yet.
    down: std::collections::BTreeSet<u64>,
}

/// What an applied fault needs undone.
#[derive(Default)]
struct Undo {
    killed: Vec<u64>,
    /// Removed members to add back (before they restart).
    removed: Vec<u64>,
    paused: Vec<u64>,
    partitioned: bool,
    skewed: bool,
}

impl Nemesis {
    /// Prepares the fault machinery (the iptables chain; clock files and faultfs disks if given).
    ///
    /// # Errors
    /// When iptables cannot be set up.
    pub fn new(
        cluster: SharedCluster,
        recorder: Arc<Recorder>,
        clock: Option<clock::Clocks>,
        disks: Option<Arc<power::Disks>>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            cluster,
            recorder,
            net: partition::Net::setup()?,
            clock,
            disks,
            applied: Vec::new(),
            unexpected_exits: Vec::new(),
            down: Default::default(),
        })
    }

    fn record(&self, f: &str, value: Value) {
        self.recorder.record(Event::new(EventType::Info, NEMESIS, f, None, value));
    }

    /// Runs the whole schedule, then heals everything. Stops early (healing) when `stop` fires.
    ///
    /// # Errors
    /// When a fault cannot be applied or healed (a harness error).
    pub async fn run(
        &mut self,
        plan: &[Planned],
        start: tokio::time::Instant,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        for p in plan {
            tokio::select! {
                _ = tokio::time::sleep_until(start + p.at) => {}
                _ = stop.changed() => break,
            }
            let undo = self.apply(p).await?;
            tokio::select! {
                _ = tokio::time::sleep(p.hold) => {}
                _ = stop.changed() => {}
            }
            self.heal(undo).await?;
            if *stop.borrow() {
                break;
            }
        }
        Ok(())
    }

    async fn apply(&mut self, p: &Planned) -> anyhow::Result<Undo> {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut cluster = self.cluster.lock().await;
        let ids: Vec<u64> = cluster.nodes().iter().map(|n| n.id).collect();
        let mut undo = Undo::default();
        let (description, detail) = match &p.fault {
            Fault::Partition(shape) => {
                let leader = if *shape == partition::Shape::IsolateLeader { leader_of(&cluster).await } else { None };
                let grudge = partition::grudge(*shape, &ids, leader, &mut rng);
                self.net.cut(&cluster, &grudge.cuts)?;
                undo.partitioned = true;
                (format!("partition {}", grudge.description), json!({"cuts": grudge.cuts}))
            }
            Fault::Kill(target) | Fault::Power(target) => {
                let nodes = pick(*target, &ids, &cluster, &mut rng).await;
                let what = match (&p.fault, &self.disks) {
                    (Fault::Power(_), Some(disks)) => {
                        disks.cut(&mut cluster, &nodes)?;
                        "power cut"
                    }
                    (Fault::Power(_), None) => anyhow::bail!("power nemesis without faultfs data dirs"),
                    _ => {
                        kill::kill(&mut cluster, &nodes)?;
                        "kill -9"
                    }
                };
                self.down.extend(nodes.iter().copied());
                undo.killed = nodes.clone();
                (format!("{what} {}", describe_nodes(*target, &nodes)), json!({"nodes": nodes}))
            }
            Fault::Replace(target) => {
                if membership::safe_to_replace(&mut cluster).await {
                    let nodes = pick(*target, &ids, &cluster, &mut rng).await;
                    for id in &nodes {
                        membership::replace(&mut cluster, *id)?;
                    }
                    self.down.extend(nodes.iter().copied());
                    undo.killed = nodes.clone();
                    (
                        format!("replace {} with a fresh data dir", describe_nodes(*target, &nodes)),
                        json!({"nodes": nodes}),
                    )
                } else {
                    ("replace skipped (a member is down or still rejoining)".to_owned(), json!({"nodes": []}))
                }
            }
            Fault::Remove(target) => {
                if membership::safe_to_replace(&mut cluster).await {
                    let nodes = pick(*target, &ids, &cluster, &mut rng).await;
                    let mut removed = Vec::new();
                    let mut refused = Vec::new();
                    for id in &nodes {
                        match membership::remove(&mut cluster, *id).await? {
                            Ok(()) => removed.push(*id),
                            Err(why) => refused.push(format!("n{id}: {why}")),
                        }
                    }
                    self.down.extend(removed.iter().copied());
                    undo.removed = removed.clone();
                    let mut text =
                        format!("remove {} (member remove; added back on heal)", describe_nodes(*target, &removed));
                    if !refused.is_empty() {
                        text.push_str(&format!("; refused: {}", refused.join("; ")));
                    }
                    (text, json!({"nodes": removed, "refused": refused}))
                } else {
                    ("remove skipped (a member is down or still rejoining)".to_owned(), json!({"nodes": []}))
                }
            }
            Fault::Pause(target) => {
                let nodes = pick(*target, &ids, &cluster, &mut rng).await;
                pause::pause(&mut cluster, &nodes)?;
                undo.paused = nodes.clone();
                (format!("pause {}", describe_nodes(*target, &nodes)), json!({"nodes": nodes}))
            }
            Fault::Clock => match &self.clock {
                Some(clocks) => {
                    let offsets = clocks.bump_random(&ids, &mut rng)?;
                    undo.skewed = true;
                    let text: Vec<String> = offsets.iter().map(|(n, s)| format!("n{n} {s:+}s")).collect();
                    (format!("clock skew {}", text.join(" ")), json!({"offsets_s": offsets}))
                }
                None => anyhow::bail!("clock nemesis without faketime-wrapped nodes"),
            },
        };
        drop(cluster);
        self.record("start", json!({"description": description, "detail": detail}));
        self.applied.push(description);
        Ok(undo)
    }

    async fn heal(&mut self, undo: Undo) -> anyhow::Result<()> {
        let mut cluster = self.cluster.lock().await;
        if undo.partitioned {
            self.net.heal()?;
        }
        pause::resume(&mut cluster, &undo.paused).await?;
        kill::restart(&mut cluster, &undo.killed)?;
        for id in &undo.killed {
            self.down.remove(id);
        }
        let mut added = Vec::new();
        for id in &undo.removed {
            added.push(membership::add_back(&mut cluster, *id).await?);
            self.down.remove(id);
        }
        if undo.skewed {
            if let Some(c) = &self.clock {
                c.reset()?;
            }
        }
        drop(cluster);
        self.record("heal", if added.is_empty() { json!({}) } else { json!({"description": added.join("; ")}) });
        Ok(())
    }

    /// Heals every possible fault (used before the final phase and on errors).
    ///
    /// # Errors
    /// When iptables or a restart fails.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        let mut cluster = self.cluster.lock().await;
        self.net.heal()?;
        if let Some(c) = &self.clock {
            c.reset()?;
        }
        let ids: Vec<u64> = cluster.nodes().iter().map(|n| n.id).collect();
        for id in ids {
            let _ = cluster.resume(id);
            if !cluster.node_is_running(id) {
                if !self.down.contains(&id) && !self.unexpected_exits.contains(&id) {
                    self.unexpected_exits.push(id);
                }
                cluster.restart(id)?;
            }
        }
        self.down.clear();
        drop(cluster);
        self.record("heal", json!({"description": "heal all"}));
        Ok(())
    }
}

fn describe_nodes(target: Target, nodes: &[u64]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
    let what = match target {
        Target::One => "one",
        Target::Leader => "leader",
        Target::Minority => "minority",
        Target::MajorityWithLeader => "majority-with-leader",
        Target::All => "all",
    };
    format!("{what} {}", names.join(","))
}

/// The nodes a target names (the leader as the running nodes report it; a random node if none).
async fn pick(target: Target, ids: &[u64], cluster: &Cluster, rng: &mut ChaCha8Rng) -> Vec<u64> {
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(rng);
    match target {
        Target::One => shuffled[..1].to_vec(),
        Target::Minority => shuffled[..(ids.len() - 1) / 2].to_vec(),
        Target::All => ids.to_vec(),
        Target::MajorityWithLeader => pause::majority_with(leader_of(cluster).await, &shuffled),
        Target::Leader => match leader_of(cluster).await {
            Some(l) => vec![l],
            None => shuffled[..1].to_vec(),
        },
    }
}
