//! End-to-end tests of `conclavectl` against real `conclave` processes.
//!
//! Needs the `conclave` binary next to the test executable: run `cargo build --bins` first.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use conclave_testkit::{wait_for, Cluster, ClusterOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};
use tokio::time::Instant;

use common::{ctl, dead_endpoint, keys, run, str_at, u64_at, CTL};

mod common;

/// A long-running `conclavectl` (`watch`, `session open --keepalive`) whose stdout is read line
/// by line. Killed when dropped.
struct Running {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    args: Vec<String>,
}

impl Running {
    /// Starts `conclavectl --endpoints <endpoints> <args>`.
    fn spawn(endpoints: &str, args: &[&str]) -> Result<Self> {
        let mut all = vec!["--endpoints".to_owned(), endpoints.to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let mut child = Command::new(CTL)
            .args(&all)
            .env_remove("CONCLAVE_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {CTL}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(Self { child, lines: BufReader::new(stdout).lines(), args: all })
    }

    /// The next line of stdout (within 10 s).
    async fn line(&mut self) -> Result<String> {
        match tokio::time::timeout(Duration::from_secs(10), self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => {
                let stderr = self.stderr().await;
                Err(anyhow!("conclavectl {:?} closed stdout: {stderr}", self.args))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(anyhow!("conclavectl {:?} printed no line in 10 s", self.args)),
        }
    }

    /// The next line of stdout as JSON.
    async fn json(&mut self) -> Result<Value> {
        let line = self.line().await?;
        serde_json::from_str(&line).with_context(|| format!("conclavectl {:?} printed {line:?}", self.args))
    }

    /// Sends `signal`.
    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.child.id().ok_or_else(|| anyhow!("conclavectl {:?} already exited", self.args))?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Waits (up to 10 s) for the exit; returns the exit code and stderr.
    async fn exit(&mut self) -> Result<(Option<i32>, String)> {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .map_err(|_| anyhow!("conclavectl {:?} did not exit in 10 s", self.args))??;
        Ok((status.code(), self.stderr().await))
    }

    /// Whatever it wrote to stderr so far (all of it once it exited).
    async fn stderr(&mut self) -> String {
        let mut buf = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), err.read_to_string(&mut buf)).await;
        }
        buf
    }
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
    // A serializable read may be served by a member that has not applied the put yet (each
    // conclavectl run is a new client, with no revision seen): it shows the key eventually.
    wait_for("a serializable read showing the key", Duration::from_secs(10), || async {
        let out = ctl(eps, &["get", "--serializable", "greeting", "--keys-only"]).await.ok()?.ok().ok()?;
        (out.lines().count() == 1).then_some(())
    })
    .await?;
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
    assert_eq!(table.lines().filter(|l| l.split_whitespace().any(|c| c == "*")).count(), 1, "{table}");

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

/// `lease get NAME -o json`.
async fn lease_json(eps: &str, name: &str) -> Result<Value> {
    ctl(eps, &["lease", "get", name, "-o", "json"]).await?.json()
}

/// The ids in `session list -o json`.
async fn session_ids(eps: &str) -> Result<BTreeSet<u64>> {
    let list = ctl(eps, &["session", "list", "-o", "json"]).await?.json()?;
    let sessions = list["sessions"].as_array().ok_or_else(|| anyhow!("no sessions in {list}"))?;
    Ok(sessions.iter().filter_map(|s| s["session_id"].as_u64()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sessions_and_leases() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    let eps = cluster.endpoints().join(",");
    let eps = eps.as_str();

    // A TTL out of the cluster's range: the server's message states the range, exit 1.
    let short = ctl(eps, &["session", "open", "0.1"]).await?.failed(1)?;
    assert!(short.stderr.contains("out of range") && short.stderr.contains("ttl"), "{short:?}");
    assert!(short.stdout.is_empty(), "{short:?}");

    // open -> list -> put --session -> info -> close -> the key is gone.
    let opened = ctl(eps, &["session", "open", "30", "-o", "json"]).await?.json()?;
    assert_eq!(keys(&opened), ["session_id", "ttl_ms"]);
    assert_eq!(u64_at(&opened, "/ttl_ms")?, 30_000);
    let sid = u64_at(&opened, "/session_id")?;
    let sid_s = sid.to_string();
    let list = ctl(eps, &["session", "list", "-o", "json"]).await?.json()?;
    assert_eq!(keys(&list), ["sessions"]);
    let mine = list["sessions"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["session_id"].as_u64() == Some(sid)))
        .ok_or_else(|| anyhow!("session {sid} not in {list}"))?;
    assert_eq!(keys(mine), ["keys", "leases", "remaining_ms", "session_id", "ttl_ms"]);
    assert_eq!(u64_at(mine, "/ttl_ms")?, 30_000);
    assert!(u64_at(mine, "/remaining_ms")? <= 30_000, "{mine}");
    assert_eq!(mine["keys"], Value::Array(vec![]));
    assert_eq!(ctl(eps, &["put", "eph/k", "v", "--session", &sid_s]).await?.ok()?, "OK\n");
    assert_eq!(ctl(eps, &["get", "eph/k"]).await?.ok()?, "eph/k\nv\n");
    let info = ctl(eps, &["session", "info", &sid_s, "-o", "json"]).await?.json()?;
    assert_eq!(keys(&info), ["keys", "leases", "remaining_ms", "session_id", "ttl_ms"]);
    assert_eq!(info["keys"], serde_json::json!(["eph/k"]));
    let table = ctl(eps, &["session", "list"]).await?.ok()?;
    assert!(table.starts_with("ID"), "{table}");
    let row = table.lines().find(|l| l.split_whitespace().next() == Some(sid_s.as_str())).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells.get(1), cells.get(3), cells.get(4)), (Some(&"30s"), Some(&"1"), Some(&"-")), "{table}");
    let closed = ctl(eps, &["session", "close", &sid_s, "-o", "json"]).await?.json()?;
    assert_eq!(keys(&closed), ["deleted_keys", "released_leases", "revision"]);
    assert_eq!(u64_at(&closed, "/deleted_keys")?, 1);
    assert_eq!(closed["released_leases"], Value::Array(vec![]));
    assert!(u64_at(&closed, "/revision")? > 0);
    assert_eq!(ctl(eps, &["get", "eph/k"]).await?.ok()?, "");
    assert!(!session_ids(eps).await?.contains(&sid));
    let gone = ctl(eps, &["session", "close", &sid_s]).await?.failed(1)?;
    assert!(gone.stderr.contains("NotFound"), "{gone:?}");
    ctl(eps, &["put", "eph/k", "v", "--session", &sid_s]).await?.failed(1)?;
    ctl(eps, &["session", "info", &sid_s]).await?.failed(1)?;
    // Fractional TTLs.
    let frac = ctl(eps, &["session", "open", "2.5", "-o", "json"]).await?.json()?;
    assert_eq!(u64_at(&frac, "/ttl_ms")?, 2_500);
    let frac_id = u64_at(&frac, "/session_id")?.to_string();
    assert_eq!(ctl(eps, &["session", "close", &frac_id]).await?.ok()?, "0\n");

    // A session kept alive by `session open --keepalive` holds a lease.
    let mut keeper = Running::spawn(eps, &["session", "open", "2", "--keepalive"])?;
    let opened_at = Instant::now();
    let holder_s = keeper.line().await?;
    let holder: u64 = holder_s.parse().with_context(|| format!("session id {holder_s:?}"))?;
    let acquire = ["lease", "acquire", "jobs/leader", "--session", &holder_s, "--info", "worker-1"];
    let token_s = ctl(eps, &acquire).await?.ok()?;
    let token: u64 = token_s.trim().parse().with_context(|| format!("token {token_s:?}"))?;
    let got = lease_json(eps, "jobs/leader").await?;
    assert_eq!(keys(&got), ["held", "holder", "holder_info", "revision", "token", "transitions"]);
    assert_eq!(got["held"], Value::Bool(true));
    assert_eq!(u64_at(&got, "/holder")?, holder);
    assert_eq!(str_at(&got, "/holder_info")?, "worker-1");
    assert_eq!((u64_at(&got, "/token")?, u64_at(&got, "/revision")?), (token, token));
    assert_eq!(u64_at(&got, "/transitions")?, 0);
    let text = ctl(eps, &["lease", "get", "jobs/leader"]).await?.ok()?;
    assert!(text.starts_with(&format!("held by session {holder} (token {token},")), "{text}");
    // Acquiring again with the same session: the same grant.
    let again: Vec<&str> = acquire.iter().copied().chain(["-o", "json"]).collect();
    let again = ctl(eps, &again).await?.json()?;
    assert_eq!(again["granted"], Value::Bool(true));
    assert_eq!((u64_at(&again, "/token")?, u64_at(&again, "/holder")?), (token, holder));

    // Another session cannot take it: exit 1, the holder on stderr (and in JSON on stdout).
    let other_s = ctl(eps, &["session", "open", "30"]).await?.ok()?.trim().to_owned();
    let other: u64 = other_s.parse()?;
    let refused = ctl(eps, &["lease", "acquire", "jobs/leader", "--session", &other_s]).await?.failed(1)?;
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert_eq!(refused.stderr.trim(), format!("held by session {holder} (token {token})"));
    let refused =
        ctl(eps, &["lease", "acquire", "jobs/leader", "--session", &other_s, "-o", "json"]).await?.failed(1)?;
    let refused: Value = serde_json::from_str(&refused.stdout)?;
    assert_eq!(refused["granted"], Value::Bool(false));
    assert_eq!((u64_at(&refused, "/token")?, u64_at(&refused, "/holder")?), (token, holder));

    // Releasing with a wrong token fails (FAILED_PRECONDITION) and changes nothing.
    let wrong = (token + 1).to_string();
    let wrong = ctl(eps, &["lease", "release", "jobs/leader", "--token", &wrong]).await?.failed(1)?;
    assert!(wrong.stderr.contains("FailedPrecondition") && wrong.stderr.contains("not held"), "{wrong:?}");
    // The keep-alives carry the session past its TTL: still held a TTL and more after opening.
    loop {
        let got = lease_json(eps, "jobs/leader").await?;
        assert_eq!((got["held"].as_bool(), got["holder"].as_u64()), (Some(true), Some(holder)), "{got}");
        if opened_at.elapsed() > Duration::from_millis(3_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 the keeper: the session expires and the lease is freed within a bound.
    keeper.signal(Signal::SIGKILL)?;
    let (code, _) = keeper.exit().await?;
    assert_eq!(code, None, "killed by a signal");
    wait_for("the lease of the killed keeper to be freed", Duration::from_secs(10), || async {
        lease_json(eps, "jobs/leader").await.ok().filter(|g| g["held"] == Value::Bool(false))
    })
    .await?;
    let free = lease_json(eps, "jobs/leader").await?;
    assert_eq!((&free["holder"], &free["holder_info"]), (&Value::Null, &Value::Null), "{free}");
    assert!(!session_ids(eps).await?.contains(&holder));
    // Now the other session gets it, with a greater token.
    let token2: u64 =
        ctl(eps, &["lease", "acquire", "jobs/leader", "--session", &other_s]).await?.ok()?.trim().parse()?;
    assert!(token2 > token, "{token2} <= {token}");
    let got = lease_json(eps, "jobs/leader").await?;
    assert_eq!((u64_at(&got, "/holder")?, u64_at(&got, "/transitions")?), (other, 1));
    assert_eq!(got["holder_info"], Value::String(String::new()));
    let release = ["lease", "release", "jobs/leader", "--token", &token2.to_string()];
    assert_eq!(ctl(eps, &release).await?.ok()?, "OK\n");
    assert_eq!(lease_json(eps, "jobs/leader").await?["held"], Value::Bool(false));
    assert!(ctl(eps, &["lease", "get", "jobs/leader"]).await?.ok()?.starts_with("free"));
    assert_eq!(ctl(eps, &["session", "close", &other_s]).await?.ok()?, "0\n");

    // SIGTERM closes a kept-alive session at once (its 30 s TTL is not waited for); exit 0.
    let mut graceful = Running::spawn(eps, &["session", "open", "30", "--keepalive", "-o", "json"])?;
    let first = graceful.json().await?;
    assert_eq!(keys(&first), ["session_id", "ttl_ms"]);
    let gid = u64_at(&first, "/session_id")?.to_string();
    ctl(eps, &["put", "eph/g", "v", "--session", &gid]).await?.ok()?;
    graceful.signal(Signal::SIGTERM)?;
    let (code, stderr) = graceful.exit().await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(ctl(eps, &["get", "eph/g"]).await?.ok()?, "");

    assert!(cluster.panics().is_empty(), "a node panicked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch() -> Result<()> {
    // A short history, so that the test can compact it.
    let opts = ClusterOptions { extra_args: vec!["--history-revisions".into(), "20".into()], ..Default::default() };
    let mut cluster = Cluster::start_with(opts).await?;
    let endpoints = cluster.endpoints();
    let eps = endpoints.join(",");
    let eps = eps.as_str();
    let put = |k: &'static str, v: &'static str| async move {
        u64_at(&ctl(eps, &["-o", "json", "put", k, v]).await?.json()?, "/revision")
    };

    // Watch from the next revision: nothing can be missed however late the watch starts.
    let start = put("other", "x").await? + 1;
    let mut watch = Running::spawn(eps, &["watch", "w/", "--prefix", "-o", "json", "--rev", &start.to_string()])?;
    let mut revs = vec![put("w/a", "1").await?, put("w/b", "2").await?];
    put("outside", "x").await?;
    revs.push(put("w/a", "3").await?);
    let del = ctl(eps, &["-o", "json", "del", "w/a"]).await?.json()?;
    revs.push(u64_at(&del, "/revision")?);
    let expected = [("put", "w/a", "1"), ("put", "w/b", "2"), ("put", "w/a", "3"), ("delete", "w/a", "")];
    let mut last = 0;
    for ((kind, key, value), rev) in expected.into_iter().zip(&revs) {
        let e = watch.json().await?;
        assert_eq!(keys(&e), ["key", "mod_revision", "type", "value"], "{e}");
        assert_eq!((str_at(&e, "/type")?, str_at(&e, "/key")?, str_at(&e, "/value")?), (kind, key, value), "{e}");
        let mod_revision = u64_at(&e, "/mod_revision")?;
        assert_eq!(mod_revision, *rev, "{e}");
        assert!(mod_revision > last, "{e}");
        last = mod_revision;
    }

    // Text with --prev-kv, one key, replayed from the start revision.
    let mut text = Running::spawn(eps, &["watch", "w/a", "--rev", &start.to_string(), "--prev-kv"])?;
    for want in [
        format!("[rev {}] PUT w/a 1", revs[0]),
        format!("[rev {}] PUT w/a 3 (prev: 1)", revs[2]),
        format!("[rev {}] DELETE w/a (prev: 3)", revs[3]),
    ] {
        assert_eq!(text.line().await?, want);
    }
    drop(text);

    // The member of the first endpoint dies (the watch started there unless it already knew the
    // leader): the watch resumes on another member without losing or repeating an event.
    cluster.kill(1)?;
    let rest = endpoints[1..].join(",");
    let rev = u64_at(&ctl(&rest, &["-o", "json", "put", "w/c", "4"]).await?.json()?, "/revision")?;
    let e = watch.json().await?;
    assert_eq!((str_at(&e, "/key")?, str_at(&e, "/value")?, u64_at(&e, "/mod_revision")?), ("w/c", "4", rev), "{e}");
    drop(watch);

    // Compacted history: an error naming the oldest revision, exit 1.
    let client = cluster.client_of(2).await?;
    for i in 0..40 {
        client.put("filler", i.to_string()).await?;
    }
    // Every running member compacts at the same revision; wait until both did.
    let cluster = &cluster;
    let oldest = wait_for("both running members to compact past the start", Duration::from_secs(10), || async move {
        let (a, b) = (cluster.status(2).await.ok()?, cluster.status(3).await.ok()?);
        (a.compact_revision == b.compact_revision && a.compact_revision > start).then_some(a.compact_revision)
    })
    .await?;
    let mut compacted = Running::spawn(&rest, &["watch", "w/", "--prefix", "--rev", &start.to_string()])?;
    let (code, stderr) = compacted.exit().await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("compacted") && stderr.contains(&format!("is {oldest} ")), "{stderr}");

    assert!(cluster.panics().is_empty(), "a node panicked");
    Ok(())
}

/// `user` and `role` commands under `--auth`, and `--user NAME:PASSWORD` / `--password`.
#[tokio::test(flavor = "multi_thread")]
async fn users_roles_and_permissions_from_the_command_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pw = dir.path().join("root.pw");
    std::fs::write(&pw, "root-pw\n")?;
    let extra_args = vec!["--auth".into(), "--root-password-file".into(), pw.display().to_string()];
    let cluster = Cluster::start_with(ClusterOptions { nodes: 1, extra_args, ..Default::default() }).await?;
    let ep = cluster.endpoints().join(",");
    let root = |args: &[&str]| {
        let mut all = vec!["--user", "root", "--password", "root-pw"];
        all.extend_from_slice(args);
        let ep = ep.clone();
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        async move { ctl(&ep, &all.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    wait_for("the root user", Duration::from_secs(20), || async { root(&["user", "list"]).await.ok()?.ok().ok() })
        .await?;
    // `user add NAME` with the global --user given: the positional is not taken for it.
    root(&["user", "add", "alice", "--new-password", "apw"]).await?.ok()?;
    root(&["role", "add", "a"]).await?.ok()?;
    root(&["role", "grant-permission", "a", "readwrite", "/a/", "--prefix"]).await?.ok()?;
    root(&["role", "grant-permission", "a", "read", "/r"]).await?.ok()?;
    root(&["user", "grant-role", "alice", "a"]).await?.ok()?;
    assert_eq!(root(&["user", "list", "-o", "json"]).await?.json()?["users"], serde_json::json!(["alice", "root"]));
    assert_eq!(root(&["user", "get", "alice", "-o", "json"]).await?.json()?["roles"], serde_json::json!(["a"]));
    let perms = root(&["role", "get", "a", "-o", "json"]).await?.json()?;
    assert_eq!(str_at(&perms, "/perms/0/perm")?, "readwrite");
    assert_eq!(str_at(&perms, "/perms/1/key")?, "/r");
    assert_eq!(root(&["role", "list"]).await?.ok()?.trim(), "a");

    ctl(&ep, &["--user", "alice:apw", "put", "/a/k", "v"]).await?.ok()?;
    let denied = ctl(&ep, &["--user", "alice:apw", "get", "/b", "--prefix"]).await?.failed(1)?;
    assert!(denied.stderr.contains("PermissionDenied") && denied.stderr.contains("alice"), "{denied:?}");
    let wrong = ctl(&ep, &["--user", "alice:nope", "get", "/a/k"]).await?.failed(1)?;
    assert!(wrong.stderr.contains("Unauthenticated"), "{wrong:?}");
    ctl(&ep, &["get", "/a/k"]).await?.failed(1)?;
    let no_password = ctl(&ep, &["--user", "alice", "get", "/a/k"]).await?.failed(1)?;
    assert!(no_password.stderr.contains("needs a password"), "{no_password:?}");

    root(&["user", "passwd", "alice", "--new-password", "apw2"]).await?.ok()?;
    ctl(&ep, &["--user", "alice:apw", "get", "/a/k"]).await?.failed(1)?;
    ctl(&ep, &["--user", "alice:apw2", "get", "/a/k"]).await?.ok()?;
    root(&["role", "revoke-permission", "a", "/a/", "--prefix"]).await?.ok()?;
    ctl(&ep, &["--user", "alice:apw2", "get", "/a/k"]).await?.failed(1)?;
    root(&["user", "revoke-role", "alice", "a"]).await?.ok()?;
    root(&["role", "delete", "a"]).await?.ok()?;
    root(&["user", "delete", "alice"]).await?.ok()?;
    root(&["user", "delete", "alice"]).await?.failed(1)?;
    Ok(())
}
