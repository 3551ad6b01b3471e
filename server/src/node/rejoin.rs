//! Start-up of a node without Raft state, and the rejoin of a member that lost its data.
//!
//! A data dir without Raft state is either a founding member of a new cluster or a member whose
//! disk was lost or replaced (a StatefulSet pod with a new volume runs the same command line).
//! The second must never vote with its empty log: Raft's safety assumes a voter never forgets
//! what it acknowledged, and a forgetful voter can elect a leader that lacks committed entries.
//!
//! [`decide`] tells them apart by asking the members of `--initial-cluster` what they know of
//! this node ([`MemberStateReply`]):
//! - a member has seen this node take part: its registration (every node registers its client
//!   address through the log right after it starts) is in that member's applied state. This node
//!   had Raft state and lost it, so it **rejoins**;
//! - a majority (this node included) answered and none has seen it take part: it is a founding
//!   member (maybe a late one: a member that never acknowledged anything may vote like any new
//!   Raft node), so it bootstraps with the same initial membership as the others;
//! - otherwise it waits and asks again (it never bootstraps alone).
//!
//! Why registration and not "the leader has seen it acknowledge entries": a late founding member
//! receives and acknowledges the leader's entries while it is still asking (its peer port is
//! up), so acknowledgements cannot tell a new member from a returning one; a registration is
//! only ever proposed by a node that has decided. Limit: a member that acknowledged entries and
//! lost its disk before its own registration committed (within about a second of its first
//! start) is not recognized; it is treated as a late founding member.
//!
//! Rejoining: a marker file ([`MARKER`]) is written (fsynced) before anything else and kept until
//! the flow ends, so a crash mid-way resumes it. While it exists the node's [`VotingGate`] is
//! closed: it refuses vote requests and never campaigns. It asks the leader, through any member,
//! to re-add it ([`RejoinRequest`]); the leader demotes it to a learner (openraft
//! `change_membership(RemoveVoters, retain)`), replicates to it, and promotes it back to a voter
//! once it holds 90% of the leader's log (`Node::readmit`, the rule `member promote` uses).
//! The node ends the flow when it sees itself a voter again after having been a learner: at that
//! point its log holds the promotion entry and so, by Raft's log matching, every entry committed
//! before it.
//!
//! Cost: while it is a learner the cluster has one voter less (a 3-member cluster then needs both
//! remaining voters). Acknowledged writes are never lost: this is the point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use conclave_tls::ClientTls;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::error::{Error, Result, UnavailableReason};

use crate::raft::network::{Call, PeerNetwork};
use crate::raft::voting_gate::VotingGate;
use crate::raft::NodeId;

/// The marker file in the data dir while a rejoin is under way.
pub const MARKER: &str = "rejoin.pending";
/// How often start-up asks again, and the rejoin flow checks its progress.
const RETRY: Duration = Duration::from_millis(300);

/// What start-up does with a data dir that has no Raft state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Bootstrap a new cluster with the initial membership.
    Bootstrap,
    /// Rejoin a running cluster as a learner first.
    Rejoin,
}

/// A member that lost its data asks the leader to re-add it (peer protocol).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RejoinRequest {
    /// The asking node.
    pub node_id: NodeId,
}

/// The leader's answer to a [`RejoinRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejoinReply {
    /// It is a learner now (demoted); it catches up from the leader.
    Learner {
        /// Its matched log index.
        matched: u64,
        /// The leader's last log index (promotion at 90% of it, as `member promote`).
        target: u64,
    },
    /// It is a voter again.
    Voter,
    /// It is not a member of this cluster at all.
    NotAMember,
}

/// A node without Raft state asks a member what it knows of it (peer protocol).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStateRequest {
    /// The asking node.
    pub asker: NodeId,
}

/// What a member knows of the asker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStateReply {
    /// The asker's registration is in this member's applied state: it took part before.
    pub asker_registered: bool,
}

impl MemberStateReply {
    /// Whether the asker took part in the cluster before.
    pub fn took_part(&self) -> bool {
        self.asker_registered
    }
}

/// This member's answer to [`MemberStateRequest`].
pub fn member_state(node: &Node, asker: NodeId) -> MemberStateReply {
    MemberStateReply { asker_registered: node.client_addr_of(asker).is_some() }
}

/// The pure start-up rule (see the module docs). `answers`: the other initial members' replies
/// (`None`: no answer); `members`: how many the initial cluster has.
pub fn start_mode(answers: &[Option<MemberStateReply>], members: usize) -> Option<StartMode> {
    if answers.iter().flatten().any(MemberStateReply::took_part) {
        return Some(StartMode::Rejoin);
    }
    let answered = 1 + answers.iter().filter(|a| a.is_some()).count();
    (answered > members / 2).then_some(StartMode::Bootstrap)
}

/// Asks the other members of `initial_cluster` until [`start_mode`] decides.
pub async fn decide(me: NodeId, initial_cluster: &BTreeMap<NodeId, String>, peers: &PeerNetwork) -> StartMode {
    for attempt in 0u64.. {
        let mut answers = Vec::new();
        for (id, addr) in initial_cluster {
            if *id == me {
                continue;
            }
            let reply = tokio::time::timeout(Duration::from_millis(500), ask_member_state(peers, addr, me)).await;
            match reply {
                Ok(Ok(r)) => answers.push(Some(r)),
                Ok(Err(e)) => {
                    tracing::debug!(peer = id, "member-state query failed: {e}");
                    answers.push(None);
                }
                Err(_) => {
                    tracing::debug!(peer = id, "member-state query timed out");
                    answers.push(None);
                }
            }
        }
        if let Some(mode) = start_mode(&answers, initial_cluster.len()) {
            return mode;
        }
        if attempt % 50 == 0 {
            tracing::info!(
                "no Raft state here: waiting for a majority of --initial-cluster to answer before bootstrapping \
                 (or for a member that knows this node, to rejoin)"
            );
        }
        // Members of a new cluster start within moments of each other: ask again soon at first.
        tokio::time::sleep(if attempt < 40 { RETRY / 6 } else { RETRY }).await;
    }
    unreachable!("the loop above only ends by returning")
}

pub(crate) async fn ask_member_state(
    peers: &PeerNetwork,
    addr: &str,
    me: NodeId,
) -> std::result::Result<MemberStateReply, String> {
    peers.call(addr, Call::MemberState, &MemberStateRequest { asker: me }).await.map_err(|e| e.to_string())
}

/// Whether a rejoin is under way in `data_dir` (a crash mid-way resumes it).
pub fn pending(data_dir: &Path) -> bool {
    data_dir.join(MARKER).exists()
}

/// The marker's path and content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// Waiting to be demoted to a learner.
    AwaitingDemotion,
    /// Seen as a learner: the next time it is a voter, the flow is over.
    Learner,
}

fn marker(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER)
}

fn read_phase(data_dir: &Path) -> Phase {
    match std::fs::read_to_string(marker(data_dir)) {
        Ok(s) if s.trim() == "learner" || s.trim() == JOINING => Phase::Learner,
        _ => Phase::AwaitingDemotion,
    }
}

/// Writes the marker durably (temp file, fsync, rename, fsync of the directory).
fn write_phase(data_dir: &Path, phase: Phase) -> std::io::Result<()> {
    write_marker(data_dir, if phase == Phase::Learner { b"learner\n" } else { b"awaiting-demotion\n" })
}

fn write_marker(data_dir: &Path, content: &[u8]) -> std::io::Result<()> {
    crate::storage::file_engine::write_file_durable(data_dir, MARKER, content)
}

fn remove_marker(data_dir: &Path) -> std::io::Result<()> {
    std::fs::remove_file(marker(data_dir))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Closes the gate and records that a rejoin is under way (before Raft state is written).
/// `as_learner`: the node is already a learner (a new member that joins), so the flow ends at
/// its promotion.
///
/// # Errors
/// When the marker cannot be written durably.
pub fn begin(data_dir: &Path, gate: &VotingGate, as_learner: bool) -> std::io::Result<()> {
    gate.set_open(false);
    if !pending(data_dir) {
        if as_learner {
            write_marker(data_dir, JOINING.as_bytes())?;
        } else {
            write_phase(data_dir, Phase::AwaitingDemotion)?;
        }
    }
    Ok(())
}

/// Marker content of a new member joining as a learner (it waits for an operator's promotion).
const JOINING: &str = "joining";

/// Whether the flow under way asks the leader to promote this node (a member that lost its
/// data), rather than waiting for an operator (a new learner).
pub fn asks_leader(data_dir: &Path) -> bool {
    std::fs::read_to_string(marker(data_dir)).map_or(true, |s| s.trim() != JOINING)
}

/// How a node started with `--join` stands in the cluster it joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinStanding {
    /// Listed as a learner: a new member.
    Learner,
    /// Listed as a voter: it had joined before and lost its data.
    Voter,
}

/// Asks the `--join` endpoints (client API, over TLS with `tls`) how this node is listed, until
/// one answers and lists it. A node that is not listed waits (logging the command that adds
/// it); an endpoint that cannot be reached is logged (the TLS handshake's reason included).
/// Also returns the other members' peer addresses.
pub async fn join_standing(
    me: NodeId,
    peer_addr: &str,
    endpoints: &[String],
    tls: Option<ClientTls>,
) -> (JoinStanding, Vec<String>) {
    use conclave_proto::v1::cluster_client::ClusterClient;
    for attempt in 0u64.. {
        for ep in endpoints {
            let listed = match crate::raft::network::dial_once(ep, tls.clone()) {
                Ok(channel) => ClusterClient::new(channel)
                    .member_list(conclave_proto::v1::MemberListRequest {})
                    .await
                    .map_err(|s| s.message().to_owned()),
                Err(e) => Err(e),
            };
            let resp = match listed {
                Ok(resp) => resp,
                Err(e) => {
                    if attempt % 10 == 0 {
                        tracing::warn!("--join endpoint {ep} not reachable yet: {e}");
                    }
                    continue;
                }
            };
            let members = resp.into_inner().members;
            let peers = members.iter().filter(|m| m.id != me).map(|m| m.peer_addr.clone()).collect();
            match members.iter().find(|m| m.id == me) {
                Some(m) if m.voter => return (JoinStanding::Voter, peers),
                Some(_) => return (JoinStanding::Learner, peers),
                None => {
                    if attempt % 10 == 0 {
                        tracing::error!("{}", not_added(me, peer_addr));
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY * 3).await;
    }
    unreachable!("the loop above only ends by returning")
}

/// Runs the rejoin flow until this node is a voter again, then opens the gate.
///
/// `ask_leader`: whether to ask the leader to demote and promote this node (a member that lost
/// its data); otherwise it only waits for an operator's promotion (a new member added as a
/// learner with `member add`).
/// `peer_addrs`: the members' peer addresses this node was started with (to find the leader
/// before it has a log).
pub async fn run(
    node: Arc<Node>,
    data_dir: PathBuf,
    gate: Arc<VotingGate>,
    ask_leader_to_promote: bool,
    peer_addrs: Vec<String>,
) {
    let me = node.node_id();
    let raft = node.router().raft().clone();
    raft.runtime_config().elect(false);
    if ask_leader_to_promote {
        tracing::warn!(
            node_id = me,
            "this member has no Raft state but its cluster runs (its data dir was lost or replaced): \
             it rejoins as a learner and does not vote until the leader promotes it"
        );
    } else {
        tracing::info!(node_id = me, "joined as a learner: it votes once promoted (conclavectl member promote {me})");
    }
    loop {
        let (is_member, is_voter) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (membership.get_node(&me).is_some(), membership.voter_ids().any(|id| id == me))
        };
        let phase = read_phase(&data_dir);
        if is_member && !is_voter && phase == Phase::AwaitingDemotion && ask_leader_to_promote {
            if let Err(e) = write_phase(&data_dir, Phase::Learner) {
                tracing::error!("cannot record the rejoin's progress in {}: {e}", data_dir.display());
            }
            continue;
        }
        if is_voter && phase == Phase::Learner {
            match remove_marker(&data_dir) {
                Ok(()) => {
                    gate.set_open(true);
                    raft.runtime_config().elect(true);
                    tracing::info!(node_id = me, "rejoined: a voter again, with every committed entry");
                    return;
                }
                Err(e) => tracing::error!("cannot remove the rejoin marker in {}: {e}", data_dir.display()),
            }
        }
        if ask_leader_to_promote {
            match ask_leader(&node, &peer_addrs).await {
                Ok(reply) => tracing::debug!(?reply, "rejoin"),
                Err(e) => tracing::debug!("rejoin request not answered yet: {e}"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Asks the leader to re-add this node. A node without a log does not know the members' peer
/// addresses yet, so it asks every address it was started with until the leader answers
/// (followers answer NotLeader).
async fn ask_leader(node: &Node, peer_addrs: &[String]) -> Result<RejoinReply> {
    let router = node.router();
    let req = RejoinRequest { node_id: node.node_id() };
    if let Ok(leader) = router.leader().await {
        if leader != node.node_id() {
            if let Ok(reply) = router.link().forward::<_, Result<RejoinReply>>(leader, Call::Rejoin, &req).await {
                return reply;
            }
        }
    }
    let mut last = Error::NoLeader(node.node_id());
    for addr in peer_addrs {
        match send_rejoin(router.peers(), addr, &req).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(e)) | Err(e) => last = e,
        }
    }
    Err(last)
}

async fn send_rejoin(peers: &PeerNetwork, addr: &str, req: &RejoinRequest) -> Result<Result<RejoinReply>> {
    peers
        .call(addr, Call::Rejoin, req)
        .await
        .map_err(|e| Error::unavailable(UnavailableReason::Unreachable, e.to_string()))
}

/// The error for a node started with `--join` that the cluster does not list.
pub fn not_added(id: NodeId, peer_addr: &str) -> Error {
    Error::unavailable(
        UnavailableReason::Rejoining,
        format!(
            "node {id} is not a member of the cluster it was told to join; add it first: \
             conclavectl member add {id} {peer_addr} --learner"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: Option<MemberStateReply> = Some(MemberStateReply { asker_registered: false });

    #[test]
    fn a_member_that_saw_this_node_take_part_means_rejoin() {
        let registered = Some(MemberStateReply { asker_registered: true });
        assert_eq!(start_mode(&[registered, None], 3), Some(StartMode::Rejoin));
        assert_eq!(start_mode(&[NEW, registered], 3), Some(StartMode::Rejoin));
    }

    #[test]
    fn a_majority_that_never_saw_this_node_bootstraps() {
        // A cluster still forming, or running without this (late) founding member.
        assert_eq!(start_mode(&[NEW, None], 3), Some(StartMode::Bootstrap));
        assert_eq!(start_mode(&[NEW, NEW], 3), Some(StartMode::Bootstrap));
        assert_eq!(start_mode(&[], 1), Some(StartMode::Bootstrap));
    }

    #[test]
    fn never_bootstraps_without_a_majority() {
        assert_eq!(start_mode(&[None, None], 3), None);
        assert_eq!(start_mode(&[NEW, None, None, None], 5), None);
    }

    #[test]
    fn the_marker_survives_and_records_the_phase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = VotingGate::default();
        begin(dir.path(), &gate, false).expect("begin");
        assert!(!gate.open() && pending(dir.path()));
        assert_eq!(read_phase(dir.path()), Phase::AwaitingDemotion);
        write_phase(dir.path(), Phase::Learner).expect("write");
        assert_eq!(read_phase(dir.path()), Phase::Learner);
        remove_marker(dir.path()).expect("remove");
        assert!(!pending(dir.path()));
    }
}
