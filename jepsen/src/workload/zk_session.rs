//! `zk-session`: the `session` workload through the ZooKeeper port. Each process opens a
//! ZooKeeper session (4 s asked; the negotiated timeout is recorded) on its home member, creates
//! an ephemeral znode under it, and then, every timeout / 4, records a `keep-alive` (a request
//! on the session: any request renews a ZooKeeper session; the client also pings by itself),
//! reading its own and others' znodes in between. Now and then it ends the session: either
//! `close` (closeSession; acknowledged once the client reports the session closed) or
//! `abandon` (the client is dropped without closing: the session must expire on the server).
//!
//! Reads are `sync` + `exists` (linearizable, see `zk_register`), and record the znode's
//! `ephemeralOwner`. When the client library gives up a session as expired (it also does so by
//! itself when it cannot reach any member for a session timeout), the keep-alive asks the
//! servers by re-attaching the session (id + password): only a member answering "expired"
//! makes the keep-alive report it dead; a successful re-attach keeps the session going.
//!
//! The history is checked by the `session` checker (same operations, plus `close` and
//! `owner`): see `checker::session`.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};
use zookeeper_client as zk;

use super::zk::{bounded, classify, connect, path, reattach};
use super::{Completion, Ctx, Worker};
use crate::checker::session::SLACK_MS;

/// Session timeout asked for: 2 ticks of the server's default 2 s tick, its minimum.
pub const TTL: Duration = Duration::from_secs(4);

/// How a process ends its session.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Close,
    Abandon,
}

/// Runs one ZooKeeper session worker.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    while !ctx.stopped() {
        let end = if w.rng.random_bool(0.5) { End::Close } else { End::Abandon };
        let Some((client, key)) = open(&mut w, end).await else {
            w.renew().await;
            if !w.nap(Duration::from_millis(200)).await {
                break;
            }
            continue;
        };
        let client = live(&mut w, client, &key).await;
        finish(&w, client, end).await;
        w.renew().await;
    }
}

fn sid(c: &zk::Client) -> u64 {
    c.session_id().0 as u64
}

/// Opens a session (detached unless it is to be closed) and creates its ephemeral znode.
async fn open(w: &mut Worker, end: End) -> Option<(zk::Client, String)> {
    let inv = w.invoke("open", None, Value::Null);
    let client = match connect(&w.ctx, w.index, TTL, end == End::Abandon).await {
        Ok(c) => c,
        Err(e) => {
            // The server may have opened a session the client never learnt of: it expires.
            w.complete_keep(inv, Completion::Info(e));
            return None;
        }
    };
    let id = sid(&client);
    let ttl_ms = client.session_timeout().as_millis() as u64;
    w.complete_keep(inv, Completion::Ok(json!({"session": id, "ttl_ms": ttl_ms}), None));
    let key = path(&w.ctx, &format!("zksess-{}", w.process));
    let inv = w.invoke("put-ephemeral", Some(key.clone()), json!({"session": id}));
    let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let c = match bounded(&w.ctx, client.create(&key, b"1", &opts)).await {
        Ok(_) => Completion::Ok(Value::Null, None),
        Err(e) => classify(&e, true),
    };
    let (ok, unknown) = (matches!(c, Completion::Ok(..)), matches!(c, Completion::Info(_)));
    w.complete_keep(inv, c);
    if ok || unknown {
        if let Ok(mut r) = w.ctx.registry.lock() {
            r.push(key.clone());
        }
    }
    if ok {
        Some((client, key))
    } else {
        finish(w, client, End::Abandon).await;
        None
    }
}

/// Keeps the session going and reads znodes in between, until the session is gone, the process
/// decides to end it, or the phase ends; returns the client (possibly re-attached).
async fn live(w: &mut Worker, mut client: zk::Client, own: &str) -> zk::Client {
    let id = sid(&client);
    let every = client.session_timeout() / 4;
    let mut next_keep_alive = tokio::time::Instant::now() + every;
    loop {
        if tokio::time::Instant::now() >= next_keep_alive {
            next_keep_alive = tokio::time::Instant::now() + every;
            let inv = w.invoke("keep-alive", None, json!({"session": id}));
            let (c, replacement) = keep_alive(&w.ctx, w.index, &client).await;
            if let Some(r) = replacement {
                client = r;
            }
            let dead = matches!(&c, Completion::Ok(v, _) if v["alive"] == json!(false));
            w.complete_keep(inv, c);
            if dead || w.rng.random_bool(0.03) {
                return client;
            }
        }
        if !w.pace().await {
            return client;
        }
        let key = if w.rng.random_bool(0.5) {
            own.to_owned()
        } else {
            let keys = w.ctx.registry.lock().map(|r| r.clone()).unwrap_or_default();
            keys.choose(&mut w.rng).cloned().unwrap_or_else(|| own.to_owned())
        };
        read(w, &client, &key).await;
    }
}

/// One renewal: a request on the session. When the client holds the session for expired, the
/// servers are asked by re-attaching it; the re-attached client (if any) replaces the old one.
async fn keep_alive(ctx: &Ctx, home: usize, client: &zk::Client) -> (Completion, Option<zk::Client>) {
    match bounded(ctx, client.check_stat("/")).await {
        Ok(_) => (Completion::Ok(json!({"alive": true}), None), None),
        Err(_) if client.state() == zk::SessionState::Expired => {
            match reattach(ctx, home, client.session().clone()).await {
                Ok(c) => (Completion::Ok(json!({"alive": true, "reattached": true}), None), Some(c)),
                Err(true) => (Completion::Ok(json!({"alive": false}), None), None),
                Err(false) => (Completion::Info("re-attach after client-side expiry: no member answered".into()), None),
            }
        }
        // A request without answer may still have renewed the session.
        Err(e) => (Completion::Info(e.to_string()), None),
    }
}

/// Ends the session: `close` waits (bounded) until the client reports it closed; `abandon`
/// drops the detached client, whose session then expires on the server.
async fn finish(w: &Worker, client: zk::Client, end: End) {
    let id = sid(&client);
    if end == End::Abandon {
        drop(client);
        w.instant("abandon", None, json!({"session": id}));
        return;
    }
    let inv = w.invoke("close", None, json!({"session": id}));
    let mut state = client.state_watcher();
    drop(client);
    let closed = tokio::time::timeout(w.ctx.settings.op_timeout, async {
        loop {
            match state.changed().await {
                zk::SessionState::Closed => return true,
                s if s.is_terminated() => return false,
                _ => {}
            }
        }
    })
    .await;
    let c = match closed {
        Ok(true) => Completion::Ok(Value::Null, None),
        Ok(false) => Completion::Fail("session already gone".into(), Value::Null),
        Err(_) => Completion::Info("close not acknowledged in time".into()),
    };
    w.complete_keep(inv, c);
}

/// A linearizable read (`sync` + `exists`) of whether `key` exists, and its `ephemeralOwner`.
async fn read(w: &mut Worker, client: &zk::Client, key: &str) {
    let inv = w.invoke("read", Some(key.to_owned()), Value::Null);
    let r = bounded(&w.ctx, async {
        client.sync(key).await?;
        client.check_stat(key).await
    })
    .await;
    let c = match r {
        Ok(Some(stat)) => Completion::Ok(json!({"exists": true, "owner": stat.ephemeral_owner as u64}), None),
        Ok(None) => Completion::Ok(json!({"exists": false}), None),
        Err(e) => classify(&e, false),
    };
    w.complete_keep(inv, c);
}

/// After every fault healed: reads every znode until past the expiry bound of the last session.
pub async fn final_phase(ctx: Arc<Ctx>) {
    let mut w = Worker::new(ctx.clone(), 0).await;
    let bound = 2 * TTL + Duration::from_millis(SLACK_MS) + Duration::from_secs(2);
    let until = tokio::time::Instant::now() + bound;
    let keys = ctx.registry.lock().map(|r| r.clone()).unwrap_or_default();
    let mut client = None;
    while tokio::time::Instant::now() < until {
        if client.as_ref().is_none_or(|c: &zk::Client| c.state().is_terminated()) {
            client = connect(&ctx, 0, TTL, false).await.ok();
        }
        if let Some(c) = &client {
            for key in &keys {
                read(&mut w, c, key).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
