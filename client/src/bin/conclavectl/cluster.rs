//! `status` and `member list`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conclave_client::proto as pb;
use conclave_client::Client;
use serde::Serialize;

use crate::output::{json_line, table, Format};
use crate::Globals;

/// One endpoint's status in JSON (one object per line).
#[derive(Serialize)]
struct StatusJson<'a> {
    endpoint: &'a str,
    node_id: u64,
    leader_id: u64,
    role: &'a str,
    term: u64,
    applied_index: u64,
    revision: u64,
    compact_revision: u64,
    last_log_index: u64,
    snapshot_index: u64,
    members: usize,
    leader_client_addr: &'a str,
}

/// `status`: asks every endpoint given in --endpoints for its own view, concurrently. An endpoint
/// that does not answer gets an error line on stderr; the others are still printed, and the
/// command fails at the end.
pub async fn status(g: &Globals, out: &mut dyn Write) -> Result<()> {
    let mut config = g.config();
    // `status_of` contacts exactly the endpoint it is given, bounded by the connect and attempt
    // timeouts; the call deadline only bounds the best-effort member discovery `with_config`
    // does, which `status` does not need (and which would wait the whole deadline if every
    // endpoint were down).
    config.call_timeout = Duration::from_millis(1);
    let client = Client::with_config(config).await?;
    let results = futures::future::join_all(g.endpoints.iter().map(|ep| client.status_of(ep))).await;
    let mut ok = Vec::new();
    let mut failed = 0;
    for (ep, r) in g.endpoints.iter().zip(results) {
        match r {
            Ok(s) => ok.push((ep.as_str(), s)),
            Err(e) => {
                failed += 1;
                eprintln!("Error: status of {ep}: {e}");
            }
        }
    }
    match g.format {
        Format::Json => {
            for (ep, s) in &ok {
                json_line(
                    out,
                    &StatusJson {
                        endpoint: ep,
                        node_id: s.node_id,
                        leader_id: s.leader_id,
                        role: &s.role,
                        term: s.term,
                        applied_index: s.applied_index,
                        revision: s.revision,
                        compact_revision: s.compact_revision,
                        last_log_index: s.last_log_index,
                        snapshot_index: s.snapshot_index,
                        members: s.members.len(),
                        leader_client_addr: &s.leader_client_addr,
                    },
                )?;
            }
        }
        Format::Text if !ok.is_empty() => {
            let rows: Vec<Vec<String>> = ok
                .iter()
                .map(|(ep, s)| {
                    vec![
                        (*ep).to_owned(),
                        s.node_id.to_string(),
                        s.role.clone(),
                        if s.leader_id == 0 { "-".into() } else { s.leader_id.to_string() },
                        s.term.to_string(),
                        s.applied_index.to_string(),
                        s.revision.to_string(),
                        s.members.len().to_string(),
                    ]
                })
                .collect();
            table(out, &["ENDPOINT", "ID", "ROLE", "LEADER", "TERM", "APPLIED", "REVISION", "MEMBERS"], &rows)?;
        }
        Format::Text => {}
    }
    if failed > 0 {
        bail!("{failed} of {} endpoints did not answer", g.endpoints.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct MemberJson<'a> {
    id: u64,
    peer_addr: &'a str,
    client_addr: &'a str,
    voter: bool,
    leader: bool,
    match_index: u64,
    lag: u64,
    log_format: u32,
}

#[derive(Serialize)]
struct MembersJson<'a> {
    members: Vec<MemberJson<'a>>,
}

/// The leader's id as seen by the first endpoint (given ones first, then members) that knows it.
async fn find_leader(client: &Client, g: &Globals, members: &[pb::Member]) -> Option<u64> {
    let mut candidates: Vec<&str> = g.endpoints.iter().map(String::as_str).collect();
    for m in members {
        if !m.client_addr.is_empty() && !candidates.contains(&m.client_addr.as_str()) {
            candidates.push(&m.client_addr);
        }
    }
    for ep in candidates {
        if let Ok(s) = client.status_of(ep).await {
            if s.leader_id != 0 {
                return Some(s.leader_id);
            }
        }
    }
    None
}

/// `member list`.
pub async fn member_list(g: &Globals, out: &mut dyn Write) -> Result<()> {
    let client = g.client().await?;
    let members = client.member_list().await.context("member list")?;
    // The member list response does not tell the leader through the client API; ask a status.
    let leader = find_leader(&client, g, &members).await;
    // The leader's own view carries each member's match index, lag and log format level.
    let leader_addr = leader.and_then(|l| members.iter().find(|m| m.id == l)).map(|m| m.client_addr.clone());
    let members = match leader_addr {
        Some(addr) if !addr.is_empty() => client.status_of(&addr).await.map(|s| s.members).unwrap_or(members),
        _ => members,
    };
    match g.format {
        Format::Json => {
            let members = members
                .iter()
                .map(|m| MemberJson {
                    id: m.id,
                    peer_addr: &m.peer_addr,
                    client_addr: &m.client_addr,
                    voter: m.voter,
                    leader: leader == Some(m.id),
                    match_index: m.match_index,
                    lag: m.lag,
                    log_format: m.log_format,
                })
                .collect();
            json_line(out, &MembersJson { members })?;
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.peer_addr.clone(),
                        if m.client_addr.is_empty() { "-".into() } else { m.client_addr.clone() },
                        if m.voter { "voter" } else { "learner" }.into(),
                        if leader == Some(m.id) { "*" } else { "" }.into(),
                        m.match_index.to_string(),
                        m.lag.to_string(),
                        m.log_format.to_string(),
                    ]
                })
                .collect();
            let header = ["ID", "PEER ADDR", "CLIENT ADDR", "ROLE", "LEADER", "MATCH", "LAG", "LOG FORMAT"];
            table(out, &header, &rows)?;
        }
    }
    Ok(())
}
