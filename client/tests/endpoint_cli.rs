//! `conclavectl endpoint health|status|hashkv` and `snapshot save` against real `conclave` processes.
//!
//! Needs the `conclave` binary next to the test executable: run `cargo build --bins` first.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use conclave_testkit::{wait_for, Cluster};
use serde_json::Value;

use common::{ctl, dead_endpoint, json_lines, keys, u64_at};

mod common;

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value> {
    v.get(name).ok_or_else(|| anyhow!("no {name:?} in {v}"))
}

/// `endpoint health -o json` per endpoint: (endpoint, healthy).
async fn health(endpoints: &str) -> Result<(Option<i32>, Vec<(String, bool)>, String)> {
    let run = ctl(endpoints, &["endpoint", "health", "-o", "json"]).await?;
    let (code, out, err) = (run.code, run.stdout, run.stderr);
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
    let text = ctl(&endpoints, &["endpoint", "health"]).await?.ok()?;
    assert_eq!(text.lines().filter(|l| l.contains("is healthy")).count(), 3, "{text}");

    let out = ctl(&endpoints, &["endpoint", "status", "-o", "json"]).await?.ok()?;
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
    let text = ctl(&endpoints, &["endpoint", "status"]).await?.ok()?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_snapshot_save_and_endpoint_hashkv() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    let eps = cluster.endpoints().join(",");
    let eps = eps.as_str();
    for i in 0..20 {
        ctl(eps, &["put", &format!("k{i}"), "v"]).await?.ok()?;
    }
    let file = cluster.dir.join("backup.db");
    let file = file.to_str().ok_or_else(|| anyhow!("path"))?;
    let saved = ctl(eps, &["-o", "json", "snapshot", "save", file]).await?.json()?;
    assert_eq!(keys(&saved), ["crc32", "file", "index", "revision", "size", "took_ms"]);
    assert_eq!(u64_at(&saved, "/size")?, std::fs::metadata(file)?.len());
    let revision = u64_at(&saved, "/revision")?;
    assert!(revision >= 20, "{saved}");
    let text = ctl(eps, &["snapshot", "save", file]).await?.ok()?;
    assert!(text.starts_with(&format!("Snapshot saved at {file}: revision ")), "{text}");

    // hashkv at the snapshot revision: one object per endpoint, all equal.
    let out = ctl(eps, &["-o", "json", "endpoint", "hashkv", "--rev", &revision.to_string()]).await?.ok()?;
    let lines = json_lines(&out)?;
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        assert_eq!(keys(l), ["compact_revision", "endpoint", "hash", "revision"]);
        assert_eq!(u64_at(l, "/revision")?, revision);
        assert_eq!(l["hash"], lines[0]["hash"], "{out}");
    }
    // Without --rev: the lowest current revision; text output; a dead endpoint fails the run.
    let text = ctl(eps, &["endpoint", "hashkv"]).await?.ok()?;
    assert_eq!(text.lines().count(), 3, "{text}");
    let with_dead = format!("{eps},{}", dead_endpoint()?);
    let run = ctl(&with_dead, &["endpoint", "hashkv", "--rev", &revision.to_string()]).await?.failed(1)?;
    assert!(run.stderr.contains("did not answer"), "{run:?}");
    Ok(())
}
