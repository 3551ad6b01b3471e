//! The progress bar shown while a run's workload phase lasts (indicatif; hidden when stderr is
//! not a terminal).

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::history::Recorder;

/// A running progress bar and its updater.
pub struct Bar {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a bar counting seconds up to `limit`, showing operations and the fault in force.
pub fn start(enabled: bool, recorder: Arc<Recorder>, limit: Duration, name: &str) -> Option<Bar> {
    if !enabled {
        return None;
    }
    let bar = ProgressBar::new(limit.as_secs().max(1));
    let style = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        loop {
            let ([ok, fail, info], fault) = recorder.progress();
            b.set_position(start.elapsed().as_secs().min(limit.as_secs()));
            let fault = if fault.is_empty() { "healthy".to_owned() } else { fault };
            b.set_message(format!("ok {ok} fail {fail} info {info} | {fault}"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Some(Bar { bar, task })
}

/// Stops and clears the bar.
pub fn finish(bar: Option<Bar>) {
    if let Some(b) = bar {
        b.task.abort();
        b.bar.finish_and_clear();
    }
}
