//! `watch`: writers put unique values to one key; a few workers watch it from a revision read
//! at their start (through the client's resumable `Watcher`). When the phase ends, each watcher
//! waits (up to 15 s) until it has delivered the key's last write, then records everything it
//! saw as one operation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conclave_client::proto as pb;
use conclave_client::{WatchEvent, WatchOptions};
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};

/// Number of watching workers (the others write).
const WATCHERS: usize = 3;

fn key(ctx: &Ctx) -> String {
    format!("{}watch/k", ctx.prefix)
}

/// Runs one watch worker: the first [`WATCHERS`] watch, the others write.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    if index < WATCHERS.min(ctx.settings.concurrency.saturating_sub(1)).max(1) {
        watch(&mut w).await;
        return;
    }
    let key = key(&ctx);
    while w.pace().await {
        let value = ctx.sequence.fetch_add(1, Ordering::Relaxed);
        let inv = w.invoke("write", Some(key.clone()), json!(value));
        let req = pb::PutRequest {
            key: key.clone().into_bytes(),
            value: value.to_string().into_bytes(),
            ..Default::default()
        };
        let c = w
            .bounded(async {
                match w.client.put_request(req).await {
                    Ok(r) => Completion::Ok(
                        json!({"revision": r.header.as_ref().map_or(0, |h| h.revision)}),
                        served_by(r.header.as_ref()),
                    ),
                    Err(e) => classify(&e, true),
                }
            })
            .await;
        w.complete(inv, c).await;
    }
}

/// The key's current mod revision and the store revision (linearizable), retried up to `budget`.
async fn current(w: &Worker, key: &str, budget: Duration) -> Option<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        let req = pb::RangeRequest {
            range: Some(pb::KeyRange { key: key.as_bytes().to_vec(), ..Default::default() }),
            ..Default::default()
        };
        if let Ok(Ok(r)) = tokio::time::timeout(w.ctx.settings.op_timeout, w.client.range_request(req)).await {
            let store = r.header.as_ref().map_or(0, |h| h.revision);
            return Some((r.kvs.first().map_or(0, |kv| kv.mod_revision), store));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn watch(w: &mut Worker) {
    let key = key(&w.ctx);
    // Start at the revision after a read, so the span the watcher covers is known exactly.
    let Some((_, now)) = current(w, &key, Duration::from_secs(20)).await else { return };
    let start = now + 1;
    let inv = w.invoke("watch", Some(key.clone()), json!({ "start_revision": start }));
    let mut watcher = w.client.watch(&key, WatchOptions { start_revision: start, ..WatchOptions::default() });
    let mut seen: Vec<Value> = Vec::new();
    let mut last = 0u64;
    let mut ended: Option<String> = None;
    let mut stop = w.ctx.stop.clone();
    let mut target: Option<u64> = None;
    let mut catch_up_deadline = None;
    loop {
        if let Some(t) = target {
            if last >= t {
                break;
            }
        }
        let next = tokio::select! {
            n = watcher.next() => n,
            _ = stop.changed(), if target.is_none() => {
                // Phase over: learn the key's last write, then drain up to it.
                target = Some(current(w, &key, Duration::from_secs(10)).await.map_or(u64::MAX, |(m, _)| m));
                catch_up_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(15));
                continue;
            }
            _ = sleep_until_opt(catch_up_deadline) => {
                ended = Some(format!("did not reach revision {target:?} within 15 s (at {last})"));
                break;
            }
        };
        match next {
            Some(Ok(WatchEvent::Changes { revision, events })) => {
                for e in events {
                    let value = if e.r#type == pb::event::EventType::Delete as i32 {
                        Value::Null
                    } else {
                        e.kv.as_ref()
                            .and_then(|kv| String::from_utf8_lossy(&kv.value).parse::<u64>().ok())
                            .map_or(Value::Null, |v| json!(v))
                    };
                    seen.push(json!([revision, value]));
                }
                last = revision;
            }
            Some(Ok(WatchEvent::Progress { revision })) => last = last.max(revision),
            Some(Ok(WatchEvent::Compacted { oldest })) => {
                ended = Some(format!("compacted (oldest {oldest})"));
                break;
            }
            Some(Err(e)) => {
                ended = Some(e.to_string());
                break;
            }
            None => {
                ended = Some("watch ended".into());
                break;
            }
        }
    }
    let result = json!({"events": seen, "ended": ended});
    w.complete_keep(inv, Completion::Ok(result, None));
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
