//! The six scenarios of the suite, in order, each returning its timings. The clients of
//! [`crate::workload`] run throughout; each step is judged on its own time window.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use conclave_client::{proto as pb, Client, Reason};
use tokio::time::Instant;

use std::sync::Mutex;

use crate::docker::Pods;
use crate::workload::{service_client, Events};

/// How long a pod may take to become ready.
pub const READY_LIMIT: Duration = Duration::from_secs(120);
/// How long a partition lasts (several election timeouts).
const PARTITION: Duration = Duration::from_secs(6);

/// Named durations of one step, in the order measured.
pub type Timings = Vec<(String, Duration)>;

/// A client to pod `ordinal` only (probes, status).
async fn probe(pods: &Pods, ordinal: u64) -> Result<Client> {
    service_client(vec![pods.ready_endpoint(ordinal)]).await
}

/// Waits until pod `ordinal` answers grpc.health.v1 SERVING (its readiness probe).
///
/// # Errors
/// When it does not within [`READY_LIMIT`].
pub async fn wait_ready(pods: &Pods, ordinal: u64) -> Result<Duration> {
    let start = Instant::now();
    let client = probe(pods, ordinal).await?;
    let endpoint = pods.ready_endpoint(ordinal);
    let mut last = String::new();
    while start.elapsed() < READY_LIMIT {
        let h = client.health_of(&endpoint).await;
        if h.healthy {
            return Ok(start.elapsed());
        }
        last = h.error.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{} not ready within {READY_LIMIT:?} (last answer: {last})", pods.name(ordinal))
}

/// The members as the leader sees them (with match indexes), asked through pod `via`.
async fn members(pods: &Pods, via: u64) -> Result<Vec<pb::Member>> {
    let status = probe(pods, via).await?.endpoint_status(&pods.endpoint(via)).await?;
    let leader = status.status.leader_id;
    if leader == 0 {
        bail!("{} knows no leader", pods.name(via));
    }
    let client = probe(pods, leader - 1).await?;
    Ok(client.endpoint_status(&pods.endpoint(leader - 1)).await?.status.members)
}

/// The ordinal of the current leader, asked through `via`.
async fn leader(pods: &Pods, via: u64) -> Result<u64> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let status = probe(pods, via).await?.endpoint_status(&pods.endpoint(via)).await;
        if let Ok(s) = status {
            if s.status.leader_id > 0 {
                return Ok(s.status.leader_id - 1);
            }
        }
        if Instant::now() > deadline {
            bail!("no leader known to {}", pods.name(via));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` over HTTP/1.0: (status code, body).
async fn http_get(ip: &str, port: u16, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("GET {ip}:{port}{path}: no answer"))??;
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, text))
}

/// Step 1: all initial pods at once (Parallel pod management) from empty volumes.
pub async fn form(pods: &Pods, n: u64) -> Result<Timings> {
    let start = Instant::now();
    for i in 0..n {
        pods.create(i).await?;
    }
    let mut t = vec![("containers created".to_owned(), start.elapsed())];
    for i in 0..n {
        wait_ready(pods, i).await?;
    }
    t.push(("all ready".to_owned(), start.elapsed()));
    // The liveness probe and the Prometheus annotations name endpoints that answer.
    let (live_port, live_path) = &pods.template.liveness;
    let (metrics_port, metrics_path) = &pods.template.metrics;
    for i in 0..n {
        let (code, _) = http_get(&pods.ip(i), *live_port, live_path).await?;
        let (mcode, body) = http_get(&pods.ip(i), *metrics_port, metrics_path).await?;
        if code != 200 || mcode != 200 || !body.contains("# TYPE") {
            bail!("{}: {live_path} answered {code}, {metrics_path} answered {mcode}", pods.name(i));
        }
    }
    Ok(t)
}

/// Step 2: the StatefulSet controller's rolling update: highest ordinal first, each pod
/// deleted (SIGTERM, then SIGKILL after the grace period) and created again on its volume, the
/// next only once it is ready again.
pub async fn rolling_restart(pods: &Pods, n: u64, events: &Mutex<Events>) -> Result<Timings> {
    let mut t = Vec::new();
    for i in (0..n).rev() {
        let was_leader = leader(pods, i).await? == i;
        let start = Instant::now();
        pods.stop(i).await?;
        let stopped = start.elapsed();
        // Exit 0 = it shut down on SIGTERM by itself, not killed at the end of the grace period.
        let code = pods.exit_code(i).await?;
        if code != 0 {
            bail!("{} exited with {code} after SIGTERM (after {stopped:?})", pods.name(i));
        }
        pods.remove_container(i).await?;
        pods.create(i).await?;
        let ready = wait_ready(pods, i).await? + stopped;
        let role = if was_leader { " (leader)" } else { "" };
        let gap =
            events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).window(start, Instant::now()).longest_gap;
        t.push((format!("{} stop{role}", pods.name(i)), stopped));
        t.push((format!("{} stop->ready{role}", pods.name(i)), ready));
        t.push((format!("{} longest write gap{role}", pods.name(i)), gap));
    }
    Ok(t)
}

/// Retries `promote` until the learner has caught up (LEARNER_NOT_READY meanwhile).
async fn promote_when_ready(client: &Client, id: u64) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        match client.member_promote(id).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline && e.reason() == Some(Reason::LearnerNotReady) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("member promote {id}")),
        }
    }
}

/// Step 3: scale `n` → `n + 2` (learners added, pods started, promoted when caught up), then
/// back to `n` (highest ordinal first: member removed, pod and volume deleted).
pub async fn scale(pods: &Pods, admin: &Client, n: u64) -> Result<Timings> {
    let start = Instant::now();
    let mut t = Vec::new();
    let ns = &pods.namespace;
    for i in n..n + 2 {
        let dns = &pods.template.dns_names(i, ns)[0];
        let peer = format!("{dns}:{}", pods.template.peer_port);
        let client_addr = format!("{dns}:{}", pods.template.client_port);
        admin.member_add(i + 1, &peer, &client_addr).await.with_context(|| format!("member add {}", i + 1))?;
        pods.create(i).await?;
    }
    for i in n..n + 2 {
        promote_when_ready(admin, i + 1).await?;
        wait_ready(pods, i).await?;
    }
    let voters = members(pods, 0).await?.iter().filter(|m| m.voter).count();
    if voters as u64 != n + 2 {
        bail!("after scale-up: {voters} voters, expected {}", n + 2);
    }
    t.push((format!("{n}->{} (voters, ready)", n + 2), start.elapsed()));
    let down = Instant::now();
    for i in (n..n + 2).rev() {
        admin.member_remove(i + 1, false).await.with_context(|| format!("member remove {}", i + 1))?;
        pods.delete_with_volume(i).await?;
    }
    let voters = members(pods, 0).await?.iter().filter(|m| m.voter).count();
    if voters as u64 != n {
        bail!("after scale-down: {voters} voters, expected {n}");
    }
    t.push((format!("{}->{n}", n + 2), down.elapsed()));
    Ok(t)
}

/// Step 4: pod `victim` deleted with its volume and recreated: it must rejoin as a learner
/// (never voting with its empty log) and be promoted without any manual step.
pub async fn lose_volume(pods: &Pods, victim: u64) -> Result<Timings> {
    let start = Instant::now();
    pods.delete_with_volume(victim).await?;
    pods.create(victim).await?;
    let id = victim + 1;
    let other = (victim + 1) % 3;
    let mut seen_learner = false;
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        if let Ok(ms) = members(pods, other).await {
            if let Some(m) = ms.iter().find(|m| m.id == id) {
                seen_learner |= !m.voter;
                if m.voter && seen_learner {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            bail!("node {id} did not rejoin within {READY_LIMIT:?} (seen as learner: {seen_learner})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let voter_again = start.elapsed();
    wait_ready(pods, victim).await?;
    // The node's own account: it noticed it had lost its data, stayed out of elections as a
    // learner, and ended the rejoin once it saw itself a voter (a moment after the leader).
    let logged = Instant::now();
    loop {
        let log = pods.logs(victim).await?;
        let (learner_at, rejoined_at) = (log.find("rejoins as a learner"), log.find("rejoined"));
        if matches!((learner_at, rejoined_at), (Some(a), Some(b)) if a < b) {
            break;
        }
        if logged.elapsed() > Duration::from_secs(30) {
            bail!("{}'s log lacks \"rejoins as a learner\" then \"rejoined\"", pods.name(victim));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(vec![("voter again (via learner)".into(), voter_again), ("ready".into(), start.elapsed())])
}

/// Step 5: the leader cut off the network for [`PARTITION`], then healed.
pub async fn partition(pods: &Pods) -> Result<Timings> {
    let victim = leader(pods, 0).await?;
    let start = Instant::now();
    pods.disconnect(victim).await?;
    let other = (victim + 1) % 3;
    let new_leader = loop {
        let l = leader(pods, other).await?;
        if l != victim {
            break start.elapsed();
        }
        if start.elapsed() > READY_LIMIT {
            bail!("no new leader while {} is cut off", pods.name(victim));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(PARTITION.saturating_sub(start.elapsed())).await;
    pods.connect(victim).await?;
    let ready = wait_ready(pods, victim).await?;
    Ok(vec![
        (format!("new leader after cutting {} (leader)", pods.name(victim)), new_leader),
        ("healed -> ready".into(), ready),
    ])
}

/// Step 6: SIGKILL every pod, start them all again.
pub async fn kill_all(pods: &Pods, n: u64) -> Result<Timings> {
    let start = Instant::now();
    for i in 0..n {
        pods.kill9(i).await?;
    }
    for i in 0..n {
        pods.start(i).await?;
    }
    for i in 0..n {
        wait_ready(pods, i).await?;
    }
    Ok(vec![("kill -9 -> all ready".into(), start.elapsed())])
}
