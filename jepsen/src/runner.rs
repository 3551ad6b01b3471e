//! One test run: start the cluster (inside the private namespace), run the workload's workers
//! and the nemesis schedule for the time limit, heal, check that the cluster serves again,
//! run the final phase, collect panics, compare the members' key-space hashes (`hashkv`),
//! check the history, write the outputs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_testkit::{Cluster, ClusterOptions};
use serde_json::json;
use tokio::sync::{watch, Mutex};

use crate::checker::{self, CheckResult, Verdict};
use crate::history::Recorder;
use crate::nemesis::{self, clock::Clocks, Nemesis};
use crate::workload::{self, Ctx, Settings};
use crate::{output, progress};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct TestOpts {
    /// The workload.
    pub workload: workload::Kind,
    /// Fault families (may be empty).
    pub nemeses: Vec<nemesis::Kind>,
    /// Length of the workload phase.
    pub time_limit: Duration,
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the schedule and the generators.
    pub seed: u64,
    /// Worker settings.
    pub settings: Settings,
    /// Mean healthy / faulty period.
    pub nemesis_interval: Duration,
    /// Budget of the linearizability search.
    pub check_budget: Duration,
    /// Parent of the run directories.
    pub store: PathBuf,
    /// The `conclave` binary.
    pub binary: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// TLS on both ports (certificates generated in the run directory).
    pub tls: bool,
}

impl TestOpts {
    /// `<workload>-<nemeses>`, the run's directory name.
    pub fn name(&self) -> String {
        let n: Vec<&str> = self.nemeses.iter().map(|k| k.name()).collect();
        format!("{}-{}", self.workload.name(), if n.is_empty() { "none".to_owned() } else { n.join("+") })
    }
}

/// What a run produced.
pub struct TestReport {
    /// Its directory.
    pub dir: PathBuf,
    /// Every checker's result.
    pub results: Vec<CheckResult>,
    /// Combined verdict.
    pub verdict: Verdict,
    /// Client operations recorded (completed invocations).
    pub ops: usize,
}

/// How long the cluster gets to serve again after every fault healed.
const RECOVERY: Duration = Duration::from_secs(30);

/// Runs one test.
///
/// # Errors
/// Harness or cluster errors (the cluster does not start, iptables fails, ...).
pub async fn run(opts: &TestOpts) -> anyhow::Result<TestReport> {
    let dir = opts.store.join(opts.name()).join(output::timestamp());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("test.json"), serde_json::to_vec_pretty(&describe(opts))?)?;
    let ids: Vec<u64> = (1..=opts.nodes as u64).collect();
    let (clocks, mut env) = if opts.nemeses.contains(&nemesis::Kind::Clock) {
        let (c, env) = Clocks::prepare(&dir, &ids)?;
        (Some(c), env)
    } else {
        (None, Vec::new())
    };
    // Declared before the cluster, so dropped (unmounted) after its nodes are killed.
    let disks = if opts.nemeses.contains(&nemesis::Kind::Power) {
        Some(Arc::new(nemesis::power::Disks::mount(&dir, &ids)?))
    } else {
        None
    };
    let mut settings = opts.settings.clone();
    let mut extra_args = Vec::new();
    if opts.tls {
        let certs = conclave_testkit::tls::TestCerts::new(&dir.join("tls"))?;
        extra_args = certs.server_args(true);
        settings.tls = Some(certs.client_tls(true)?);
    }
    // The ZooKeeper-protocol workloads: every member serves it on the same port of its own IP.
    let zk_port = if opts.workload.speaks_zookeeper() {
        let port = conclave_testkit::free_ports(std::net::Ipv4Addr::new(127, 0, 0, 11), 1)?[0];
        env.push(("CONCLAVE_ZK_ADDR".to_owned(), format!("{{ip}}:{port}")));
        Some(port)
    } else {
        None
    };
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: opts.nodes,
        binary: Some(opts.binary.clone()),
        base_dir: Some(dir.clone()),
        first_ip_octet: Some(11),
        env,
        extra_args,
        client_tls: settings.tls.clone(),
    })
    .await?;
    let endpoints = cluster.endpoints();
    let cluster = Arc::new(Mutex::new(cluster));
    let recorder = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let mut nemesis = Nemesis::new(cluster.clone(), recorder.clone(), clocks, disks.clone())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let prefix = format!("jepsen/{}/", opts.seed);
    let mut ctx = Ctx::new(recorder.clone(), endpoints, settings, stop_rx.clone(), prefix);
    if let Some(port) = zk_port {
        let c = cluster.lock().await;
        ctx.zk_endpoints = c.nodes().iter().filter_map(|n| n.ip()).map(|ip| format!("{ip}:{port}")).collect();
    }
    let ctx = Arc::new(ctx);

    // Workload and nemesis phase.
    let start = tokio::time::Instant::now();
    let bar = progress::start(opts.progress, recorder.clone(), opts.time_limit, &opts.name());
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..opts.settings.concurrency {
        workers.spawn(workload::run_worker(opts.workload, ctx.clone(), i));
    }
    let plan = nemesis::schedule(
        &opts.nemeses,
        opts.seed,
        opts.time_limit,
        opts.nemesis_interval.min(opts.time_limit / 8),
        opts.nemesis_interval,
    );
    let limit = opts.time_limit;
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(start + limit).await;
        let _ = stop_tx.send(true);
    });
    let nemesis_result = nemesis.run(&plan, start, stop_rx.clone()).await;
    let _ = stopper.await;
    // Watchers catch up after the phase (up to 25 s); other workers finish their operation.
    let drain = opts.settings.op_timeout * 2 + Duration::from_secs(30);
    if tokio::time::timeout(drain, async { while workers.join_next().await.is_some() {} }).await.is_err() {
        workers.abort_all();
    }
    progress::finish(bar);
    let healed = nemesis.heal_all().await;
    nemesis_result?;
    healed?;

    // Recovery, final phase, panics.
    let mut results = vec![recovery(&cluster, &ctx).await];
    if tokio::time::timeout(Duration::from_secs(90), workload::final_phase(opts.workload, ctx.clone())).await.is_err() {
        results.push(CheckResult::new("final-phase", Verdict::Unknown, "final phase did not finish within 90 s"));
    }
    results.push(crashes(&cluster, &nemesis).await);
    let members = cluster.lock().await.endpoints();
    results.push(checker::hashkv::check(&ctx.client(0).await, &members).await);
    drop(cluster);
    recorder.flush();

    // Check and report.
    let events = recorder.events();
    results.extend(workload::check(opts.workload, &events, opts.check_budget));
    let verdict = checker::overall(&results);
    let ops = events.iter().filter(|e| e.kind != crate::history::EventType::Invoke && e.process >= 0).count();
    output::write_all(&dir, &events, &results, &nemesis.applied)?;
    Ok(TestReport { dir, results, verdict, ops })
}

fn describe(opts: &TestOpts) -> serde_json::Value {
    json!({
        "workload": opts.workload.name(),
        "nemesis": opts.nemeses.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "time_limit_s": opts.time_limit.as_secs_f64(),
        "nodes": opts.nodes,
        "seed": opts.seed,
        "concurrency": opts.settings.concurrency,
        "rate": opts.settings.rate,
        "op_timeout_ms": opts.settings.op_timeout.as_millis() as u64,
        "unsafe_serializable_reads": opts.settings.serializable_reads,
        "tls": opts.tls,
        "nemesis_interval_s": opts.nemesis_interval.as_secs_f64(),
        "binary": opts.binary,
    })
}

/// After every fault healed, the cluster must agree on a leader and accept a write and a
/// linearizable read within [`RECOVERY`].
async fn recovery(cluster: &Mutex<Cluster>, ctx: &Ctx) -> CheckResult {
    const NAME: &str = "recovery";
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let leader = {
        let c = cluster.lock().await;
        c.wait_for_leader(RECOVERY).await
    };
    if let Err(e) = leader {
        return CheckResult::new(
            NAME,
            Verdict::Invalid,
            format!("no agreed leader within {RECOVERY:?} after healing: {e}"),
        );
    }
    let client = ctx.client(0).await;
    let key = format!("{}recovery-probe", ctx.prefix);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match client.put(&key, "1").await {
            Ok(_) => match client.get(&key).await {
                Ok(Some(_)) => {
                    return CheckResult::new(
                        NAME,
                        Verdict::Valid,
                        format!("served again {:.1} s after healing", started.elapsed().as_secs_f64()),
                    )
                }
                Ok(None) => last = "probe write not visible to a read".into(),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    CheckResult::new(NAME, Verdict::Invalid, format!("not serving {RECOVERY:?} after healing: {last}"))
}

/// A panic in any node's log, or a node that died without being killed, fails the run.
async fn crashes(cluster: &Mutex<Cluster>, nemesis: &Nemesis) -> CheckResult {
    const NAME: &str = "server-panic";
    let c = cluster.lock().await;
    let panics: Vec<serde_json::Value> = c
        .panics()
        .into_iter()
        .map(|(id, log)| {
            let lines: Vec<&str> =
                log.lines().filter(|l| l.contains("panicked") || l.contains("ERROR")).take(20).collect();
            json!({"node": id, "log": c.node(id).log_path, "lines": lines})
        })
        .collect();
    let exits = &nemesis.unexpected_exits;
    if panics.is_empty() && exits.is_empty() {
        return CheckResult::new(NAME, Verdict::Valid, "no panic in any node's log, no unexpected exit");
    }
    CheckResult::new(
        NAME,
        Verdict::Invalid,
        format!("{} nodes panicked, nodes {exits:?} exited without being killed", panics.len()),
    )
    .with_witness(json!({"panics": panics, "unexpected_exits": exits}))
}
