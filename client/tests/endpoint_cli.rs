//! `conclavectl endpoint health` and `endpoint status` against real `conclave` processes.
//!
//! Needs the `conclave` binary next to the test executable: run `cargo build --bins` first.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use conclave_testkit::{wait_for, Cluster};
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_conclavectl");

/// Runs `conclavectl --endpoints <endpoints> <args>`: exit code, stdout, stderr.
async fn ctl(endpoints: &str, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = tokio::process::Command::new(CTL)
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("CONCLAVE_ENDPOINTS")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {CTL}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// One JSON object per line.
fn json_lines(out: &str) -> Result<Vec<Value>> {
    out.lines().map(|l| serde_json::from_str(l).with_context(|| format!("line {l:?}"))).collect()
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value> {
    v.get(name).ok_or_else(|| anyhow!("no {name:?} in {v}"))
}

/// `endpoint health -o json` per endpoint: (endpoint, healthy).
async fn health(endpoints: &str) -> Result<(Option<i32>, Vec<(String, bool)>, String)> {
    let (code, out, err) = ctl(endpoints, &["endpoint", "health", "-o", "json"]).await?;
    let mut rows = Vec::new();
    for v in json_lines(&out)? {
        let endpoint = field(&v, "endpoint")?.as_str().ok_or_else(|| anyhow!("endpoint in {v}"))?.to_owned();
        let healthy = field(&v, "health")?.as_bool().ok_or_else(|| anyhow!("health in {v}"))?;
        field(&v, "took")?;
        if !healthy {
            ensure!(!field(&v, "error")?.as_str().unwrap_or("").is_empty(), "an unhealthy endpoint says why: {v}");
        }
        rows.push((endpoint, healthy));
    }
    Ok((code, rows, err))
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_health_and_status_report_every_endpoint() -> Result<()> {
    let mut c = Cluster::start(3).await?;
    let endpoints = c.endpoints().join(",");
    c.client().await?.put("warm", "up").await?;

    // Every member healthy (readiness needs a leader heard from and a confirmed commit index).
    let (code, rows, err) = wait_for("every endpoint healthy", Duration::from_secs(20), || async {
        let r = health(&endpoints).await.ok()?;
        (r.0 == Some(0)).then_some(r)
    })
    .await?;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        rows.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        c.endpoints(),
        "one line per endpoint, in order"
    );
    assert!(rows.iter().all(|(_, h)| *h));
    let (code, text, _) = ctl(&endpoints, &["endpoint", "health"]).await?;
    assert_eq!(code, Some(0));
    assert_eq!(text.lines().filter(|l| l.contains("is healthy")).count(), 3, "{text}");

    let (code, out, err) = ctl(&endpoints, &["endpoint", "status", "-o", "json"]).await?;
    assert_eq!(code, Some(0), "{err}");
    let status = json_lines(&out)?;
    assert_eq!(status.len(), 3, "{out}");
    let leader = field(&status[0], "leader")?.as_u64().ok_or_else(|| anyhow!("leader"))?;
    let mut ids = Vec::new();
    for s in &status {
        for name in [
            "endpoint",
            "id",
            "version",
            "revision",
            "raft_term",
            "raft_index",
            "raft_applied_index",
            "leader",
            "is_learner",
        ] {
            field(s, name)?;
        }
        assert_eq!(field(s, "leader")?.as_u64(), Some(leader), "every member names the same leader: {out}");
        assert_eq!(field(s, "version")?.as_str(), Some(env!("CARGO_PKG_VERSION")), "the server's version");
        assert_eq!(field(s, "is_learner")?.as_bool(), Some(false));
        assert!(field(s, "raft_applied_index")?.as_u64() >= Some(1));
        ids.push(field(s, "id")?.as_u64().ok_or_else(|| anyhow!("id"))?);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    let (code, text, _) = ctl(&endpoints, &["endpoint", "status"]).await?;
    assert_eq!(code, Some(0));
    assert!(text.starts_with("ENDPOINT") && text.lines().count() == 4, "a header and three rows: {text}");

    // A member cut off from the others (both paused) is unhealthy: non-zero exit, its line says so.
    let survivor = c.node(1).client_addr.clone();
    c.pause(2)?;
    c.pause(3)?;
    let result = wait_for("node 1 unhealthy", Duration::from_secs(15), || async {
        let r = health(&survivor).await.ok()?;
        (r.0 != Some(0)).then_some(r)
    })
    .await;
    c.resume(2)?;
    c.resume(3)?;
    let (code, rows, err) = result?;
    assert_eq!(code, Some(1), "exit code 1 when an endpoint is unhealthy: {err}");
    assert_eq!(rows, [(survivor.clone(), false)]);
    // A stopped member does not answer at all: unhealthy too, the others are still reported.
    c.kill(3)?;
    let (code, rows, _) = health(&endpoints).await?;
    assert_eq!(code, Some(1));
    assert_eq!(rows.len(), 3);
    assert!(!rows[2].1, "the killed member is unhealthy: {rows:?}");
    Ok(())
}
