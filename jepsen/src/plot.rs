//! Plots as hand-written SVG (no font or plotting packages): latency of every operation over
//! time (log scale, one colour per function, one shape per outcome) and throughput per second by
//! outcome, both with the fault intervals shaded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::history::{fault_intervals, pair, Event, EventType, FaultInterval};

const W: f64 = 1000.0;
const H: f64 = 500.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;
const PALETTE: [&str; 8] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f"];
/// At most this many points per plot (evenly sampled beyond).
const MAX_POINTS: usize = 40_000;

struct Frame {
    x_max: f64,
    y_min: f64,
    y_max: f64,
    log: bool,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.x_max).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.y_min).log10() - self.y_min.log10()) / (self.y_max.log10() - self.y_min.log10())
        } else {
            (v - self.y_min) / (self.y_max - self.y_min)
        };
        H - BOTTOM - f.clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn header(s: &mut String, title: &str, frame: &Frame, faults: &[FaultInterval], y_label: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    for f in faults {
        let (x0, x1) = (frame.x(f.start as f64 / 1e9), frame.x(f.end as f64 / 1e9));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{}" fill="#d62728" fill-opacity="0.10"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            H - TOP - BOTTOM,
            escape(&f.what)
        );
    }
    // Axes and ticks.
    let (x_axis, y_axis) = (H - BOTTOM, LEFT);
    let _ = writeln!(s, r#"<line x1="{y_axis}" y1="{TOP}" x2="{y_axis}" y2="{x_axis}" stroke="black"/>"#);
    let _ = writeln!(s, r#"<line x1="{y_axis}" y1="{x_axis}" x2="{}" y2="{x_axis}" stroke="black"/>"#, W - RIGHT);
    let step = nice_step(frame.x_max / 10.0);
    let mut t = 0.0;
    while t <= frame.x_max + 1e-9 {
        let x = frame.x(t);
        let _ = writeln!(s, r#"<line x1="{x:.1}" y1="{x_axis}" x2="{x:.1}" y2="{}" stroke="black"/>"#, x_axis + 4.0);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{t}</text>"#, x_axis + 16.0);
        t += step;
    }
    let _ =
        writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#, (W - RIGHT + LEFT) / 2.0, H - 8.0);
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{y_label}</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        (H - BOTTOM + TOP) / 2.0
    );
    let ticks: Vec<f64> = if frame.log {
        let mut v = Vec::new();
        let mut p = frame.y_min;
        while p <= frame.y_max * 1.0001 {
            v.push(p);
            p *= 10.0;
        }
        v
    } else {
        let step = nice_step(frame.y_max / 6.0);
        (0..=((frame.y_max / step) as usize)).map(|i| i as f64 * step).collect()
    };
    for v in ticks {
        let y = frame.y(v);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eeeeee"/>"##, W - RIGHT);
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#, LEFT - 6.0, y + 4.0);
    }
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

fn legend(s: &mut String, rows: &[(String, String)]) {
    for (i, (color, label)) in rows.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 16.0;
        let x = W - RIGHT + 12.0;
        let _ = writeln!(s, r#"<rect x="{x}" y="{}" width="10" height="10" fill="{color}"/>"#, y - 8.0);
        let _ = writeln!(s, r#"<text x="{}" y="{y}">{}</text>"#, x + 16.0, escape(label));
    }
}

fn marker(s: &mut String, kind: EventType, x: f64, y: f64, color: &str) {
    let _ = match kind {
        EventType::Ok => writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="1.6" fill="{color}" fill-opacity="0.6"/>"#),
        EventType::Fail => writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="3.4" height="3.4" fill="none" stroke="{color}"/>"#,
            x - 1.7,
            y - 1.7
        ),
        _ => writeln!(s, r#"<path d="M{:.1} {:.1}l3.4 3.4m0 -3.4l-3.4 3.4" stroke="{color}"/>"#, x - 1.7, y - 1.7),
    };
}

/// Writes `latency.svg` and `throughput.svg` into `dir`; returns their paths.
///
/// # Errors
/// When a file cannot be written.
pub fn write(dir: &Path, events: &[Event]) -> anyhow::Result<Vec<PathBuf>> {
    let ops = pair(events).unwrap_or_default();
    let faults = fault_intervals(events);
    let span_s = (events.iter().map(|e| e.time).max().unwrap_or(0) as f64 / 1e9).max(1.0);
    let fs: Vec<&str> = {
        let mut v: Vec<&str> = ops.iter().map(|o| o.f.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let color = |f: &str| PALETTE[fs.iter().position(|x| *x == f).unwrap_or(0) % PALETTE.len()];

    // Latency.
    let done: Vec<_> = ops.iter().filter(|o| o.complete.is_some()).collect();
    let max_ms = done.iter().filter_map(|o| o.latency()).max().unwrap_or(1) as f64 / 1e6;
    let frame = Frame { x_max: span_s, y_min: 0.1, y_max: 10f64.powf(max_ms.max(1.0).log10().ceil()), log: true };
    let mut s = String::new();
    header(&mut s, "latency of each operation (shaded: faults)", &frame, &faults, "latency (ms, log)");
    let every = done.len().div_ceil(MAX_POINTS).max(1);
    for o in done.iter().step_by(every) {
        let (Some(lat), Some(end)) = (o.latency(), o.complete) else { continue };
        let _ = end;
        marker(&mut s, o.outcome, frame.x(o.invoke as f64 / 1e9), frame.y(lat as f64 / 1e6), color(&o.f));
    }
    let mut rows: Vec<(String, String)> = fs.iter().map(|f| (color(f).to_owned(), (*f).to_owned())).collect();
    rows.push(("none".into(), "o ok  □ fail  × info".into()));
    legend(&mut s, &rows);
    s.push_str("</svg>\n");
    let latency = dir.join("latency.svg");
    std::fs::write(&latency, &s)?;

    // Throughput: completions per second by outcome.
    let bins = span_s.ceil() as usize + 1;
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for o in &done {
        let Some(end) = o.complete else { continue };
        let label = match o.outcome {
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            _ => "info",
        };
        let bin = ((end as f64 / 1e9) as usize).min(bins - 1);
        counts.entry(label).or_insert_with(|| vec![0; bins])[bin] += 1;
    }
    let peak = counts.values().flat_map(|v| v.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let frame = Frame { x_max: span_s, y_min: 0.0, y_max: peak * 1.1, log: false };
    let mut s = String::new();
    header(&mut s, "throughput (completions per second; shaded: faults)", &frame, &faults, "operations / s");
    let colors = [("ok", "#2ca02c"), ("fail", "#d62728"), ("info", "#ff7f0e")];
    for (label, c) in colors {
        let Some(v) = counts.get(label) else { continue };
        let points: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{:.1},{:.1}", frame.x(i as f64 + 0.5), frame.y(*n as f64)))
            .collect();
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.5"/>"#, points.join(" "));
    }
    legend(&mut s, &colors.iter().map(|(l, c)| ((*c).to_owned(), (*l).to_owned())).collect::<Vec<_>>());
    s.push_str("</svg>\n");
    let throughput = dir.join("throughput.svg");
    std::fs::write(&throughput, &s)?;
    Ok(vec![latency, throughput])
}
