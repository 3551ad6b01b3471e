//! Job-manager recipes against a real cluster, with real job-manager processes
//! (`client/examples/job_manager.rs`) killed and paused. `cargo test` builds the examples first;
//! when running this file alone after changing the library, build them too (`cargo build --examples`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_client::recipes::state_handle_store::StateHandleStore;
use conclave_client::recipes::{
    cleanup, CheckpointIdCounter, JobResultStore, JobStatus, LeaderElection, LeaderRetrieval, LeadershipEvent,
    RevokePolicy,
};
use conclave_client::{Client, ClientConfig, Error, Session};
use conclave_testkit::Cluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const TTL_SECS: f64 = 2.0;
/// Documented failover bound: TTL + server expiry bound (1 s) + election/acquire margin (1.5 s).
const FAILOVER_BOUND: Duration = Duration::from_millis(4_500);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let debug = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    debug.join("examples").join(name)
}

/// A running `job_manager` and the JSON events it printed.
struct JobManager {
    child: Child,
    events: mpsc::UnboundedReceiver<(Instant, Value)>,
    seen: Vec<(Instant, Value)>,
}

impl JobManager {
    fn start(c: &Cluster, cluster_id: &str, address: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(example("job_manager"))
            .args(["--endpoints", &c.endpoints().join(","), "--cluster-id", cluster_id, "--address", address])
            .args(["--ttl", &TTL_SECS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send((Instant::now(), v));
                }
            }
        });
        Ok(Self { child, events, seen: Vec::new() })
    }

    /// Waits for an event matching `pred`, looking at events not yet consumed by a wait.
    async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Instant, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.seen.push(ev.clone());
                    if pred(&ev.1) {
                        return Ok(ev);
                    }
                }
                Ok(None) => anyhow::bail!("job manager exited while waiting for {what}"),
                Err(_) => anyhow::bail!(
                    "timed out waiting for {what}; saw {:?}",
                    self.seen.iter().map(|e| &e.1).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Drains what was printed so far.
    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push(ev);
        }
    }

    fn ids(&self) -> Vec<u64> {
        self.seen.iter().filter(|(_, v)| v["event"] == "checkpoint").filter_map(|(_, v)| v["id"].as_u64()).collect()
    }

    fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        let pid = self.child.id().ok_or_else(|| anyhow::anyhow!("not running"))?;
        kill(Pid::from_raw(pid as i32), sig)?;
        Ok(())
    }
}

fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event
}

fn assert_unique_increasing(ids: &[u64], who: &str) {
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{who}'s checkpoint ids not strictly increasing: {ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn job_manager_failover_continues_checkpoint_ids_above_the_dead_leader() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut a = JobManager::start(&c, "failover", "jm-a:1")?;
    a.wait_for("A granted", Duration::from_secs(15), is("granted")).await?;
    let mut b = JobManager::start(&c, "failover", "jm-b:1")?;
    for _ in 0..10 {
        a.wait_for("A checkpoints", Duration::from_secs(10), is("checkpoint")).await?;
    }
    a.signal(Signal::SIGKILL)?;
    let killed = Instant::now();
    a.drain();
    let a_ids = a.ids();
    let (granted_at, _) = b.wait_for("B granted", Duration::from_secs(15), is("granted")).await?;
    let took = granted_at.duration_since(killed);
    eprintln!("job-manager failover took {took:?}");
    assert!(took <= FAILOVER_BOUND, "B granted {took:?} after A's death (bound {FAILOVER_BOUND:?})");
    for _ in 0..5 {
        b.wait_for("B checkpoints", Duration::from_secs(10), is("checkpoint")).await?;
    }
    let b_ids = b.ids();
    assert_unique_increasing(&a_ids, "A");
    assert_unique_increasing(&b_ids, "B");
    let a_max = a_ids.iter().max().copied().unwrap_or(0);
    assert!(b_ids[0] > a_max, "B continued at {} but A had acknowledged {a_max}", b_ids[0]);
    assert!(a_ids[0] == 1, "the first checkpoint id is 1, got {}", a_ids[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_leader_is_fenced_after_a_pause_past_its_ttl() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut a = JobManager::start(&c, "stale", "jm-a:1")?;
    a.wait_for("A granted", Duration::from_secs(15), is("granted")).await?;
    let mut b = JobManager::start(&c, "stale", "jm-b:1")?;
    a.wait_for("A checkpoints", Duration::from_secs(10), is("checkpoint")).await?;
    a.signal(Signal::SIGSTOP)?;
    b.wait_for("B granted while A is frozen", Duration::from_secs(15), is("granted")).await?;
    b.wait_for("B checkpoints", Duration::from_secs(10), is("checkpoint")).await?;
    a.signal(Signal::SIGCONT)?;
    a.wait_for("A revoked after waking up", Duration::from_secs(10), is("revoked")).await?;
    for _ in 0..5 {
        b.wait_for("B keeps checkpointing", Duration::from_secs(10), is("checkpoint")).await?;
    }
    a.drain();
    let (a_ids, b_ids) = (a.ids(), b.ids());
    let b_min = b_ids.iter().min().copied().unwrap_or(u64::MAX);
    assert!(a_ids.iter().all(|id| *id < b_min), "a stale write was accepted: A {a_ids:?} vs B {b_ids:?}");
    let client = Client::connect(c.endpoints()).await?;
    let pointer =
        client.get("/conclave/ha/stale/jobs/job-1/latest-checkpoint").await?.map(|kv| kv.value).unwrap_or_default();
    let b_max = b_ids.iter().max().copied().unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&pointer).ends_with(&format!("chk-{b_max}")) || b_ids.len() > 5,
        "pointer {pointer:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_connection_does_not_revoke_leadership() -> anyhow::Result<()> {
    let mut c = Cluster::start(3).await?;
    let mut a = JobManager::start(&c, "suspend", "jm-a:1")?;
    a.wait_for("A granted", Duration::from_secs(15), is("granted")).await?;
    a.wait_for("A checkpoints", Duration::from_secs(10), is("checkpoint")).await?;
    // Kill the Conclave member A talks to (the leader) and one more: with no quorum left, A's
    // keep-alives fail until they come back. (Killing the leader alone is no longer enough: a
    // new leader is elected in ~0.4 s, often before A's next keep-alive is due.)
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(1);
    c.kill(leader)?;
    c.kill(follower)?;
    let (_, state) =
        a.wait_for("A's connection suspended", Duration::from_secs(10), |v| v["event"] == "session").await?;
    assert_eq!(state["state"], "Suspended");
    c.restart(leader)?;
    c.restart(follower)?;
    a.wait_for("A reconnected", Duration::from_secs(15), |v| v["event"] == "session" && v["state"] == "Reconnected")
        .await?;
    for _ in 0..5 {
        a.wait_for("A checkpoints on", Duration::from_secs(10), is("checkpoint")).await?;
    }
    a.drain();
    assert!(a.seen.iter().all(|(_, v)| v["event"] != "revoked"), "leadership revoked: {:?}", a.seen);
    let grants = a.seen.iter().filter(|(_, v)| v["event"] == "granted").count();
    assert_eq!(grants, 1, "leadership kept, never re-granted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retrieval_converges_after_a_leader_change() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let client = Client::connect(c.endpoints()).await?;
    let mut retrieval = LeaderRetrieval::watch(&client, "retrieve", "dispatcher")?;
    let mut a = JobManager::start(&c, "retrieve", "jm-a:1")?;
    let (_, ga) = a.wait_for("A granted", Duration::from_secs(15), is("granted")).await?;
    let mut b = JobManager::start(&c, "retrieve", "jm-b:1")?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut a_killed = false;
    while Instant::now() < deadline {
        let (_, info) = tokio::time::timeout(Duration::from_secs(15), retrieval.next()).await??;
        seen.push(info.clone());
        if info.address.as_deref() == Some("jm-a:1") && !a_killed {
            assert_eq!(info.epoch, ga["epoch"].as_u64());
            assert_eq!(info.uuid.map(|u| u.to_string()).as_deref(), ga["uuid"].as_str());
            a.signal(Signal::SIGKILL)?;
            a_killed = true;
        }
        if info.address.as_deref() == Some("jm-b:1") {
            break;
        }
    }
    let (_, gb) = b.wait_for("B granted", Duration::from_secs(5), is("granted")).await?;
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(last.address.as_deref(), Some("jm-b:1"), "retrieval converged to B: {seen:?}");
    assert_eq!(last.epoch, gb["epoch"].as_u64());
    let epochs: Vec<u64> = seen.iter().filter_map(|i| i.epoch).collect();
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "retrieval went back in time: {seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_counter_cleanup_and_fencing_in_process() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let client = Client::connect(c.endpoints()).await?;
    let ttl = Duration::from_secs(3);
    let s1 = Arc::new(Session::open(&client, ttl).await?);
    let s2 = Arc::new(Session::open(&client, ttl).await?);

    // Leadership for s1; counter and store fenced by it.
    let election = LeaderElection::new(&client, s1.clone(), "stores", b"jm-1", RevokePolicy::OnExpired)?;
    let mut events = election.campaign();
    let token = match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
        Some(LeadershipEvent::Granted(t)) => t,
        other => anyhow::bail!("expected a grant, got {other:?}"),
    };
    assert!(election.has_leadership(&token).await?);
    let counter = CheckpointIdCounter::new(&client, "stores", "job-9", Some(token.clone()))?;
    counter.start().await?;
    counter.start().await?; // idempotent
    assert_eq!(counter.get_and_increment().await?, 1);
    assert_eq!(counter.get_and_increment().await?, 2);
    assert_eq!(counter.get().await?, 3);
    counter.set(100).await?;
    assert_eq!(counter.get_and_increment().await?, 100);
    assert!(!counter.shutdown(JobStatus::Suspended).await?, "kept for a non-terminal job");
    assert_eq!(counter.get().await?, 101);

    // Two-phase removal with two lock holders.
    let store1 = StateHandleStore::new(&client, &s1, "stores", "checkpoints", Some(token.clone()))?;
    let store2 = StateHandleStore::new(&client, &s2, "stores", "checkpoints", None)?;
    store1.add_and_lock("chk-1", b"s3://a").await?;
    assert_eq!(store1.add_and_lock("chk-1", b"s3://b").await.map_err(|e| e.code()), Err(tonic::Code::AlreadyExists));
    let h = store2.get_and_lock("chk-1").await?;
    assert_eq!((h.value.as_slice(), h.version), (&b"s3://a"[..], 1));
    assert_eq!(store1.replace("chk-1", 1, b"s3://a2").await?, 2);
    assert_eq!(store1.replace("chk-1", 1, b"s3://x").await.map_err(|e| e.code()), Err(tonic::Code::FailedPrecondition));
    store1.add_and_lock("chk-2", b"s3://c").await?;
    let all = store2.get_all_and_lock().await?;
    assert_eq!(all.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), vec!["chk-1", "chk-2"]);
    assert!(!store1.release_and_try_remove("chk-1").await?, "s2 still holds a lock");
    assert!(store1.is_marked_for_deletion("chk-1").await?, "marked for deletion in between");
    assert_eq!(store1.get_and_lock("chk-1").await.map_err(|e| e.code()).err(), Some(tonic::Code::NotFound));
    assert!(store2.release_and_try_remove("chk-1").await?, "last holder completes the removal");
    assert_eq!(store1.exists("chk-1").await?, None);
    assert!(!store1.is_marked_for_deletion("chk-1").await?);
    store2.release_all().await?;
    assert_eq!(store1.clear_entries().await?, Vec::<String>::new());
    assert_eq!(store1.exists("chk-2").await?, None);

    // Job result store contract.
    let results = JobResultStore::new(&client, "stores")?;
    results.create_dirty("job-9", b"FINISHED").await?;
    assert_eq!(results.create_dirty("job-9", b"x").await.map_err(|e| e.code()), Err(tonic::Code::AlreadyExists));
    assert!(results.has_dirty("job-9").await? && !results.has_clean("job-9").await?);
    assert_eq!(results.dirty_results().await?, vec![("job-9".to_owned(), b"FINISHED".to_vec())]);
    results.mark_clean("job-9").await?;
    assert!(!results.has_dirty("job-9").await? && results.has_clean("job-9").await?);
    assert_eq!(results.mark_clean("job-9").await.map_err(|e| e.code()), Err(tonic::Code::FailedPrecondition));
    assert_eq!(results.mark_clean("nope").await.map_err(|e| e.code()), Err(tonic::Code::FailedPrecondition));

    // A superseded token is fenced: resign, then s2 takes over; s1's old token is rejected.
    election.resign().await?;
    let e2 = LeaderElection::new(&client, s2.clone(), "stores", b"jm-2", RevokePolicy::OnExpired)?;
    let mut ev2 = e2.campaign();
    let t2 = match tokio::time::timeout(Duration::from_secs(10), ev2.recv()).await? {
        Some(LeadershipEvent::Granted(t)) => t,
        other => anyhow::bail!("expected a grant, got {other:?}"),
    };
    assert!(t2.epoch > token.epoch);
    assert!(!election.has_leadership(&token).await?);
    match counter.get_and_increment().await {
        Err(Error::Fenced { presented_token, current_token, .. }) => {
            assert_eq!((presented_token, current_token), (token.epoch, t2.epoch))
        }
        other => anyhow::bail!("stale increment must be fenced, got {other:?}"),
    }
    assert!(matches!(store1.add_and_lock("chk-3", b"x").await, Err(Error::Fenced { .. })));
    assert_eq!(counter.get().await?, 101, "the fenced increment changed nothing");

    // Cleanup.
    assert!(cleanup::list_cluster_ids(&client).await?.contains(&"stores".to_owned()));
    assert!(counter.shutdown(JobStatus::Finished).await?);
    assert!(!client.counter_get("/conclave/ha/stores/checkpoint-id/job-9", false).await?.exists);
    cleanup::delete_job(&client, "stores", "job-9").await?;
    assert!(!results.has_clean("job-9").await?);
    cleanup::delete_cluster(&client, "stores").await?;
    cleanup::delete_cluster(&client, "stores").await?; // idempotent
    assert!(!cleanup::list_cluster_ids(&client).await?.contains(&"stores".to_owned()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_outcome_is_indeterminate() -> anyhow::Result<()> {
    let mut c = Cluster::start(3).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let mut config = ClientConfig::new(vec![c.node(leader).client_addr.clone()]);
    config.discover = false;
    config.attempt_timeout = Duration::from_millis(500);
    config.call_timeout = Duration::from_secs(2);
    let client = Client::with_config(config).await?;
    client.put("warm", "up").await?;
    // The leader accepts the write but cannot commit it: both followers are frozen.
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    for f in &followers {
        c.pause(*f)?;
    }
    let r = client.put("maybe", "v").await;
    assert!(matches!(r, Err(Error::Indeterminate(_))), "neither success nor failure: {r:?}");
    for f in &followers {
        c.resume(*f)?;
    }
    // The outcome really was open: the write may still commit once a quorum is back.
    let check = Client::connect(c.endpoints()).await?;
    check.put("after", "x").await?;
    Ok(())
}
