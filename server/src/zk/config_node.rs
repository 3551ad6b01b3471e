//! `/zookeeper/config`: the ensemble in ZooKeeper's dynamic-configuration format, built from the
//! current Raft membership and the ZooKeeper address each member registered
//! (`Command::RegisterZkAddr`), so Curator's `EnsembleTracker` and `zkCli config` list the
//! members. One line per member, `server.ID=HOST:PEERPORT:ELECTIONPORT:ROLE;ZKHOST:ZKPORT`, then
//! `version=HEX` (the membership's log index); learners are `observer`s. Conclave has one peer
//! port and no election port: ELECTIONPORT is nominal (the peer port + 1, or − 1 at 65535),
//! because ZooKeeper's own parser, which Curator's `EnsembleTracker` runs on this node, refuses
//! a line whose two ports are equal ("Client and election port must be different"), and Flink's
//! shaded Curator treats that as fatal. A member that has not
//! registered a ZooKeeper address (no `--zk-addr`) is listed without the `;client` part.

use crate::node::MemberInfo;
use crate::state_machine::zk_result::ZStat;

/// The node's data for `members`, their ZooKeeper addresses by id, and the membership `version`.
pub fn config_data(
    members: &[MemberInfo],
    zk_addrs: &std::collections::BTreeMap<u64, String>,
    version: u64,
) -> Vec<u8> {
    let mut members: Vec<&MemberInfo> = members.iter().collect();
    members.sort_by_key(|m| m.id);
    let mut out = String::new();
    for m in members {
        let (host, port) = m.peer_addr.rsplit_once(':').unwrap_or((m.peer_addr.as_str(), "0"));
        let port: u16 = port.parse().unwrap_or(0);
        let election = if port < u16::MAX { port + 1 } else { port - 1 };
        let role = if m.voter { "participant" } else { "observer" };
        out.push_str(&format!("server.{}={host}:{port}:{election}:{role}", m.id));
        if let Some(zk) = zk_addrs.get(&m.id).filter(|a| !a.is_empty()) {
            out.push_str(&format!(";{zk}"));
        }
        out.push('\n');
    }
    out.push_str(&format!("version={version:x}"));
    out.into_bytes()
}

/// The node's stat: modified at `version`, holding `data`.
pub fn config_stat(data: &[u8], version: u64) -> ZStat {
    ZStat { czxid: 0, mzxid: version, data_length: data.len() as i32, ..ZStat::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_member_in_zookeepers_dynamic_config_format() {
        let member =
            |id, voter| MemberInfo { id, peer_addr: format!("10.0.0.{id}:7380"), client_addr: String::new(), voter };
        let addrs = [(1, "10.0.0.1:2181".to_string()), (2, "10.0.0.2:2181".to_string())].into();
        let data = config_data(&[member(2, true), member(1, true), member(3, false)], &addrs, 0x1f);
        assert_eq!(
            String::from_utf8(data).expect("utf-8"),
            "server.1=10.0.0.1:7380:7381:participant;10.0.0.1:2181\n\
             server.2=10.0.0.2:7380:7381:participant;10.0.0.2:2181\n\
             server.3=10.0.0.3:7380:7381:observer\n\
             version=1f"
        );
    }

    /// ZooKeeper's `QuorumServer` parser (run by Curator's `EnsembleTracker`, fatal in Flink)
    /// refuses equal quorum and election ports; found by the Flink HA run.
    #[test]
    fn the_two_ports_of_a_line_always_differ() {
        for port in [1u16, 7380, u16::MAX] {
            let m = MemberInfo { id: 1, peer_addr: format!("h:{port}"), client_addr: String::new(), voter: true };
            let data = String::from_utf8(config_data(&[m], &Default::default(), 1)).expect("utf-8");
            let line = data.lines().next().expect("a line");
            let ports: Vec<&str> = line.split(':').skip(1).take(2).collect();
            assert_ne!(ports[0], ports[1], "{line}");
        }
    }
}
