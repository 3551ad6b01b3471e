//! End-to-end tests of `conclavectl` against real `conclave` processes.
//!
//! Needs the `conclave` binary next to the test executable: run `cargo build --bins` first.

use std::collections::BTreeSet;
use std::net::TcpListener;

use anyhow::{anyhow, ensure, Context, Result};
use conclave_testkit::Cluster;
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_conclavectl");

/// The outcome of one `conclavectl` run.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout of a successful run.
    fn ok(self) -> Result<String> {
        ensure!(self.code == Some(0), "conclavectl {:?} failed: {self:?}", self.args);
        Ok(self.stdout)
    }

    /// Stdout of a successful run, parsed as one JSON object.
    fn json(self) -> Result<Value> {
        let args = self.args.clone();
        let out = self.ok()?;
        serde_json::from_str(&out).with_context(|| format!("conclavectl {args:?} printed {out:?}"))
    }

    /// A failed run with the given exit code.
    fn failed(self, code: i32) -> Result<Self> {
        ensure!(self.code == Some(code), "conclavectl {:?}: expected exit code {code}: {self:?}", self.args);
        ensure!(!self.stderr.trim().is_empty(), "conclavectl {:?}: no message on stderr", self.args);
        Ok(self)
    }
}

/// Runs `conclavectl --endpoints <endpoints> <args>`.
async fn ctl(endpoints: &str, args: &[&str]) -> Result<Run> {
    let mut all = vec!["--endpoints".to_owned(), endpoints.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run(&all, None).await
}

async fn run(args: &[String], env_endpoints: Option<&str>) -> Result<Run> {
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

fn u64_at(v: &Value, path: &str) -> Result<u64> {
    v.pointer(path).and_then(Value::as_u64).ok_or_else(|| anyhow!("no integer at {path} in {v}"))
}

fn str_at<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.pointer(path).and_then(Value::as_str).ok_or_else(|| anyhow!("no string at {path} in {v}"))
}

/// An object's keys, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    k.sort_unstable();
    k
}

/// A loopback address nothing listens on.
fn dead_endpoint() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_a_cluster() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    let endpoints = cluster.endpoints();
    let eps = endpoints.join(",");
    let eps = eps.as_str();

    // put / get, text and JSON; --rev at a past revision.
    let first = ctl(eps, &["-o", "json", "put", "greeting", "v1"]).await?.json()?;
    assert_eq!(keys(&first), ["revision"]);
    let rev1 = u64_at(&first, "/revision")?;
    assert!(rev1 > 0);
    assert_eq!(ctl(eps, &["put", "greeting", "hello world"]).await?.ok()?, "OK\n");
    assert_eq!(ctl(eps, &["get", "greeting"]).await?.ok()?, "greeting\nhello world\n");
    let raw = ctl(eps, &["get", "greeting", "-o", "json"]).await?.ok()?;
    assert!(raw.starts_with(r#"{"revision":"#) && raw.ends_with("\"count\":1,\"more\":false}\n"), "{raw}");
    let got: Value = serde_json::from_str(&raw)?;
    assert_eq!(keys(&got), ["count", "kvs", "more", "revision"]);
    assert!(u64_at(&got, "/revision")? > rev1);
    assert_eq!(u64_at(&got, "/count")?, 1);
    assert_eq!(got["more"], Value::Bool(false));
    assert_eq!(str_at(&got, "/kvs/0/key")?, "greeting");
    assert_eq!(str_at(&got, "/kvs/0/value")?, "hello world");
    assert_eq!(u64_at(&got, "/kvs/0/create_revision")?, rev1);
    assert!(u64_at(&got, "/kvs/0/mod_revision")? > rev1);
    assert_eq!(u64_at(&got, "/kvs/0/version")?, 2);
    assert_eq!(ctl(eps, &["get", "greeting", "--rev", &rev1.to_string()]).await?.ok()?, "greeting\nv1\n");
    assert_eq!(ctl(eps, &["get", "no-such-key"]).await?.ok()?, "");
    assert_eq!(ctl(eps, &["get", "--serializable", "greeting", "--keys-only"]).await?.ok()?.lines().count(), 1);
    // The endpoints may also come from the environment.
    let from_env = run(&["get".into(), "greeting".into()], Some(eps)).await?.ok()?;
    assert_eq!(from_env, "greeting\nhello world\n");

    // Prefixes.
    for (k, v) in [("dir/a", "1"), ("dir/b", "2"), ("dir/c", "3"), ("dirt", "x")] {
        ctl(eps, &["put", k, v]).await?.ok()?;
    }
    assert_eq!(ctl(eps, &["get", "--prefix", "dir/"]).await?.ok()?, "dir/a\n1\ndir/b\n2\ndir/c\n3\n");
    assert_eq!(ctl(eps, &["get", "--prefix", "dir/", "--keys-only"]).await?.ok()?, "dir/a\ndir/b\ndir/c\n");
    assert_eq!(ctl(eps, &["get", "--prefix", "dir/", "--count-only"]).await?.ok()?, "3\n");
    let limited = ctl(eps, &["get", "--prefix", "dir/", "--limit", "2", "-o", "json"]).await?.json()?;
    assert_eq!(limited["kvs"].as_array().map(Vec::len), Some(2));
    assert_eq!(limited["more"], Value::Bool(true));
    assert_eq!(u64_at(&limited, "/count")?, 3);

    // del --prefix, text and JSON.
    assert_eq!(ctl(eps, &["del", "--prefix", "dir/"]).await?.ok()?, "3\n");
    assert_eq!(ctl(eps, &["get", "--prefix", "dir", "--keys-only"]).await?.ok()?, "dirt\n");
    let del = ctl(eps, &["-o", "json", "del", "dirt"]).await?.json()?;
    assert_eq!(keys(&del), ["deleted", "revision"]);
    assert_eq!(u64_at(&del, "/deleted")?, 1);
    assert!(u64_at(&del, "/revision")? > rev1);
    assert_eq!(ctl(eps, &["del", "dirt"]).await?.ok()?, "0\n");

    // Counters: incr prints the previous value as a bare number.
    assert_eq!(ctl(eps, &["counter", "incr", "visits"]).await?.ok()?, "0\n");
    assert_eq!(ctl(eps, &["counter", "incr", "visits"]).await?.ok()?, "1\n");
    let incr = ctl(eps, &["counter", "incr", "visits", "--by", "5", "-o", "json"]).await?.json()?;
    assert_eq!((u64_at(&incr, "/previous")?, u64_at(&incr, "/value")?), (2, 7));
    assert_eq!(ctl(eps, &["counter", "set", "visits", "100"]).await?.ok()?, "7\n");
    assert_eq!(ctl(eps, &["counter", "get", "visits"]).await?.ok()?, "100\n");
    let cget = ctl(eps, &["counter", "get", "visits", "-o", "json"]).await?.json()?;
    assert_eq!(u64_at(&cget, "/value")?, 100);
    assert_eq!(cget["exists"], Value::Bool(true));
    assert_eq!(ctl(eps, &["counter", "del", "visits"]).await?.ok()?, "1\n");
    assert_eq!(ctl(eps, &["counter", "get", "visits"]).await?.ok()?, "0\n");
    assert_eq!(ctl(eps, &["counter", "del", "visits"]).await?.ok()?, "0\n");

    // txn: the success branch, then the failure branch (text and JSON).
    let lock = ["txn", "--compare", "!exists(lock)", "--then", "put lock 'owner one'", "--then", "incr epoch"];
    let lock_else = ["--else", "get lock", "--else", "counter-get epoch"];
    let args: Vec<&str> = lock.iter().chain(&lock_else).copied().collect();
    assert_eq!(ctl(eps, &args).await?.ok()?, "SUCCESS\nOK\n0\n");
    assert_eq!(ctl(eps, &args).await?.ok()?, "FAILURE\nlock\nowner one\n1\n");
    let json_args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
    let failed = ctl(eps, &json_args).await?.json()?;
    assert_eq!(keys(&failed), ["responses", "revision", "succeeded"]);
    assert_eq!(failed["succeeded"], Value::Bool(false));
    assert!(u64_at(&failed, "/revision")? > rev1);
    assert_eq!(str_at(&failed, "/responses/0/op")?, "get");
    assert_eq!(str_at(&failed, "/responses/0/kvs/0/value")?, "owner one");
    assert_eq!(str_at(&failed, "/responses/1/op")?, "counter-get");
    assert_eq!(u64_at(&failed, "/responses/1/value")?, 1);
    let release = [
        "txn",
        "--compare",
        r#"value(lock) = "owner one""#,
        "--compare",
        "counter(epoch) = 1",
        "--compare",
        "version(lock) < 2",
        "--then",
        "del lock",
        "--then",
        "counter-set epoch 10",
        "-o",
        "json",
    ];
    let released = ctl(eps, &release).await?.json()?;
    assert_eq!(released["succeeded"], Value::Bool(true));
    assert_eq!(str_at(&released, "/responses/0/op")?, "del");
    assert_eq!(u64_at(&released, "/responses/0/deleted")?, 1);
    assert_eq!(u64_at(&released, "/responses/1/previous")?, 1);
    assert_eq!(ctl(eps, &["counter", "get", "epoch"]).await?.ok()?, "10\n");
    // A compare that does not hold and no --else: FAILURE and nothing else.
    assert_eq!(ctl(eps, &["txn", "--compare", "exists(lock)", "--then", "del lock"]).await?.ok()?, "FAILURE\n");

    // status: one JSON line per endpoint, in order, agreeing on the leader.
    let status = ctl(eps, &["status", "-o", "json"]).await?.ok()?;
    let lines: Vec<Value> = status.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3, "{status}");
    let mut leaders = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(str_at(line, "/endpoint")?, endpoints[i]);
        assert_eq!(u64_at(line, "/node_id")?, i as u64 + 1);
        for k in ["term", "applied_index", "revision"] {
            assert!(u64_at(line, &format!("/{k}"))? > 0, "{k} in {line}");
        }
        leaders.insert(u64_at(line, "/leader_id")?);
    }
    assert_eq!(leaders.len(), 1, "{status}");
    let leader = leaders.first().copied().unwrap_or_default();
    assert!((1..=3).contains(&leader), "{status}");
    let table = ctl(eps, &["status"]).await?.ok()?;
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.starts_with("ENDPOINT"), "{table}");

    // member list.
    let members = ctl(eps, &["member", "list", "-o", "json"]).await?.json()?;
    let list = members["members"].as_array().ok_or_else(|| anyhow!("no members in {members}"))?;
    assert_eq!(list.len(), 3, "{members}");
    let ids: BTreeSet<u64> = list.iter().filter_map(|m| m["id"].as_u64()).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    for m in list {
        let id = u64_at(m, "/id")?;
        assert_eq!(str_at(m, "/client_addr")?, cluster.node(id).client_addr);
        assert_eq!(str_at(m, "/peer_addr")?, cluster.node(id).peer_addr);
        assert_eq!(m["voter"], Value::Bool(true));
        assert_eq!(m["leader"], Value::Bool(id == leader), "{members}");
    }
    let table = ctl(eps, &["member", "list"]).await?.ok()?;
    assert_eq!(table.lines().count(), 4, "{table}");
    assert_eq!(table.lines().filter(|l| l.ends_with('*')).count(), 1, "{table}");

    // Bad input: the server's INVALID_ARGUMENT reaches stderr, exit code 1.
    let empty = ctl(eps, &["put", "", "v"]).await?.failed(1)?;
    assert!(empty.stderr.contains("key") && empty.stderr.contains("InvalidArgument"), "{empty:?}");
    assert!(empty.stdout.is_empty(), "{empty:?}");
    let empty = ctl(eps, &["counter", "incr", ""]).await?.failed(1)?;
    assert!(empty.stderr.contains("name"), "{empty:?}");
    let future = ctl(eps, &["get", "greeting", "--rev", "1000000"]).await?.failed(1)?;
    assert!(future.stderr.contains("OutOfRange"), "{future:?}");
    // Malformed txn: a usage error, nothing sent.
    let bad = ctl(eps, &["txn", "--compare", "value(k) >= 1", "--then", "put k v"]).await?.failed(2)?;
    assert!(bad.stderr.contains("unsupported operator"), "{bad:?}");

    // status with one dead endpoint: the others are printed, the dead one reported, exit 1.
    let dead = dead_endpoint()?;
    let with_dead = format!("{eps},{dead}");
    let partial = ctl(&with_dead, &["status", "-o", "json"]).await?.failed(1)?;
    assert_eq!(partial.stdout.lines().count(), 3, "{partial:?}");
    assert!(partial.stderr.contains(&dead), "{partial:?}");

    assert!(cluster.panics().is_empty(), "a node panicked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails() -> Result<()> {
    let dead = dead_endpoint()?;
    let (get, put, incr, status) = tokio::try_join!(
        ctl(&dead, &["--timeout", "1", "get", "k"]),
        ctl(&dead, &["--timeout", "1", "put", "k", "v"]),
        ctl(&dead, &["--timeout", "1", "counter", "incr", "c"]),
        ctl(&dead, &["status"]),
    )?;
    let get = get.failed(1)?;
    assert!(get.stderr.to_lowercase().contains("unavailable"), "{get:?}");
    put.failed(1)?;
    incr.failed(1)?;
    let status = status.failed(1)?;
    assert!(status.stderr.contains(&dead), "{status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() -> Result<()> {
    let dead = dead_endpoint()?;
    for args in [
        &["get"][..],
        &["frobnicate"],
        &["-o", "yaml", "get", "k"],
        &["--timeout", "-1", "get", "k"],
        &["counter", "set", "c", "minus-one"],
        &["txn", "--then", "set k v"],
        &["txn", "--compare", "value(k = 1"],
    ] {
        ctl(&dead, args).await?.failed(2)?;
    }
    Ok(())
}
