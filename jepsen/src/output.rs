//! What a run leaves behind and prints: `results.json`, one witness file per anomaly, the plots,
//! and the summary (operations by outcome, throughput, latency quantiles, faults, verdicts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::checker::{overall, CheckResult, Verdict};
use crate::history::{pair, Event, EventType};
use crate::plot;

/// `YYYYMMDDTHHMMSS` (UTC) plus milliseconds, for run directory names.
pub fn timestamp() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Writes `results.json`, witnesses, plots and `summary.txt` into `dir`; prints the summary.
///
/// # Errors
/// When a file cannot be written.
pub fn write_all(dir: &Path, events: &[Event], results: &[CheckResult], faults: &[String]) -> anyhow::Result<()> {
    let witnesses = write_witnesses(dir, results)?;
    let plots = plot::write(dir, events)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&json!({
            "verdict": overall(results),
            "results": results.iter().map(|r| json!({"name": r.name, "verdict": r.verdict, "summary": r.summary})).collect::<Vec<_>>(),
            "faults": faults,
        }))?,
    )?;
    let text = summary(dir, events, results, faults, &witnesses, &plots);
    std::fs::write(dir.join("summary.txt"), &text)?;
    println!("{text}");
    Ok(())
}

/// Writes one JSON file per result that has a witness; returns (checker, path).
///
/// # Errors
/// When a file cannot be written.
pub fn write_witnesses(dir: &Path, results: &[CheckResult]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for r in results.iter().filter(|r| r.witness.is_some() && r.verdict != Verdict::Valid) {
        let folder = dir.join("anomalies");
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("{}.json", r.name));
        std::fs::write(&path, serde_json::to_vec_pretty(&r.witness)?)?;
        out.insert(r.name.clone(), path);
    }
    Ok(out)
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The human-readable summary of a run.
pub fn summary(
    dir: &Path,
    events: &[Event],
    results: &[CheckResult],
    faults: &[String],
    witnesses: &BTreeMap<String, PathBuf>,
    plots: &[PathBuf],
) -> String {
    let mut s = String::new();
    let ops = pair(events).unwrap_or_default();
    let span = events.iter().map(|e| e.time).max().unwrap_or(0).max(1);
    let _ = writeln!(s, "\n== {} ==", dir.display());
    let _ = writeln!(s, "operations ({} in {:.1} s):", ops.len(), span as f64 / 1e9);
    let _ = writeln!(
        s,
        "  {:<14} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "f", "ok", "fail", "info", "ok/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    let mut by_f: BTreeMap<&str, Vec<&crate::history::Op>> = BTreeMap::new();
    for op in &ops {
        by_f.entry(op.f.as_str()).or_default().push(op);
    }
    for (f, list) in &by_f {
        let count = |k: EventType| list.iter().filter(|o| o.outcome == k).count();
        let mut lat: Vec<u64> =
            list.iter().filter(|o| o.outcome == EventType::Ok).filter_map(|o| o.latency()).collect();
        lat.sort_unstable();
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>7} {:>7} {:>8.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            f,
            count(EventType::Ok),
            count(EventType::Fail),
            count(EventType::Info) + count(EventType::Invoke),
            count(EventType::Ok) as f64 / (span as f64 / 1e9),
            ms(quantile(&lat, 0.5)),
            ms(quantile(&lat, 0.95)),
            ms(quantile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or(0)),
        );
    }
    let recorded: Vec<String>;
    let faults = if faults.is_empty() {
        recorded = crate::history::fault_intervals(events).into_iter().map(|f| f.what).collect();
        &recorded[..]
    } else {
        faults
    };
    let _ = writeln!(s, "faults applied ({}):", faults.len());
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for f in faults {
        let is_node = |w: &str| w.starts_with('n') && w[1..].starts_with(|c: char| c.is_ascii_digit());
        let family: Vec<&str> = f.split_whitespace().take_while(|w| !is_node(w) && *w != "|").collect();
        *counted.entry(family.join(" ")).or_default() += 1;
    }
    for (family, n) in &counted {
        let _ = writeln!(s, "  {n:>3} x {family}");
    }
    let _ = writeln!(s, "checkers:");
    for r in results {
        let _ = writeln!(s, "  {:<13} {:<8} {}", r.name, r.verdict.to_string(), r.summary);
        if let Some(p) = witnesses.get(&r.name) {
            let _ = writeln!(s, "  {:<13} witness: {}", "", p.display());
        }
    }
    for p in plots {
        let _ = writeln!(s, "plot: {}", p.display());
    }
    let _ = writeln!(s, "verdict: {}", overall(results));
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_timestamp() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(timestamp().len(), "20260101T000000.000".len());
    }
}
