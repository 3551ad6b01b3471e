//! Four-letter words on the ZooKeeper port (`echo ruok | nc host 2181`): `ruok`, `srvr`,
//! `stat`, `mntr`, `envi`, `cons`, `wchs`, `isro`. Any other word gets ZooKeeper's
//! "not in the whitelist" answer. The connection is closed after the answer.

use std::fmt::Write;

use super::{ZkContext, ZK_VERSION};

/// The answer to `head` if it is a four-letter word (a handshake starts with a length instead).
pub(super) fn answer(head: &[u8; 4], ctx: &ZkContext) -> Option<String> {
    if !head.iter().all(u8::is_ascii_lowercase) {
        return None;
    }
    let word = std::str::from_utf8(head).ok()?;
    let status = ctx.node.status();
    let revision = ctx.node.subscribe_applied().borrow().revision;
    let conns = ctx.conns().clone();
    let mode = if status.role == "leader" { "leader" } else { "follower" };
    let nodes = ctx.node.view(|sm| sm.znodes().paths_under("/").count() + 4).unwrap_or(0);
    let watches: usize = conns.values().map(|c| c.watched.len()).sum();
    let (received, sent): (u64, u64) = conns.values().fold((0, 0), |(r, s), c| (r + c.received, s + c.sent));
    let mut out = String::new();
    match word {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str("rw"),
        "srvr" | "stat" => {
            let _ = writeln!(out, "Zookeeper version: {ZK_VERSION}, built on Conclave");
            if word == "stat" {
                out.push_str("Clients:\n");
                for c in conns.values() {
                    let _ = writeln!(out, " /{}[1](queued=0,recved={},sent={})", c.peer, c.received, c.sent);
                }
                out.push('\n');
            }
            let _ = writeln!(out, "Latency min/avg/max: 0/0.0/0\nReceived: {received}\nSent: {sent}");
            let _ = writeln!(out, "Connections: {}\nOutstanding: 0\nZxid: {revision:#x}", conns.len());
            let _ = writeln!(out, "Mode: {mode}\nNode count: {nodes}");
        }
        "mntr" => {
            for (k, v) in [
                ("zk_version", ZK_VERSION.to_string()),
                ("zk_server_state", mode.to_string()),
                ("zk_num_alive_connections", conns.len().to_string()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_znode_count", nodes.to_string()),
                ("zk_watch_count", watches.to_string()),
                ("zk_packets_received", received.to_string()),
                ("zk_packets_sent", sent.to_string()),
                ("zk_zxid", revision.to_string()),
            ] {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={ZK_VERSION}, built on Conclave");
            let _ = writeln!(out, "host.name={}", std::env::var("HOSTNAME").unwrap_or_default());
            let _ = writeln!(out, "os.name={}\nos.arch={}", std::env::consts::OS, std::env::consts::ARCH);
            let _ = writeln!(out, "conclave.node_id={}", status.node_id);
        }
        "cons" => {
            for c in conns.values() {
                let _ = writeln!(
                    out,
                    " /{}[1](queued=0,recved={},sent={},sid={:#x})",
                    c.peer, c.received, c.sent, c.session_id
                );
            }
            out.push('\n');
        }
        "wchs" => {
            let paths: std::collections::BTreeSet<&String> = conns.values().flat_map(|c| &c.watched).collect();
            let watching = conns.values().filter(|c| !c.watched.is_empty()).count();
            let _ = writeln!(out, "{watching} connections watching {} paths\nTotal watches:{watches}", paths.len());
        }
        other => {
            let _ = writeln!(out, "{other} is not executed because it is not in the whitelist.");
        }
    }
    Some(out)
}
