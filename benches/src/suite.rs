//! Runs the selected workloads on the selected targets, one cluster at a time, and writes the
//! report. Workloads are run workload-major (each group on every target in turn) so that
//! background noise on a shared machine spreads over all targets alike.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::RunArgs;
use crate::disk::{Disk, SlowDisk};
use crate::measure::{dir_size, total_cpu, total_rss};
use crate::report::{self, Meta};
use crate::targets::conclave::ConclaveTarget;
use crate::targets::conclave_zk::ConclaveZkTarget;
use crate::targets::etcd::EtcdTarget;
use crate::targets::zookeeper::ZookeeperTarget;
use crate::targets::{Target, TargetKind};
use crate::workloads::{self, Outcome, Params, Status, Workload};

/// Where each target's server is, or why it is skipped.
struct Servers {
    conclave: Result<PathBuf, String>,
    etcd: Result<PathBuf, String>,
    zookeeper: Result<PathBuf, String>,
    conclave_flags: Option<String>,
}

impl Servers {
    fn find(args: &RunArgs) -> Self {
        let conclave = match &args.conclave_bin {
            Some(p) if p.is_file() => Ok(p.clone()),
            Some(p) => Err(format!("{} not found", p.display())),
            None => conclave_testkit::conclave_binary()
                .map_err(|e| format!("{e:#} (build it: cargo build --release -p conclave-server -p conclave-bench)")),
        };
        let exists = |p: &Path, pkg: &str| {
            if p.is_file() {
                Ok(p.to_path_buf())
            } else {
                Err(format!("{} not found: install the Debian package `{pkg}` to compare", p.display()))
            }
        };
        let zookeeper = exists(&args.zk_server, "zookeeper").and_then(|p| {
            if Path::new("/usr/bin/java").exists() || which("java") {
                Ok(p)
            } else {
                Err("java not found (ZooKeeper needs a JRE)".into())
            }
        });
        Self {
            conclave,
            etcd: exists(&args.etcd_bin, "etcd-server"),
            zookeeper,
            conclave_flags: args.conclave_flags.clone(),
        }
    }

    fn get(&self, t: TargetKind) -> &Result<PathBuf, String> {
        match t {
            TargetKind::Conclave | TargetKind::ConclaveGeneric | TargetKind::ConclaveZk => &self.conclave,
            TargetKind::Etcd | TargetKind::EtcdGeneric => &self.etcd,
            TargetKind::Zookeeper => &self.zookeeper,
        }
    }
}

/// Prints above the progress bar, or to stderr when there is no terminal (the bar is hidden).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
}

async fn start(kind: TargetKind, server: &Path, dir: &Path, args: &RunArgs) -> anyhow::Result<Box<dyn Target>> {
    std::fs::create_dir_all(dir)?;
    let fut = async {
        Ok::<Box<dyn Target>, anyhow::Error>(match kind {
            TargetKind::Conclave | TargetKind::ConclaveGeneric => {
                let flags = args.conclave_flags.as_deref().unwrap_or_default().split_whitespace();
                Box::new(ConclaveTarget::start(server, dir, flags.map(str::to_owned).collect(), kind).await?)
            }
            TargetKind::ConclaveZk => {
                let flags = args.conclave_flags.as_deref().unwrap_or_default().split_whitespace();
                Box::new(ConclaveZkTarget::start(server, dir, flags.map(str::to_owned).collect()).await?)
            }
            TargetKind::Etcd | TargetKind::EtcdGeneric => Box::new(EtcdTarget::start(server, dir, kind).await?),
            TargetKind::Zookeeper => Box::new(ZookeeperTarget::start(server, dir).await?),
        })
    };
    tokio::time::timeout(Duration::from_secs(180), fut).await.map_err(|_| anyhow::anyhow!("start timed out"))?
}

/// The selected targets, in report order, `conclave` standing for each `--conclave-client` profile.
fn targets(args: &RunArgs) -> Vec<TargetKind> {
    let asked = if args.targets.is_empty() {
        vec![TargetKind::Conclave, TargetKind::Etcd, TargetKind::Zookeeper]
    } else {
        args.targets.clone()
    };
    let mut out: Vec<TargetKind> = Vec::new();
    for t in asked {
        match t {
            TargetKind::Conclave => out.extend(args.conclave_client.iter().map(|p| p.conclave())),
            TargetKind::Etcd => out.extend(args.etcd_client.iter().map(|p| p.etcd())),
            t => out.push(t),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Why `w` is not run on `kind`, if it is not.
fn not_available(kind: TargetKind, w: Workload) -> Option<String> {
    let zk_protocol = matches!(kind, TargetKind::Zookeeper | TargetKind::ConclaveZk);
    if w == Workload::Create && !zk_protocol {
        return Some("create is measured on the ZooKeeper-protocol targets only".to_owned());
    }
    if w == Workload::JobManagerFailover && kind == TargetKind::ConclaveZk {
        return Some("the job managers use Conclave's own client (see the conclave column)".to_owned());
    }
    match kind {
        TargetKind::ConclaveGeneric | TargetKind::EtcdGeneric if !w.shares_cluster() && w != Workload::WatchFanout => {
            Some(
                "the generic client profile covers the KV workloads and watch fan-out; see the other profile's column"
                    .to_owned(),
            )
        }
        _ => None,
    }
}

/// Runs one workload on a running target and adds the server-side measurements.
async fn measure(target: &dyn Target, w: Workload, p: &Params, dir: &Path) -> Outcome {
    if w.shares_cluster() {
        if let Err(e) = workloads::kv::warm_up(target, w, p).await {
            return Outcome::new(w, target.kind(), Status::Failed(format!("warm-up: {e:#}")));
        }
    }
    let pids = target.pids();
    let cpu0 = total_cpu(&pids);
    let per_member0: Vec<Duration> = pids.iter().map(|p| total_cpu(&[*p])).collect();
    let log0 = target.raft_log_index().await;
    let budget = Duration::from_secs(900);
    let run = async {
        match w {
            Workload::Sessions => workloads::sessions::run(target, p).await,
            Workload::WatchFanout => workloads::watch::run(target, p).await,
            Workload::LeaderFailover => workloads::failover::run(target, p).await,
            Workload::RollingRestart => workloads::rolling::run(target, p).await,
            Workload::JobManagerFailover => workloads::election::run(target, p, dir).await,
            _ => workloads::kv::run(target, w, p).await,
        }
    };
    let mut o = match tokio::time::timeout(budget, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::new(w, target.kind(), Status::Failed(format!("{e:#}"))),
        Err(_) => Outcome::new(w, target.kind(), Status::Failed(format!("did not finish within {budget:?}"))),
    };
    let pids_after = target.pids();
    if w.shares_cluster() && pids_after == pids && o.ops > 0 {
        let leader = target.leader().await.ok();
        o.notes.push(cpu_by_member(&pids, &per_member0, o.ops, leader));
    }
    let pids = pids_after;
    o.rss_bytes = total_rss(&pids);
    o.data_dir_bytes = target.data_dirs().iter().map(|d| dir_size(d)).sum();
    if w != Workload::Sessions {
        // Sessions measure CPU over the hold only; failover restarts members (CPU is partial).
        o.server_cpu_s = total_cpu(&pids).saturating_sub(cpu0).as_secs_f64();
        if o.raft_log_growth.is_none() {
            if let (Some(a), Some(b)) = (log0, target.raft_log_index().await) {
                o.raft_log_growth = Some(b.saturating_sub(a));
            }
        }
    }
    o
}

/// "server CPU per op by member: 1 (leader) 85 µs, 2 40 µs, 3 38 µs" (members from 1): the
/// cost model's inputs (docs/design.md "Where the time goes").
fn cpu_by_member(pids: &[u32], before: &[Duration], ops: u64, leader: Option<usize>) -> String {
    let parts: Vec<String> = pids
        .iter()
        .zip(before)
        .enumerate()
        .map(|(m, (pid, b))| {
            let used = total_cpu(&[*pid]).saturating_sub(*b);
            let role = if leader == Some(m) { " (leader)" } else { "" };
            format!("{}{role} {:.0} µs", m + 1, used.as_secs_f64() * 1e6 / ops as f64)
        })
        .collect();
    format!("server CPU per op by member: {}", parts.join(", "))
}

/// One line of progress for an outcome.
fn summary(o: &Outcome) -> String {
    match (&o.status, o.headline) {
        (Status::Ok, Some(h)) => format!("{} {}", (h * 100.0).round() / 100.0, o.workload.headline().0),
        (Status::Ok, None) => "done".into(),
        (st, _) => format!("{st:?}"),
    }
}

/// The big-state rows on a fresh cluster, each with the server-side measurements; every row
/// failed when the state could not be loaded.
async fn big_state(target: &dyn Target, p: &Params, dir: &Path) -> Vec<Outcome> {
    let budget = Duration::from_secs(1800);
    let rows = match tokio::time::timeout(budget, workloads::big::run(target, p, dir)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            Workload::BIG.iter().map(|w| Outcome::new(*w, target.kind(), Status::Failed(format!("{e:#}")))).collect()
        }
        Err(_) => Workload::BIG
            .iter()
            .map(|w| Outcome::new(*w, target.kind(), Status::Failed(format!("did not finish within {budget:?}"))))
            .collect(),
    };
    let rss = total_rss(&target.pids());
    let data = target.data_dirs().iter().map(|d| dir_size(d)).sum();
    rows.into_iter()
        .map(|mut o| {
            o.rss_bytes = rss;
            o.data_dir_bytes = data;
            o
        })
        .collect()
}

/// What every cluster of a run shares.
struct Ctx<'a> {
    servers: &'a Servers,
    faultfs: &'a Path,
    work: &'a Path,
    args: &'a RunArgs,
    params: &'a Params,
}

/// Records `status` for every workload of `group` on `kind`.
fn give_up(outcomes: &mut Vec<Outcome>, bar: &ProgressBar, kind: TargetKind, group: &[Workload], status: &Status) {
    for &w in group {
        outcomes.push(Outcome::new(w, kind, status.clone()));
        bar.inc(1);
    }
}

/// Starts a cluster of `kind` on `disk` and runs `group` (the `gi`-th group) on it.
async fn run_one(
    ctx: &Ctx<'_>,
    bar: &ProgressBar,
    (kind, disk, gi): (TargetKind, Disk, usize),
    group: &[Workload],
    outcomes: &mut Vec<Outcome>,
) {
    if let Some(why) = group.iter().map(|w| not_available(kind, *w)).collect::<Option<Vec<_>>>() {
        for (&w, why) in group.iter().zip(why) {
            outcomes.push(Outcome::new(w, kind, Status::NotAvailable(why)));
            bar.inc(1);
        }
        return;
    }
    let server = match ctx.servers.get(kind) {
        Ok(p) => p.clone(),
        Err(e) => return give_up(outcomes, bar, kind, group, &Status::Skipped(e.clone())),
    };
    bar.set_message(format!("{}: starting on {disk}", kind.label()));
    let disk_tag = match disk {
        Disk::Native => "native".to_owned(),
        Disk::FsyncDelayMs(ms) => format!("fsync{ms}ms"),
    };
    let mut dir = ctx.work.join(format!("{disk_tag}-{gi:02}-{kind:?}").to_lowercase());
    // Declared before the target, so dropped after it: the servers stop before the unmount.
    let mut slow = None;
    if let Disk::FsyncDelayMs(ms) = disk {
        match SlowDisk::mount(ctx.faultfs, &dir, ms).await {
            Ok(d) => dir = slow.insert(d).path().to_path_buf(),
            Err(e) => {
                say(bar, format!("{}: no slow disk: {e:#}", kind.label()));
                return give_up(outcomes, bar, kind, group, &Status::Failed(format!("slow disk: {e:#}")));
            }
        }
    }
    let target = match start(kind, &server, &dir, ctx.args).await {
        Ok(t) => t,
        Err(e) => {
            say(bar, format!("{}: could not start: {e:#}", kind.label()));
            return give_up(outcomes, bar, kind, group, &Status::Failed(format!("start: {e:#}")));
        }
    };
    for &w in group {
        if let Some(why) = not_available(kind, w) {
            outcomes.push(Outcome::new(w, kind, Status::NotAvailable(why)));
            bar.inc(1);
            continue;
        }
        bar.set_message(format!("{} on {}, {disk}", w.label(), kind.label()));
        let t0 = Instant::now();
        if w == Workload::BigState {
            for o in big_state(target.as_ref(), ctx.params, &dir).await {
                say(
                    bar,
                    format!(
                        "{:<30} {:<10} {disk}: {} ({:.0} s)",
                        o.workload.label(),
                        kind.label(),
                        summary(&o),
                        t0.elapsed().as_secs_f64()
                    ),
                );
                outcomes.push(o);
            }
            bar.inc(1);
            continue;
        }
        let o = measure(target.as_ref(), w, ctx.params, &dir).await;
        let took = t0.elapsed().as_secs_f64();
        say(bar, format!("{:<30} {:<10} {disk}: {} ({took:.0} s)", w.label(), kind.label(), summary(&o)));
        outcomes.push(o);
        bar.inc(1);
    }
    drop(target);
    tokio::task::block_in_place(|| drop(slow));
}

/// UTC calendar time of `t` as (year, month, day, hour, minute, second).
fn utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024 / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {mem} GiB memory, Linux {}", kernel.trim())
}

fn version_of(cmd: &Path, arg: &str) -> Option<String> {
    let out = std::process::Command::new(cmd).arg(arg).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
}

fn server_lines(servers: &Servers) -> Vec<String> {
    let mut v = Vec::new();
    match &servers.conclave {
        Ok(p) => v.push(format!(
            "Conclave: {}{}",
            p.display(),
            servers.conclave_flags.as_ref().map_or(String::new(), |f| format!(" with flags `{f}`"))
        )),
        Err(e) => v.push(format!("Conclave: skipped ({e})")),
    }
    match &servers.etcd {
        Ok(p) => v.push(format!("etcd: {} ({})", p.display(), version_of(p, "--version").unwrap_or_default())),
        Err(e) => v.push(format!("etcd: skipped ({e})")),
    }
    match &servers.zookeeper {
        Ok(p) => {
            let jar = std::fs::read_link("/usr/share/java/zookeeper.jar").ok().map(|j| j.display().to_string());
            v.push(format!("ZooKeeper: {} ({})", p.display(), jar.unwrap_or_else(|| "version unknown".into())));
        }
        Err(e) => v.push(format!("ZooKeeper: skipped ({e})")),
    }
    v
}

/// Runs the suite and writes the report; returns the results directory.
///
/// # Errors
/// When the results directory cannot be written.
pub async fn run(args: RunArgs) -> anyhow::Result<PathBuf> {
    let mut params = if args.quick { Params::quick() } else { Params::full() };
    if let Some(d) = args.duration {
        params.duration = Duration::from_secs(d);
    }
    if let Some(n) = args.sessions {
        params.sessions = n;
    }
    if let Some(n) = args.big_keys {
        params.big_keys = n;
    }
    if let Some(n) = args.big_sessions {
        params.big_sessions = n;
    }
    if let Some(n) = args.watchers {
        params.watchers = n;
    }
    if let Some(n) = args.failover_reps {
        params.failover_reps = n;
        params.election_reps = n;
    }
    let targets = targets(&args);
    let selected: Vec<Workload> =
        if args.workloads.is_empty() { Workload::DEFAULT.to_vec() } else { args.workloads.clone() };
    let mut groups: Vec<Vec<Workload>> = Vec::new();
    let shared: Vec<Workload> =
        Workload::ALL.into_iter().filter(|w| selected.contains(w) && w.shares_cluster()).collect();
    if !shared.is_empty() {
        groups.push(shared);
    }
    for w in Workload::DEFAULT.into_iter().filter(|w| selected.contains(w) && !w.shares_cluster()) {
        groups.push(vec![w]);
    }
    if selected.contains(&Workload::BigState) {
        groups.push(vec![Workload::BigState]);
    }

    let started = SystemTime::now();
    let (y, mo, d, h, mi, s) = utc(started);
    let out = args.out.join(format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}"));
    std::fs::create_dir_all(&out)?;
    let work = tempfile::Builder::new().prefix("conclave-bench-").tempdir()?;
    if args.tls {
        crate::targets::tls::enable(&work.path().join("tls"))?;
    }
    if let Some(sets) = args.generic_conns {
        crate::targets::generic::share_connections(usize::from(sets));
    }
    let servers = Servers::find(&args);
    let meta = Meta {
        started_utc: format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        servers: server_lines(&servers),
        quick: args.quick,
        disks: args.disk_latency_ms.clone(),
    };

    let disks = args.disk_latency_ms.clone();
    let steps: usize = groups.iter().map(Vec::len).sum::<usize>() * targets.len() * disks.len();
    // (big state is one step per target for all its rows)
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    for t in &targets {
        if let Err(e) = servers.get(*t) {
            say(&bar, format!("{}: skipped: {e}", t.label()));
        }
    }
    let faultfs = args.faultfs_bin.clone().unwrap_or_else(|| {
        std::env::current_exe().ok().and_then(|e| Some(e.parent()?.join("conclave-faultfs"))).unwrap_or_default()
    });
    let mut outcomes = Vec::new();
    for (disk, (gi, group)) in disks.iter().flat_map(|d| groups.iter().enumerate().map(move |g| (*d, g))) {
        for &kind in &targets {
            let first = outcomes.len();
            let ctx = Ctx { servers: &servers, faultfs: &faultfs, work: work.path(), args: &args, params: &params };
            run_one(&ctx, &bar, (kind, disk, gi), group, &mut outcomes).await;
            for o in &mut outcomes[first..] {
                o.disk = disk;
            }
        }
    }
    bar.finish_with_message("done");
    let md = report::write_all(&out, &meta, &params, &outcomes)?;
    println!("\n{md}");
    if args.keep_data {
        let kept = work.keep();
        println!("server data and logs kept in {}", kept.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conclave_stands_for_each_client_profile() {
        use clap::Parser;
        let parse = |a: &[&str]| crate::cli::Cli::parse_from([&["conclave-bench"], a].concat()).run;
        assert_eq!(targets(&parse(&[])), [TargetKind::Conclave, TargetKind::Etcd, TargetKind::Zookeeper]);
        let both = parse(&["--targets", "conclave,etcd", "--conclave-client", "generic,native"]);
        assert_eq!(targets(&both), [TargetKind::Conclave, TargetKind::ConclaveGeneric, TargetKind::Etcd]);
        assert!(not_available(TargetKind::ConclaveGeneric, Workload::WatchFanout).is_none());
        assert!(not_available(TargetKind::ConclaveGeneric, Workload::LeaderFailover).is_some());
        assert!(not_available(TargetKind::ConclaveGeneric, Workload::Put1).is_none());
        assert!(not_available(TargetKind::Conclave, Workload::WatchFanout).is_none());
        let generic =
            parse(&["--targets", "conclave,etcd", "--conclave-client", "generic", "--etcd-client", "generic"]);
        assert_eq!(targets(&generic), [TargetKind::ConclaveGeneric, TargetKind::EtcdGeneric]);
        assert!(not_available(TargetKind::EtcdGeneric, Workload::WatchFanout).is_none());
        assert!(not_available(TargetKind::EtcdGeneric, Workload::Sessions).is_some());
        assert!(not_available(TargetKind::EtcdGeneric, Workload::Counter16).is_none());
        // create is ZooKeeper's: measured on both ZooKeeper-protocol targets, n/a elsewhere.
        assert!(not_available(TargetKind::ConclaveZk, Workload::Create).is_none());
        assert!(not_available(TargetKind::Zookeeper, Workload::Create).is_none());
        assert!(not_available(TargetKind::Etcd, Workload::Create).is_some());
        assert!(not_available(TargetKind::ConclaveZk, Workload::WatchFanout).is_none());
    }

    #[test]
    fn generic_conns_is_a_positive_count() {
        use clap::Parser;
        let parse = |a: &[&str]| crate::cli::Cli::try_parse_from([&["conclave-bench"], a].concat());
        assert_eq!(parse(&[]).expect("no flag").run.generic_conns, None, "default: a set per user");
        assert_eq!(parse(&["--generic-conns", "8"]).expect("8").run.generic_conns, Some(8));
        assert!(parse(&["--generic-conns", "0"]).is_err(), "no users could send on 0 connections");
    }

    #[test]
    fn utc_calendar() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), (1970, 1, 1, 0, 0, 0));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc(t), (2024, 2, 29, 12, 34, 56));
    }
}
