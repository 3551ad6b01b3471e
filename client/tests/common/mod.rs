//! Helpers shared by the `conclavectl` end-to-end tests: run the real binary, read its output.
#![allow(dead_code)] // each test file uses a part

use std::net::TcpListener;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;

pub const CTL: &str = env!("CARGO_BIN_EXE_conclavectl");

/// The outcome of one `conclavectl` run.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout of a successful run.
    pub fn ok(self) -> Result<String> {
        ensure!(self.code == Some(0), "conclavectl {:?} failed: {self:?}", self.args);
        Ok(self.stdout)
    }

    /// Stdout of a successful run, parsed as one JSON object.
    pub fn json(self) -> Result<Value> {
        let args = self.args.clone();
        let out = self.ok()?;
        serde_json::from_str(&out).with_context(|| format!("conclavectl {args:?} printed {out:?}"))
    }

    /// A failed run with the given exit code.
    pub fn failed(self, code: i32) -> Result<Self> {
        ensure!(self.code == Some(code), "conclavectl {:?}: expected exit code {code}: {self:?}", self.args);
        ensure!(!self.stderr.trim().is_empty(), "conclavectl {:?}: no message on stderr", self.args);
        Ok(self)
    }
}

/// Runs `conclavectl --endpoints <endpoints> <args>`.
pub async fn ctl(endpoints: &str, args: &[&str]) -> Result<Run> {
    let mut all = vec!["--endpoints".to_owned(), endpoints.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run(&all, None).await
}

pub async fn run(args: &[String], env_endpoints: Option<&str>) -> Result<Run> {
    let mut cmd = tokio::process::Command::new(CTL);
    cmd.args(args).env_remove("CONCLAVE_ENDPOINTS").kill_on_drop(true);
    if let Some(e) = env_endpoints {
        cmd.env("CONCLAVE_ENDPOINTS", e);
    }
    let out = cmd.output().await.with_context(|| format!("running {CTL}"))?;
    Ok(Run {
        args: args.to_vec(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

pub fn u64_at(v: &Value, path: &str) -> Result<u64> {
    v.pointer(path).and_then(Value::as_u64).ok_or_else(|| anyhow!("no integer at {path} in {v}"))
}

pub fn str_at<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.pointer(path).and_then(Value::as_str).ok_or_else(|| anyhow!("no string at {path} in {v}"))
}

/// An object's keys, sorted.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    k.sort_unstable();
    k
}

/// One JSON object per line.
pub fn json_lines(out: &str) -> Result<Vec<Value>> {
    out.lines().map(|l| serde_json::from_str(l).with_context(|| format!("line {l:?}"))).collect()
}

/// A loopback address nothing listens on.
pub fn dead_endpoint() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}
