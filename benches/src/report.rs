//! The results: a Markdown table (a row per workload, a column per target, Conclave's ratios
//! and the goals), the same data as JSON, and SVG plots.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::disk::Disk;
use crate::plot::{bar_chart, Group};
use crate::targets::TargetKind;
use crate::workloads::{Better, Outcome, Params, Status, Workload};

/// Facts about the run, printed above the tables.
#[derive(Clone, Debug, Serialize)]
pub struct Meta {
    /// UTC start time, `YYYY-MM-DD HH:MM:SS`.
    pub started_utc: String,
    /// The command line.
    pub command: String,
    /// CPUs, memory, kernel.
    pub machine: String,
    /// Server versions / binaries.
    pub servers: Vec<String>,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// The disks the selection ran on, in turn.
    pub disks: Vec<Disk>,
}

/// Everything written to `results.json`.
#[derive(Serialize)]
struct Json<'a> {
    meta: &'a Meta,
    params: &'a Params,
    outcomes: &'a [Outcome],
}

const MB: f64 = 1024.0 * 1024.0;

fn find(outcomes: &[Outcome], d: Disk, w: Workload, t: TargetKind) -> Option<&Outcome> {
    outcomes.iter().find(|o| o.disk == d && o.workload == w && o.target == t)
}

fn headline(outcomes: &[Outcome], d: Disk, w: Workload, t: TargetKind) -> Option<f64> {
    find(outcomes, d, w, t).filter(|o| o.status == Status::Ok).and_then(|o| o.headline)
}

/// The disks of `outcomes`, in run order.
fn disks(outcomes: &[Outcome]) -> Vec<Disk> {
    let mut v: Vec<Disk> = Vec::new();
    for o in outcomes {
        if !v.contains(&o.disk) {
            v.push(o.disk);
        }
    }
    v
}

/// A row label's disk suffix: none when every row ran on the same disk.
fn disk_suffix(disks: &[Disk], d: Disk) -> String {
    if disks.len() > 1 {
        format!(" @ {d}")
    } else {
        String::new()
    }
}

fn number(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn count(v: u64) -> String {
    if v >= 1000 {
        number(v as f64)
    } else {
        v.to_string()
    }
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "–".into(),
        Some(o) => match &o.status {
            Status::Ok => o.headline.map_or_else(|| "–".into(), number),
            Status::Skipped(_) => "skipped".into(),
            Status::NotAvailable(_) => "n/a".into(),
            Status::Failed(_) => "failed".into(),
        },
    }
}

/// The etcd column Conclave's client profile `ck` is compared with: etcd under the same generic
/// client when that ran, else etcd's own profile.
fn etcd_for(outcomes: &[Outcome], ck: TargetKind) -> TargetKind {
    if ck == TargetKind::ConclaveGeneric && outcomes.iter().any(|o| o.target == TargetKind::EtcdGeneric) {
        TargetKind::EtcdGeneric
    } else {
        TargetKind::Etcd
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

/// The goal for a row (Conclave with client profile `ck`), and whether this run met it.
fn goal(outcomes: &[Outcome], d: Disk, w: Workload, ck: TargetKind) -> String {
    let c = headline(outcomes, d, w, ck);
    let e = ratio(c, headline(outcomes, d, w, etcd_for(outcomes, ck)));
    let z = ratio(c, headline(outcomes, d, w, TargetKind::Zookeeper));
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    };
    match w {
        Workload::Put64 => format!("≥ 2× etcd: {}", verdict(e.map(|r| r >= 2.0))),
        Workload::GetLinearizable => format!("≥ etcd: {}", verdict(e.map(|r| r >= 1.0))),
        Workload::GetSerializable => format!("≥ ZooKeeper local read: {}", verdict(z.map(|r| r >= 1.0))),
        Workload::GetUnderWrites | Workload::GetLinUnderWrites => {
            format!("p99 ≤ etcd: {}", verdict(e.map(|r| r <= 1.0)))
        }
        Workload::Counter16 => {
            let both = match (e, z) {
                (Some(e), Some(z)) => Some(e >= 20.0 && z >= 20.0),
                (Some(e), None) => Some(e >= 20.0),
                (None, Some(z)) => Some(z >= 20.0),
                _ => None,
            };
            format!("≥ 20× both: {}", verdict(both))
        }
        Workload::LeaderFailover => format!("median < 1 s: {}", verdict(c.map(|g| g < 1.0))),
        Workload::RollingRestart => format!("< 100 ms: {}", verdict(c.map(|g| g < 100.0))),
        Workload::BigLoad | Workload::BigPut64 | Workload::BigGet => {
            let longest = find(outcomes, d, w, ck).and_then(|o| o.latency).map(|l| l.max_ms);
            format!("no request > 100 ms: {}", verdict(longest.map(|m| m <= 100.0)))
        }
        Workload::BigRss | Workload::BigRestart => format!("≤ etcd: {}", verdict(e.map(|r| r <= 1.0))),
        Workload::BigCatchUp => "–".into(),
        _ => String::new(),
    }
}

/// The ZooKeeper-protocol comparison (when `conclave-zk` ran): Conclave's ZooKeeper port against
/// ZooKeeper 3.8, the same client code on both; the goal is Conclave ≥ ZooKeeper on every row.
fn zk_protocol_table(s: &mut String, outcomes: &[Outcome]) {
    if !outcomes.iter().any(|o| o.target == TargetKind::ConclaveZk) {
        return;
    }
    let _ = writeln!(s, "\n## ZooKeeper protocol: Conclave's ZooKeeper port vs ZooKeeper (same client)\n");
    let _ = writeln!(
        s,
        "| workload | metric | Conclave (ZooKeeper protocol) | ZooKeeper | Conclave-ZK/ZooKeeper | goal: ≥ ZooKeeper |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    let disks = disks(outcomes);
    let workloads = Workload::ALL.into_iter().filter(|w| outcomes.iter().any(|o| o.workload == *w));
    for (d, w) in workloads.flat_map(|w| disks.iter().map(move |d| (*d, w))) {
        let c = find(outcomes, d, w, TargetKind::ConclaveZk);
        if c.is_none_or(|o| matches!(o.status, Status::NotAvailable(_))) {
            continue;
        }
        let (metric, better) = w.headline();
        let r =
            ratio(headline(outcomes, d, w, TargetKind::ConclaveZk), headline(outcomes, d, w, TargetKind::Zookeeper));
        let met = match r {
            Some(r) if if better == Better::Higher { r >= 1.0 } else { r <= 1.0 } => "met",
            Some(_) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(
            s,
            "| {}{} | {}{} | {} | {} | {} | {met} |",
            w.label(),
            disk_suffix(&disks, d),
            metric,
            if better == Better::Lower { " (lower is better)" } else { "" },
            cell(c),
            cell(find(outcomes, d, w, TargetKind::Zookeeper)),
            ratio_cell(r),
        );
    }
}

/// Renders the Markdown report.
pub fn markdown(meta: &Meta, params: &Params, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Conclave benchmark results{}\n", if meta.quick { " (quick smoke run)" } else { "" });
    let _ = writeln!(s, "- started: {} UTC", meta.started_utc);
    let _ = writeln!(s, "- command: `{}`", meta.command);
    let _ = writeln!(s, "- machine: {}", meta.machine);
    for v in &meta.servers {
        let _ = writeln!(s, "- {v}");
    }
    let _ = writeln!(
        s,
        "- parameters: {} s per throughput workload, {}-byte values, {} sessions (TTL {:?}) held {:?}, {} watchers × {} puts, {} leader kills with {} writers, {} job-manager kills (TTL {:?})",
        params.duration.as_secs(),
        params.value_size,
        params.sessions,
        params.session_ttl,
        params.session_hold,
        params.watchers,
        params.watch_rounds,
        params.failover_reps,
        params.failover_clients,
        params.election_reps,
        params.election_ttl
    );
    let _ = writeln!(s, "- all targets: 3 members on loopback, default durability (fsync on)");
    let disk_list: Vec<String> = meta.disks.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        s,
        "- disks: {} (FUSE: every data directory on `conclave-faultfs`, each fsync/fdatasync answered that much later)\n",
        disk_list.join(", ")
    );

    let _ = writeln!(s, "## Summary\n");
    let _ =
        writeln!(s, "| workload | metric | Conclave | etcd | ZooKeeper | Conclave/etcd | Conclave/ZooKeeper | goal |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---|");
    let workloads: Vec<Workload> =
        Workload::ALL.into_iter().filter(|w| outcomes.iter().any(|o| o.workload == *w)).collect();
    // One row per Conclave client profile that ran; its own "Conclave" value, the same others.
    let profiles: Vec<TargetKind> = [TargetKind::Conclave, TargetKind::ConclaveGeneric]
        .into_iter()
        .filter(|ck| outcomes.iter().any(|o| o.target == *ck))
        .collect();
    // With only the ZooKeeper-protocol target, its own table below is the comparison.
    let zk_only = outcomes.iter().any(|o| o.target == TargetKind::ConclaveZk);
    let profiles = if profiles.is_empty() && !zk_only { vec![TargetKind::Conclave] } else { profiles };
    let suffix = |ck: TargetKind| match (profiles.len(), etcd_for(outcomes, ck)) {
        (_, TargetKind::EtcdGeneric) => " — generic gRPC client (etcd too)",
        (1, _) => "",
        _ if ck == TargetKind::ConclaveGeneric => " — generic gRPC client",
        _ => " — Conclave's client",
    };
    let disks = disks(outcomes);
    for (&d, w) in disks.iter().flat_map(|d| workloads.iter().map(move |w| (d, w))) {
        let (metric, better) = w.headline();
        for &ck in &profiles {
            if find(outcomes, d, *w, ck).is_some_and(|o| matches!(o.status, Status::NotAvailable(_))) {
                continue;
            }
            let c = headline(outcomes, d, *w, ck);
            let etcd = etcd_for(outcomes, ck);
            let _ = writeln!(
                s,
                "| {}{}{} | {}{} | {} | {} | {} | {} | {} | {} |",
                w.label(),
                suffix(ck),
                disk_suffix(&disks, d),
                metric,
                if better == Better::Lower { " (lower is better)" } else { "" },
                cell(find(outcomes, d, *w, ck)),
                cell(find(outcomes, d, *w, etcd)),
                cell(find(outcomes, d, *w, TargetKind::Zookeeper)),
                ratio_cell(ratio(c, headline(outcomes, d, *w, etcd))),
                ratio_cell(ratio(c, headline(outcomes, d, *w, TargetKind::Zookeeper))),
                goal(outcomes, d, *w, ck)
            );
        }
    }
    // Memory after the 64-client put run (the shared KV cluster, measured right after it).
    let put64 = workloads.contains(&Workload::Put64);
    for (&d, &ck) in disks.iter().flat_map(|d| profiles.iter().map(move |ck| (d, ck))).filter(|_| put64) {
        let rss = |t| {
            find(outcomes, d, Workload::Put64, t).filter(|o| o.status == Status::Ok).map(|o| o.rss_bytes as f64 / MB)
        };
        let c = rss(ck);
        let etcd = etcd_for(outcomes, ck);
        let e = ratio(c, rss(etcd));
        let _ = writeln!(
            s,
            "| server RSS after put, 64 clients{}{} | MB, sum of 3 members (lower is better) | {} | {} | {} | {} | {} | < ½ etcd: {} |",
            suffix(ck),
            disk_suffix(&disks, d),
            c.map_or("–".into(), number),
            rss(etcd).map_or("–".into(), number),
            rss(TargetKind::Zookeeper).map_or("–".into(), number),
            ratio_cell(e),
            ratio_cell(ratio(c, rss(TargetKind::Zookeeper))),
            match e {
                Some(r) if r < 0.5 => "met",
                Some(_) => "**not met**",
                None => "not measured",
            }
        );
    }

    zk_protocol_table(&mut s, outcomes);

    let _ = writeln!(s, "\n## Details\n");
    let _ = writeln!(
        s,
        "RSS and data-dir size are sums over the 3 members at the end of the workload (the six KV workloads share one cluster per target, in table order). Server CPU is all members' user+system time during the measured interval. Watch latency is from the writer's acknowledgement to the last watcher's notification, per put (0 when every notification arrived before the acknowledgement). Failover latencies are the per-repetition gaps.\n"
    );
    let _ = writeln!(s, "| workload | target | ops | ops/s | p50 ms | p99 ms | max ms | errors | RSS MB | data MB | server CPU s | Raft log growth | notes |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (&d, w) in disks.iter().flat_map(|d| workloads.iter().map(move |w| (d, w))) {
        for t in TargetKind::ALL {
            let Some(o) = find(outcomes, d, *w, t) else { continue };
            let status_note = match &o.status {
                Status::Ok => String::new(),
                Status::Skipped(r) => format!("skipped: {r}"),
                Status::NotAvailable(r) => format!("not available: {r}"),
                Status::Failed(r) => format!("failed: {r}"),
            };
            let mut notes = o.notes.clone();
            if !status_note.is_empty() {
                notes.insert(0, status_note);
            }
            let measured = o.status == Status::Ok;
            let lat = o.latency.filter(|_| measured);
            let _ = writeln!(
                s,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.label(),
                disk_suffix(&disks, d),
                t.label(),
                if measured { count(o.ops) } else { "–".into() },
                o.ops_per_sec.filter(|_| measured).map_or("–".into(), number),
                lat.map_or("–".into(), |l| number(l.p50_ms)),
                lat.map_or("–".into(), |l| number(l.p99_ms)),
                lat.map_or("–".into(), |l| number(l.max_ms)),
                if measured { o.errors.to_string() } else { "–".into() },
                if measured { number(o.rss_bytes as f64 / MB) } else { "–".into() },
                if measured { number(o.data_dir_bytes as f64 / MB) } else { "–".into() },
                if measured { number(o.server_cpu_s) } else { "–".into() },
                o.raft_log_growth.map_or("–".into(), |g| g.to_string()),
                notes.join("; ").replace('|', "/")
            );
        }
    }
    let _ = writeln!(s, "\nPlots: `throughput.svg`, `latency.svg`. Raw data: `results.json`.");
    s
}

fn groups(
    outcomes: &[Outcome],
    pick: impl Fn(&Outcome) -> Option<f64>,
    workloads: &[Workload],
    suffix: &str,
) -> Vec<Group> {
    let disks = disks(outcomes);
    disks
        .iter()
        .flat_map(|d| workloads.iter().map(move |w| (*d, *w)))
        .filter(|(d, w)| outcomes.iter().any(|o| o.disk == *d && o.workload == *w))
        .map(|(d, w)| Group {
            label: format!("{}{}{suffix}", w.label(), disk_suffix(&disks, d)),
            values: TargetKind::ALL
                .iter()
                .map(|t| (*t, find(outcomes, d, w, *t).filter(|o| o.status == Status::Ok).and_then(&pick)))
                .collect(),
        })
        .filter(|g: &Group| g.values.iter().any(|(_, v)| v.is_some()))
        .collect()
}

/// Writes `results.md`, `results.json`, `throughput.svg` and `latency.svg` into `dir`.
///
/// # Errors
/// On I/O errors.
pub fn write_all(dir: &Path, meta: &Meta, params: &Params, outcomes: &[Outcome]) -> anyhow::Result<String> {
    let md = markdown(meta, params, outcomes);
    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&Json { meta, params, outcomes })?)?;
    let throughput = [
        Workload::Put1,
        Workload::Put64,
        Workload::GetLinearizable,
        Workload::GetSerializable,
        Workload::Counter1,
        Workload::Counter16,
    ];
    let tp = groups(outcomes, |o| o.ops_per_sec, &throughput, "");
    std::fs::write(
        dir.join("throughput.svg"),
        bar_chart("Throughput", "operations per second (higher is better)", &tp),
    )?;
    let mut lat = Vec::new();
    for w in Workload::ALL {
        lat.extend(groups(outcomes, |o| o.latency.map(|l| l.p50_ms), &[w], " — p50"));
        lat.extend(groups(outcomes, |o| o.latency.map(|l| l.p99_ms), &[w], " — p99"));
    }
    std::fs::write(
        dir.join("latency.svg"),
        bar_chart(
            "Latency",
            "ms (lower is better); watch: ack → last notification; leader failover: writes during the run; job manager: takeover",
            &lat,
        ),
    )?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::LatencyStats;

    fn meta(disks: Vec<Disk>) -> Meta {
        Meta {
            started_utc: "now".into(),
            command: "x".into(),
            machine: "m".into(),
            servers: vec![],
            quick: true,
            disks,
        }
    }

    #[test]
    fn table_has_ratios_and_goals() {
        let mk = |t, v: f64, rss: u64| {
            let mut o = Outcome::new(Workload::Put64, t, Status::Ok);
            o.headline = Some(v);
            o.ops_per_sec = Some(v);
            o.latency = Some(LatencyStats::default());
            o.rss_bytes = rss;
            o
        };
        let outcomes = vec![
            mk(TargetKind::Conclave, 30_000.0, 100 << 20),
            mk(TargetKind::Etcd, 12_000.0, 300 << 20),
            Outcome::new(Workload::Put64, TargetKind::Zookeeper, Status::Skipped("not installed".into())),
        ];
        let meta = meta(vec![Disk::Native]);
        let md = markdown(&meta, &Params::quick(), &outcomes);
        assert!(
            md.contains("| put, 64 clients | ops/s | 30,000 | 12,000 | skipped | 2.50× | – | ≥ 2× etcd: met |"),
            "{md}"
        );
        assert!(md.contains("< ½ etcd: met"), "{md}");
        assert!(md.contains("skipped: not installed"), "{md}");
    }

    #[test]
    fn zookeeper_protocol_table_compares_with_zookeeper_in_the_right_direction() {
        let mk = |w, t, v: f64| {
            let mut o = Outcome::new(w, t, Status::Ok);
            o.headline = Some(v);
            o
        };
        let outcomes = vec![
            mk(Workload::Create, TargetKind::ConclaveZk, 9_000.0),
            mk(Workload::Create, TargetKind::Zookeeper, 6_000.0),
            mk(Workload::LeaderFailover, TargetKind::ConclaveZk, 2.0),
            mk(Workload::LeaderFailover, TargetKind::Zookeeper, 1.0),
            Outcome::new(Workload::JobManagerFailover, TargetKind::ConclaveZk, Status::NotAvailable("x".into())),
        ];
        let md = markdown(&meta(vec![Disk::Native]), &Params::quick(), &outcomes);
        assert!(md.contains("| create, 64 clients | ops/s | 9,000 | 6,000 | 1.50× | met |"), "{md}");
        assert!(md.contains("| leader failover | median gap to next acked write, s (lower is better) | 2.00 | 1.00 | 2.00× | **not met** |"), "{md}");
        let zk_table = &md[md.find("## ZooKeeper protocol").unwrap_or(0)..md.find("## Details").unwrap_or(0)];
        assert!(!zk_table.contains("job-manager"), "{md}");
    }

    #[test]
    fn each_client_profile_gets_its_own_row_and_ratio() {
        let mk = |t, v: f64| {
            let mut o = Outcome::new(Workload::Put64, t, Status::Ok);
            o.headline = Some(v);
            o.ops_per_sec = Some(v);
            o
        };
        let mut sessions = Outcome::new(Workload::Sessions, TargetKind::ConclaveGeneric, Status::Ok);
        sessions.status = Status::NotAvailable("KV only".into());
        let outcomes = vec![
            mk(TargetKind::Conclave, 30_000.0),
            mk(TargetKind::ConclaveGeneric, 9_000.0),
            mk(TargetKind::Etcd, 6_000.0),
            sessions,
        ];
        let meta = meta(vec![Disk::Native]);
        let md = markdown(&meta, &Params::quick(), &outcomes);
        assert!(md.contains("| put, 64 clients — Conclave's client | ops/s | 30,000 | 6,000 | – | 5.00× |"), "{md}");
        assert!(
            md.contains("| put, 64 clients — generic gRPC client | ops/s | 9,000 | 6,000 | – | 1.50× | – | ≥ 2× etcd: **not met** |"),
            "{md}"
        );
        assert!(!md.contains("| session keep-alive — generic"), "{md}");

        // With etcd under the generic client too, the generic row is compared with that column.
        let mut outcomes = outcomes;
        outcomes.push(mk(TargetKind::EtcdGeneric, 3_000.0));
        let md = markdown(&meta, &Params::quick(), &outcomes);
        assert!(md.contains("| put, 64 clients — Conclave's client | ops/s | 30,000 | 6,000 | – | 5.00× |"), "{md}");
        assert!(
            md.contains("| put, 64 clients — generic gRPC client (etcd too) | ops/s | 9,000 | 3,000 | – | 3.00× | – | ≥ 2× etcd: met |"),
            "{md}"
        );
    }

    #[test]
    fn each_disk_gets_its_own_rows() {
        let mk = |t, d, v: f64| {
            let mut o = Outcome::new(Workload::Put1, t, Status::Ok);
            o.disk = d;
            o.headline = Some(v);
            o.ops_per_sec = Some(v);
            o
        };
        let slow = Disk::FsyncDelayMs(5);
        let outcomes = vec![
            mk(TargetKind::Conclave, Disk::Native, 800.0),
            mk(TargetKind::Etcd, Disk::Native, 400.0),
            mk(TargetKind::Conclave, slow, 60.0),
            mk(TargetKind::Etcd, slow, 80.0),
        ];
        let meta = meta(vec![Disk::Native, slow]);
        let md = markdown(&meta, &Params::quick(), &outcomes);
        assert!(md.contains("| put, 1 client @ native disk | ops/s | 800.0 | 400.0 | – | 2.00× |"), "{md}");
        assert!(md.contains("| put, 1 client @ FUSE, fsync +5 ms | ops/s | 60.0 | 80.0 | – | 0.75× |"), "{md}");
        assert!(md.contains("- disks: native disk, FUSE, fsync +5 ms"), "{md}");
    }
}
