//! `watch`: streams changes, one line per event, until killed.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use conclave_client::proto as pb;
use conclave_client::{WatchEvent, WatchOptions};
use serde::Serialize;

use crate::output::{json_line, lossy, Format};
use crate::Globals;

/// `watch` flags.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The key (or prefix with --prefix).
    pub key: String,
    /// Every key starting with KEY.
    #[arg(long)]
    pub prefix: bool,
    /// Start at this revision (replays history from it; 0 = changes after now).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rev: u64,
    /// Include each key's previous value.
    #[arg(long)]
    pub prev_kv: bool,
}

/// One event in JSON.
#[derive(Serialize, Debug, PartialEq)]
struct EventJson {
    #[serde(rename = "type")]
    kind: &'static str,
    key: String,
    value: String,
    mod_revision: u64,
    /// Present only with --prev-kv; null when the key did not exist before.
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_value: Option<Option<String>>,
}

fn event_json(e: &pb::Event, revision: u64, prev_kv: bool) -> EventJson {
    let delete = e.r#type == pb::event::EventType::Delete as i32;
    let kv = e.kv.clone().unwrap_or_default();
    EventJson {
        kind: if delete { "delete" } else { "put" },
        key: lossy(&kv.key),
        value: if delete { String::new() } else { lossy(&kv.value) },
        mod_revision: if kv.mod_revision == 0 { revision } else { kv.mod_revision },
        prev_value: prev_kv.then(|| e.prev_kv.as_ref().map(|p| lossy(&p.value))),
    }
}

/// An event as text: `[rev N] PUT key value` or `[rev N] DELETE key` (with --prev-kv:
/// ` (prev: value)` when the key existed before).
fn event_text(e: &EventJson) -> String {
    let mut s = match e.kind {
        "delete" => format!("[rev {}] DELETE {}", e.mod_revision, e.key),
        _ => format!("[rev {}] PUT {} {}", e.mod_revision, e.key, e.value),
    };
    if let Some(Some(prev)) = &e.prev_value {
        s.push_str(&format!(" (prev: {prev})"));
    }
    s
}

/// `watch KEY [--prefix] [--rev N] [--prev-kv]`.
pub async fn run(g: &Globals, out: &mut dyn Write, a: &WatchArgs) -> Result<()> {
    let client = g.client().await?;
    let opts = WatchOptions { prefix: a.prefix, start_revision: a.rev, prev_kv: a.prev_kv, ..WatchOptions::default() };
    let mut watcher = client.watch(&a.key, opts);
    loop {
        let event = match watcher.next().await {
            Some(r) => r.with_context(|| format!("watch {:?}", a.key))?,
            None => bail!("watch {:?}: the watch ended", a.key),
        };
        match event {
            WatchEvent::Changes { revision, events } => {
                for e in &events {
                    let j = event_json(e, revision, a.prev_kv);
                    match g.format {
                        Format::Json => json_line(out, &j)?,
                        Format::Text => writeln!(out, "{}", event_text(&j))?,
                    }
                }
                out.flush()?;
            }
            WatchEvent::Progress { .. } => {}
            WatchEvent::Compacted { oldest } => bail!(
                "watch {:?}: the revisions to deliver were compacted; the oldest revision still available is \
                 {oldest} (re-read the current state and watch from its revision + 1)",
                a.key
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(delete: bool, prev: Option<&str>) -> pb::Event {
        pb::Event {
            r#type: if delete { pb::event::EventType::Delete } else { pb::event::EventType::Put } as i32,
            kv: Some(pb::KeyValue {
                key: "k".into(),
                value: if delete { Vec::new() } else { "v w".into() },
                mod_revision: 12,
                ..Default::default()
            }),
            prev_kv: prev.map(|p| pb::KeyValue { key: "k".into(), value: p.into(), ..Default::default() }),
        }
    }

    #[test]
    fn event_formats() -> Result<()> {
        let put = event_json(&event(false, None), 12, false);
        assert_eq!(serde_json::to_string(&put)?, r#"{"type":"put","key":"k","value":"v w","mod_revision":12}"#);
        assert_eq!(event_text(&put), "[rev 12] PUT k v w");
        let del = event_json(&event(true, Some("old")), 12, true);
        assert_eq!(
            serde_json::to_string(&del)?,
            r#"{"type":"delete","key":"k","value":"","mod_revision":12,"prev_value":"old"}"#
        );
        assert_eq!(event_text(&del), "[rev 12] DELETE k (prev: old)");
        let created = event_json(&event(false, None), 12, true);
        assert!(serde_json::to_string(&created)?.ends_with(r#""prev_value":null}"#));
        Ok(())
    }
}
