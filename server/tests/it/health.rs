//! Health probes and metrics of real processes: `grpc.health.v1` on the client port, `/livez`,
//! `/readyz` and `/metrics` on `--metrics-addr`; readiness flips when a member is cut off from
//! the leader (the others paused with SIGSTOP) and comes back when they return.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use conclave_testkit::{wait_for, Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{assert_no_panics, binary};

/// The service names the health service reports (both follow the readiness rule).
const SERVICES: [&str; 2] = ["", "conclave.v1.KV"];
/// How long a flip of readiness may take: the rule's leader lease (2 x election timeout) plus
/// its check period and read-index timeout, with a wide margin for a loaded 2-core machine.
const FLIP_BOUND: Duration = Duration::from_secs(10);

/// A cluster whose nodes serve metrics on `127.<a>.<b>.<node id>:<port>`, an address block
/// chosen at random for this cluster (all of 127/8 is loopback).
pub(crate) async fn metrics_cluster() -> Result<(Cluster, BTreeMap<u64, String>)> {
    metrics_cluster_with(Vec::new()).await
}

/// Like [`metrics_cluster`], with more environment (e.g. `CONCLAVE_READ_LEASE`).
pub(crate) async fn metrics_cluster_with(env: Vec<(String, String)>) -> Result<(Cluster, BTreeMap<u64, String>)> {
    // The metrics port is picked free and released before the members bind it: another
    // process may take it meanwhile. Such a start is tried again on other addresses.
    let mut tries = 0;
    loop {
        match metrics_cluster_once(env.clone()).await {
            Err(e) if tries < 2 && format!("{e:#}").contains("in use") => tries += 1,
            other => return other,
        }
    }
}

async fn metrics_cluster_once(mut env: Vec<(String, String)>) -> Result<(Cluster, BTreeMap<u64, String>)> {
    let salt = std::process::id() ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let (a, b) = (100 + (salt % 100) as u8, (salt / 100 % 250) as u8 + 1);
    let port = TcpListener::bind((Ipv4Addr::new(127, a, b, 1), 0))?.local_addr()?.port();
    let c = Cluster::start_with(ClusterOptions {
        nodes: 3,
        binary: Some(binary()),
        env: {
            env.push(("CONCLAVE_METRICS_ADDR".into(), format!("127.{a}.{b}.{{id}}:{port}")));
            env
        },
        ..ClusterOptions::default()
    })
    .await?;
    let addrs = (1..=3).map(|id| (id, format!("127.{a}.{b}.{id}:{port}"))).collect();
    Ok((c, addrs))
}

/// How much counter `name` grew between two scrapes.
pub(crate) fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, name: &str) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

/// `grpc.health.v1.Health/Check` of `service` on a client address.
async fn grpc_health(client_addr: &str, service: &str) -> Result<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{client_addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let resp = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await?;
    Ok(resp.into_inner().status())
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(String::from_utf8(raw)?)
    };
    let text = tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .map_err(|_| anyhow!("GET {addr}{path}: no answer"))??;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed HTTP response {text:?}"))?;
    let code =
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((code, if chunked { dechunk(body)? } else { body.to_owned() }))
}

/// Decodes a chunked HTTP body.
fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        body = rest.get(size + 2..).ok_or_else(|| anyhow!("short chunk"))?;
    }
}

/// Whether node `id` is ready on every probe: both gRPC health services and `/readyz`.
async fn probes(c: &Cluster, metrics: &BTreeMap<u64, String>, id: u64) -> Result<(bool, bool)> {
    let mut grpc = Vec::new();
    for s in SERVICES {
        grpc.push(grpc_health(&c.node(id).client_addr, s).await? == ServingStatus::Serving);
    }
    anyhow::ensure!(grpc.iter().all(|g| *g == grpc[0]), "the health services disagree: {grpc:?}");
    let (code, body) = http_get(&metrics[&id], "/readyz").await?;
    anyhow::ensure!(code == 200 || code == 503, "/readyz answered {code}: {body}");
    Ok((grpc[0], code == 200))
}

/// Waits until node `id`'s probes say `ready`; returns how long that took.
async fn wait_ready(c: &Cluster, metrics: &BTreeMap<u64, String>, id: u64, ready: bool) -> Result<Duration> {
    let started = Instant::now();
    wait_for(&format!("node {id} ready = {ready}"), FLIP_BOUND, || async move {
        let (grpc, http) = probes(c, metrics, id).await.ok()?;
        (grpc == ready && http == ready).then_some(())
    })
    .await?;
    Ok(started.elapsed())
}

/// Cuts node `survivor` off by pausing every other member; checks its probes flip to not ready
/// (liveness stays up), then resumes the others and checks they flip back.
async fn cut_off_and_return(c: &mut Cluster, metrics: &BTreeMap<u64, String>, survivor: u64) -> Result<()> {
    let others: Vec<u64> = (1..=3).filter(|i| *i != survivor).collect();
    for id in &others {
        c.pause(*id)?;
    }
    let down = wait_ready(c, metrics, survivor, false).await;
    let live = http_get(&metrics[&survivor], "/livez").await;
    let reason = http_get(&metrics[&survivor], "/readyz").await;
    for id in &others {
        c.resume(*id)?;
    }
    let down = down.with_context(|| format!("node {survivor} cut off from the others"))?;
    eprintln!("node {survivor} cut off: not ready after {down:?}, /readyz said {reason:?}");
    assert_eq!(live?.0, 200, "a cut-off member is still alive");
    let up = wait_ready(c, metrics, survivor, true).await?;
    eprintln!("node {survivor} ready again {up:?} after the others resumed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_flips_when_a_member_is_cut_off_from_the_leader() -> Result<()> {
    let (mut c, metrics) = metrics_cluster().await?;
    c.client().await?.put("warm", "up").await?;
    for id in 1..=3 {
        wait_ready(&c, &metrics, id, true).await?;
        assert_eq!(http_get(&metrics[&id], "/livez").await?.0, 200);
    }
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|i| *i != leader).ok_or_else(|| anyhow!("no follower"))?;
    // A follower that no longer hears from its leader.
    cut_off_and_return(&mut c, &metrics, follower).await?;
    // A leader that lost its quorum still names itself (openraft 0.9 has no check-quorum): it
    // cannot confirm its commit index, so it is not ready either.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    cut_off_and_return(&mut c, &metrics, leader).await?;
    assert_no_panics(&c);
    Ok(())
}

/// Parsed samples of a Prometheus text exposition: `name{labels}` -> value.
fn parse_samples(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| anyhow!("malformed sample {line:?}"))?;
        let value: f64 = value.parse().with_context(|| format!("value of {line:?}"))?;
        samples.insert(series.to_owned(), value);
    }
    Ok(samples)
}

/// The sum of every sample of metric `name` whose series contains each of `labels`.
pub(crate) fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.split('{').next() == Some(name) && labels.iter().all(|l| s.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

pub(crate) async fn scrape(metrics: &BTreeMap<u64, String>, id: u64) -> Result<BTreeMap<String, f64>> {
    let (code, body) = http_get(&metrics[&id], "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
    parse_samples(&body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_scraped_and_make_sense() -> Result<()> {
    let (c, metrics) = metrics_cluster().await?;
    let client = c.client().await?;
    client.put("warm", "up").await?;
    let before = scrape(&metrics, 1).await?;
    for name in [
        "conclave_has_leader",
        "conclave_is_leader",
        "conclave_leader_changes_seen_total",
        "conclave_raft_term",
        "conclave_raft_applied_index",
        "conclave_raft_committed_index",
        "conclave_proposals_committed_total",
        "conclave_proposals_applied_total",
        "conclave_proposals_pending",
        "conclave_proposals_failed_total",
        "conclave_sessions",
        "conclave_ephemeral_keys",
        "conclave_leases",
        "conclave_watchers",
        "conclave_state_keys",
        "conclave_state_revision",
        "conclave_ready",
    ] {
        assert!(before.keys().any(|s| s.split('{').next() == Some(name)), "{name} missing from /metrics: {before:?}");
    }
    for family in ["conclave_apply_duration_seconds", "conclave_read_index_duration_seconds"] {
        assert!(before.contains_key(&format!("{family}_count")), "histogram {family} missing: {before:?}");
    }
    let committed_before: f64 = {
        let mut total = 0.0;
        for id in 1..=3 {
            total += sum(&scrape(&metrics, id).await?, "conclave_proposals_committed_total", &[]);
        }
        total
    };
    for i in 0..20 {
        client.put(&format!("k{i}"), "v").await?;
    }
    let sessions =
        [client.session_open(Duration::from_secs(30)).await?, client.session_open(Duration::from_secs(30)).await?];
    client.put_ephemeral("eph", "v", sessions[0]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let revision = c.status(leader).await?.revision;
    for id in 1..=3 {
        c.wait_for_revision(id, revision, Duration::from_secs(10)).await?;
    }
    let mut all = BTreeMap::new();
    for id in 1..=3 {
        all.insert(id, scrape(&metrics, id).await?);
    }
    let is_leader: f64 = all.values().map(|s| sum(s, "conclave_is_leader", &[])).sum();
    assert_eq!(is_leader, 1.0, "exactly one member is the leader");
    for (id, s) in &all {
        assert_eq!(sum(s, "conclave_has_leader", &[]), 1.0, "node {id} knows a leader");
        assert!(sum(s, "conclave_leader_changes_seen_total", &[]) >= 1.0, "node {id} saw the first leader");
        assert_eq!(sum(s, "conclave_sessions", &[]), 2.0, "node {id}: the two open sessions");
        assert_eq!(sum(s, "conclave_ephemeral_keys", &[]), 1.0, "node {id}: one ephemeral key");
        assert!(sum(s, "conclave_state_keys", &[]) >= 22.0, "node {id}: 22 keys at least");
        assert!(sum(s, "conclave_state_revision", &[]) >= revision as f64, "node {id} revision");
        assert!(sum(s, "conclave_proposals_applied_total", &[]) >= 23.0, "node {id} applied the writes");
        assert!(sum(s, "conclave_apply_duration_seconds_count", &[]) >= 1.0, "node {id} timed its applies");
    }
    let committed: f64 = all.values().map(|s| sum(s, "conclave_proposals_committed_total", &[])).sum();
    assert!(
        committed >= committed_before + 23.0,
        "proposals committed grew by the 23 writes: {committed_before} -> {committed}"
    );
    // A write reaches the leader directly or through a follower: count the Put calls anywhere.
    let labels = ["method=\"/conclave.v1.KV/Put\"", "code=\"OK\""];
    let puts: f64 = all.values().map(|s| sum(s, "conclave_grpc_server_handled_total", &labels)).sum();
    assert!(puts >= 21.0, "the puts were counted by method and code: {puts}");
    let timed: f64 = all.values().map(|s| sum(s, "conclave_grpc_server_handling_seconds_count", &labels)).sum();
    assert_eq!(timed, puts, "every counted call was timed");
    let lag_series = all[&leader].keys().filter(|s| s.starts_with("conclave_follower_match_lag_entries{")).count();
    assert_eq!(lag_series, 2, "the leader reports both followers' lag: {:?}", all[&leader]);
    assert_no_panics(&c);
    Ok(())
}
