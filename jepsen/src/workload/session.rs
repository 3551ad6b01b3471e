//! `session`: each process opens a session (TTL 2 s), binds an ephemeral key to it and renews it
//! by hand (so every keep-alive is recorded), reading its own and others' keys in between. Now
//! and then a process abandons its session (stops renewing) and starts over; at the end every
//! session is abandoned and the keys are read until they must be gone.

use std::sync::Arc;
use std::time::Duration;

use conclave_client::proto as pb;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};
use crate::checker::session::SLACK_MS;

/// Session TTL (the server's minimum; the pause nemesis stalls a majority for 1.5 x this).
pub const TTL: Duration = Duration::from_secs(2);

/// Runs one session worker.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    while !ctx.stopped() {
        let Some((id, key)) = open(&mut w).await else {
            w.renew().await;
            if !w.nap(Duration::from_millis(200)).await {
                break;
            }
            continue;
        };
        live(&mut w, id, &key).await;
        w.instant("abandon", None, json!({"session": id}));
        // Start over as a new process, as after any unknown outcome.
        w.renew().await;
    }
}

/// Opens a session and binds a new ephemeral key to it.
async fn open(w: &mut Worker) -> Option<(u64, String)> {
    let inv = w.invoke("open", None, Value::Null);
    let c = w
        .bounded(async {
            match w.client.session_open(TTL).await {
                Ok(id) => Completion::Ok(json!({"session": id, "ttl_ms": TTL.as_millis() as u64}), None),
                Err(e) => classify(&e, true),
            }
        })
        .await;
    let id = match &c {
        Completion::Ok(v, _) => v["session"].as_u64(),
        _ => None,
    };
    w.complete(inv, c).await;
    let id = id?;
    let key = format!("{}session/{}", w.ctx.prefix, w.process);
    let inv = w.invoke("put-ephemeral", Some(key.clone()), json!({"session": id}));
    let req =
        pb::PutRequest { key: key.clone().into_bytes(), value: b"1".to_vec(), session_id: id, ..Default::default() };
    let c = w
        .bounded(async {
            match w.client.put_request(req).await {
                Ok(r) => Completion::Ok(Value::Null, served_by(r.header.as_ref())),
                Err(e) => classify(&e, true),
            }
        })
        .await;
    let ok = matches!(c, Completion::Ok(..));
    let unknown = matches!(c, Completion::Info(_));
    w.complete_keep(inv, c);
    if ok || unknown {
        if let Ok(mut r) = w.ctx.registry.lock() {
            r.push(key.clone());
        }
    }
    if ok {
        Some((id, key))
    } else {
        // The session expires on its own.
        w.instant("abandon", None, json!({"session": id}));
        None
    }
}

/// Keeps the session alive (every TTL / 4) and reads keys in between, until the session is
/// gone, the process decides to abandon it, or the phase ends.
async fn live(w: &mut Worker, id: u64, own: &str) {
    let every = TTL / 4;
    let mut next_keep_alive = tokio::time::Instant::now() + every;
    loop {
        if tokio::time::Instant::now() >= next_keep_alive {
            next_keep_alive = tokio::time::Instant::now() + every;
            let inv = w.invoke("keep-alive", None, json!({"session": id}));
            let c = w
                .bounded(async {
                    match w.client.keep_alive(&[id]).await {
                        Ok(results) => {
                            let alive = results.iter().any(|r| r.session_id == id && r.alive);
                            Completion::Ok(json!({ "alive": alive }), None)
                        }
                        // A failed keep-alive may still have renewed the session.
                        Err(e) => Completion::Info(e.to_string()),
                    }
                })
                .await;
            let dead = matches!(&c, Completion::Ok(v, _) if v["alive"] == json!(false));
            w.complete_keep(inv, c);
            if dead {
                return;
            }
            if w.rng.random_bool(0.03) {
                return; // abandon
            }
        }
        if !w.pace().await {
            return;
        }
        let key = if w.rng.random_bool(0.5) {
            own.to_owned()
        } else {
            let keys = w.ctx.registry.lock().map(|r| r.clone()).unwrap_or_default();
            keys.choose(&mut w.rng).cloned().unwrap_or_else(|| own.to_owned())
        };
        read(w, &key).await;
    }
}

/// A linearizable read of whether `key` exists.
async fn read(w: &mut Worker, key: &str) {
    let inv = w.invoke("read", Some(key.to_owned()), Value::Null);
    let req = pb::RangeRequest {
        range: Some(pb::KeyRange { key: key.as_bytes().to_vec(), ..Default::default() }),
        ..Default::default()
    };
    let c = w
        .bounded(async {
            match w.client.range_request(req).await {
                Ok(r) => Completion::Ok(json!({"exists": !r.kvs.is_empty()}), served_by(r.header.as_ref())),
                Err(e) => classify(&e, false),
            }
        })
        .await;
    w.complete(inv, c).await;
}

/// After every fault healed: reads every key until past the expiry bound of the last session.
pub async fn final_phase(ctx: Arc<Ctx>) {
    let mut w = Worker::new(ctx.clone(), 0).await;
    let bound = 2 * TTL + Duration::from_millis(SLACK_MS) + Duration::from_secs(2);
    let until = tokio::time::Instant::now() + bound;
    let keys = ctx.registry.lock().map(|r| r.clone()).unwrap_or_default();
    while tokio::time::Instant::now() < until {
        for key in &keys {
            read(&mut w, key).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
