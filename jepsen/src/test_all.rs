//! `test-all`: every workload under every nemesis on its own, then under all of them together;
//! prints and saves the table of verdicts and operation counts.

use std::fmt::Write as _;

use crate::checker::Verdict;
use crate::nemesis;
use crate::runner::{self, TestOpts};
use crate::workload;

/// One row of the table.
pub struct Row {
    /// Workload name.
    pub workload: &'static str,
    /// Nemesis names.
    pub nemesis: String,
    /// Verdict, or `None` on a harness error.
    pub verdict: Option<Verdict>,
    /// Client operations completed.
    pub ops: usize,
    /// Run directory or error message.
    pub note: String,
}

/// Runs the matrix; returns the rows and the combined exit code.
pub async fn run(base: &TestOpts, workloads: &[workload::Kind], nemeses: &[nemesis::Kind]) -> (Vec<Row>, i32) {
    let mut combos: Vec<Vec<nemesis::Kind>> = nemeses.iter().map(|k| vec![*k]).collect();
    if nemeses.len() > 1 {
        combos.push(nemeses.to_vec());
    }
    let mut rows = Vec::new();
    let mut code = 0;
    for w in workloads {
        for combo in &combos {
            let opts = TestOpts { workload: *w, nemeses: combo.clone(), ..base.clone() };
            let name: Vec<&str> = combo.iter().map(|k| k.name()).collect();
            let row = match runner::run(&opts).await {
                Ok(r) => {
                    code = worse(code, r.verdict.exit_code());
                    let bad: Vec<String> = r
                        .results
                        .iter()
                        .filter(|c| c.verdict != Verdict::Valid)
                        .map(|c| format!("{} {}: {}", c.name, c.verdict, c.summary))
                        .collect();
                    let dir = r.dir.display();
                    let note = if bad.is_empty() { dir.to_string() } else { format!("{dir} ({})", bad.join("; ")) };
                    Row { workload: w.name(), nemesis: name.join("+"), verdict: Some(r.verdict), ops: r.ops, note }
                }
                Err(e) => {
                    code = 255;
                    Row {
                        workload: w.name(),
                        nemesis: name.join("+"),
                        verdict: None,
                        ops: 0,
                        note: format!("harness error: {e:#}"),
                    }
                }
            };
            println!("test-all: {} x {} -> {}", row.workload, row.nemesis, verdict_text(&row));
            rows.push(row);
        }
    }
    (rows, code)
}

fn worse(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        0 => 0,
        2 => 1,
        1 => 2,
        _ => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn verdict_text(r: &Row) -> String {
    r.verdict.map_or_else(|| "error".to_owned(), |v| v.to_string())
}

/// The table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from("| workload | nemesis | verdict | ops | run |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(s, "| {} | {} | {} | {} | {} |", r.workload, r.nemesis, verdict_text(r), r.ops, r.note);
    }
    s
}
