//! `endpoint health`, `endpoint status` and `endpoint hashkv` (etcdctl's shape): each endpoint given in
//! --endpoints is asked on its own, concurrently; one line (or JSON object) per endpoint, in
//! the order given; exit code 1 when any endpoint is unhealthy or does not answer.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;
use conclave_client::Client;
use serde::Serialize;

use crate::output::{json_line, table, Format};
use crate::Globals;

/// `endpoint` subcommands.
#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Whether each endpoint is healthy (grpc.health.v1 SERVING: it knows a leader it hears
    /// from, the leader confirmed its commit index, and it has applied close to it). Prints
    /// `<endpoint> is healthy: took = <t>` or `<endpoint> is unhealthy: took = <t>, error: <why>`
    /// (json: {"endpoint","health","took","error"}). Exit code 1 if any is unhealthy.
    Health,
    /// Each endpoint's own status: id, server version, revision, Raft term, last log index,
    /// applied index, leader, learner or not (json: one object per endpoint). Exit code 1 if
    /// any does not answer.
    Status,
    /// A hash of the key space on each endpoint at one revision (--rev, default: the lowest
    /// current revision among them, so all can answer): `<endpoint> revision <R> hash <H>`
    /// (json: {"endpoint","revision","hash","compact_revision"}). Exit code 1 if members
    /// disagree at the same revision, or any does not answer.
    Hashkv {
        /// The revision to hash at (0: the lowest current revision of the endpoints).
        #[arg(long, default_value_t = 0)]
        rev: u64,
    },
}

/// Runs an `endpoint` subcommand.
pub async fn run(g: &Globals, out: &mut dyn Write, cmd: EndpointCommand) -> Result<()> {
    let mut config = g.config();
    // Each call goes to exactly one endpoint, bounded by the attempt timeout; the call deadline
    // only bounds the discovery `with_config` does, which is not needed here.
    config.call_timeout = Duration::from_millis(1);
    let client = Client::with_config(config).await?;
    match cmd {
        EndpointCommand::Health => health(g, out, &client).await,
        EndpointCommand::Status => status(g, out, &client).await,
        EndpointCommand::Hashkv { rev } => hashkv(g, out, &client, rev).await,
    }
}

#[derive(Serialize)]
struct HealthJson<'a> {
    endpoint: &'a str,
    health: bool,
    took: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

async fn health(g: &Globals, out: &mut dyn Write, client: &Client) -> Result<()> {
    let results = futures::future::join_all(g.endpoints.iter().map(|ep| client.health_of(ep))).await;
    let mut unhealthy = 0;
    for (ep, h) in g.endpoints.iter().zip(&results) {
        unhealthy += usize::from(!h.healthy);
        let took = format!("{:?}", h.took);
        match g.format {
            Format::Json => {
                json_line(out, &HealthJson { endpoint: ep, health: h.healthy, took, error: h.error.as_deref() })?
            }
            Format::Text if h.healthy => writeln!(out, "{ep} is healthy: took = {took}")?,
            Format::Text => {
                writeln!(out, "{ep} is unhealthy: took = {took}, error: {}", h.error.as_deref().unwrap_or("unknown"))?
            }
        }
    }
    if unhealthy > 0 {
        bail!("{unhealthy} of {} endpoints unhealthy", g.endpoints.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusJson<'a> {
    endpoint: &'a str,
    id: u64,
    version: &'a str,
    revision: u64,
    raft_term: u64,
    raft_index: u64,
    raft_applied_index: u64,
    leader: u64,
    is_learner: bool,
    role: &'a str,
    snapshot_index: u64,
    cluster_id: &'a str,
    log_format: u32,
    cluster_log_format: u32,
}

async fn status(g: &Globals, out: &mut dyn Write, client: &Client) -> Result<()> {
    let results = futures::future::join_all(g.endpoints.iter().map(|ep| client.endpoint_status(ep))).await;
    let mut rows = Vec::new();
    let mut failed = 0;
    for (ep, r) in g.endpoints.iter().zip(&results) {
        let e = match r {
            Ok(e) => e,
            Err(err) => {
                failed += 1;
                eprintln!("Error: status of {ep}: {err}");
                continue;
            }
        };
        let s = &e.status;
        let json = StatusJson {
            endpoint: ep,
            id: s.node_id,
            version: &e.version,
            revision: s.revision,
            raft_term: s.term,
            raft_index: s.last_log_index,
            raft_applied_index: s.applied_index,
            leader: s.leader_id,
            is_learner: s.role == "learner",
            role: &s.role,
            snapshot_index: s.snapshot_index,
            cluster_id: &s.cluster_id,
            log_format: s.log_format,
            cluster_log_format: s.cluster_log_format,
        };
        match g.format {
            Format::Json => json_line(out, &json)?,
            Format::Text => rows.push(vec![
                ep.clone(),
                s.node_id.to_string(),
                e.version.clone(),
                (s.leader_id == s.node_id).to_string(),
                json.is_learner.to_string(),
                s.term.to_string(),
                s.last_log_index.to_string(),
                s.applied_index.to_string(),
                s.revision.to_string(),
                format!("{} (cluster {})", s.log_format, s.cluster_log_format),
            ]),
        }
    }
    if !rows.is_empty() {
        let header = [
            "ENDPOINT",
            "ID",
            "VERSION",
            "IS LEADER",
            "IS LEARNER",
            "RAFT TERM",
            "RAFT INDEX",
            "RAFT APPLIED INDEX",
            "REVISION",
            "LOG FORMAT",
        ];
        table(out, &header, &rows)?;
    }
    if failed > 0 {
        bail!("{failed} of {} endpoints did not answer", g.endpoints.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct HashJson<'a> {
    endpoint: &'a str,
    revision: u64,
    hash: u32,
    compact_revision: u64,
}

/// The lowest current revision among the endpoints that answer (None: none answers).
async fn common_revision(client: &Client, endpoints: &[String]) -> Option<u64> {
    let answers = futures::future::join_all(endpoints.iter().map(|ep| client.hash_kv_of(ep, 0))).await;
    answers.into_iter().filter_map(|a| a.ok()).map(|h| h.revision).min()
}

async fn hashkv(g: &Globals, out: &mut dyn Write, client: &Client, rev: u64) -> Result<()> {
    let rev = match rev {
        0 => common_revision(client, &g.endpoints).await.unwrap_or(0),
        r => r,
    };
    let results = futures::future::join_all(g.endpoints.iter().map(|ep| client.hash_kv_of(ep, rev))).await;
    let mut failed = 0;
    let mut answered = Vec::new();
    for (ep, r) in g.endpoints.iter().zip(&results) {
        let h = match r {
            Ok(h) => h,
            Err(err) => {
                failed += 1;
                eprintln!("Error: hashkv of {ep}: {err}");
                continue;
            }
        };
        answered.push((h.revision, h.hash));
        let json = HashJson { endpoint: ep, revision: h.revision, hash: h.hash, compact_revision: h.compact_revision };
        match g.format {
            Format::Json => json_line(out, &json)?,
            Format::Text => writeln!(out, "{ep} revision {} hash {}", h.revision, h.hash)?,
        }
    }
    if let Some((revision, differing)) = disagreement(&answered) {
        bail!("members disagree at revision {revision}: {differing} different hashes");
    }
    if failed > 0 {
        bail!("{failed} of {} endpoints did not answer", g.endpoints.len());
    }
    Ok(())
}

/// The first revision at which (revision, hash) answers differ, with the number of hashes seen.
fn disagreement(answers: &[(u64, u32)]) -> Option<(u64, usize)> {
    let mut by_revision = std::collections::BTreeMap::<u64, std::collections::BTreeSet<u32>>::new();
    for (revision, hash) in answers {
        by_revision.entry(*revision).or_default().insert(*hash);
    }
    by_revision.into_iter().find(|(_, set)| set.len() > 1).map(|(r, set)| (r, set.len()))
}

#[cfg(test)]
mod tests {
    use super::disagreement;

    #[test]
    fn only_different_hashes_at_the_same_revision_disagree() {
        assert_eq!(disagreement(&[(5, 1), (5, 1), (5, 1)]), None);
        assert_eq!(disagreement(&[(5, 1), (6, 2)]), None, "different revisions are not compared");
        assert_eq!(disagreement(&[(5, 1), (5, 2), (5, 3), (6, 9)]), Some((5, 3)));
        assert_eq!(disagreement(&[]), None);
    }
}
