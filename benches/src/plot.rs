//! Plots as self-contained SVG (no plotting or font libraries): grouped horizontal bars, one
//! group per workload, one bar per target. Each group is scaled to its own maximum, since
//! workloads differ by orders of magnitude; the value is printed at the end of each bar.

use std::fmt::Write;

use crate::targets::TargetKind;

/// One group of bars: a label and one value per target (`None` = not measured).
pub struct Group {
    /// Row label.
    pub label: String,
    /// Values by target.
    pub values: Vec<(TargetKind, Option<f64>)>,
}

fn color(t: TargetKind) -> &'static str {
    match t {
        TargetKind::Conclave => "#2b6cb0",
        TargetKind::ConclaveGeneric => "#63b3ed",
        TargetKind::ConclaveZk => "#2c7a7b",
        TargetKind::Etcd => "#d69e2e",
        TargetKind::EtcdGeneric => "#f6e05e",
        TargetKind::Zookeeper => "#718096",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders a grouped horizontal bar chart.
pub fn bar_chart(title: &str, unit: &str, groups: &[Group]) -> String {
    const LABEL_W: f64 = 260.0;
    const BAR_W: f64 = 420.0;
    const BAR_H: f64 = 14.0;
    const GAP: f64 = 12.0;
    let bars_per_group = groups.iter().map(|g| g.values.len()).max().unwrap_or(1) as f64;
    let group_h = bars_per_group * (BAR_H + 2.0) + GAP;
    let height = 75.0 + group_h * groups.len() as f64 + 30.0;
    let width = LABEL_W + BAR_W + 140.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(s, r#"<text x="10" y="40" fill="gray">{}</text>"#, escape(unit));
    // Legend, on its own line.
    let mut lx = 10.0;
    for t in TargetKind::ALL {
        let _ = writeln!(s, r#"<rect x="{lx}" y="48" width="12" height="12" fill="{}"/>"#, color(t));
        let _ = writeln!(s, r#"<text x="{}" y="58">{}</text>"#, lx + 16.0, t.label());
        lx += 110.0;
    }
    let mut y = 75.0;
    for g in groups {
        let max = g.values.iter().filter_map(|(_, v)| *v).fold(0.0_f64, f64::max);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL_W - 10.0,
            y + group_h / 2.0 - GAP / 2.0 + 4.0,
            escape(&g.label)
        );
        for (i, (t, v)) in g.values.iter().enumerate() {
            let by = y + i as f64 * (BAR_H + 2.0);
            match v {
                Some(v) => {
                    let w = if max > 0.0 { (v / max * BAR_W).max(1.0) } else { 1.0 };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{LABEL_W}" y="{by}" width="{w:.1}" height="{BAR_H}" fill="{}"/>"#,
                        color(*t)
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{}">{}</text>"#,
                        LABEL_W + w + 4.0,
                        by + BAR_H - 3.0,
                        fmt_value(*v)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{}" y="{}" fill="gray">{}: n/a</text>"#,
                        LABEL_W + 4.0,
                        by + BAR_H - 3.0,
                        t.label()
                    );
                }
            }
        }
        y += group_h;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bars_and_missing_values() {
        let g = Group {
            label: "put <64>".into(),
            values: vec![(TargetKind::Conclave, Some(10.0)), (TargetKind::Etcd, None)],
        };
        let svg = bar_chart("t", "ops/s", &[g]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("put &lt;64&gt;"));
        assert!(svg.contains("etcd: n/a"));
    }
}
