//! `zk-register`: the `register` workload through the ZooKeeper port: one register per znode
//! (each gets `ops_per_key` operations), small integers as data.
//!
//! - `read` is `sync` + `getData` on the same session. What ZooKeeper guarantees for a plain
//!   `getData` is only sequential consistency (the member answers from its own state, never
//!   older than what this session saw: it may miss writes other clients completed), so plain
//!   reads are not checked for linearizability. `sync` makes the member catch up with the
//!   leader's commit point (on Conclave a linearizable read barrier through Raft), so a
//!   `getData` after it sees every write completed before the `sync` began: those reads,
//!   the writes and the CASes are checked for linearizability by the `register` checker.
//!   With `--serializable-reads` the reads skip the `sync` (a positive control: the checker may
//!   flag them, and is expected to under partitions).
//! - `write` is `setData` (no version); on `NoNode` it creates the znode with the value, and on
//!   `NodeExists` (a concurrent create won) it sets it. Only one of those calls writes.
//! - `cas` reads value and version, and when the value is `from` sets `to` with that version
//!   (`BadVersion`: the compare failed). A stale read cannot make it succeed wrongly: the
//!   version check is done by the leader's apply.
//!
//! A lost answer (connection loss, time-out) is `info` for writes; the process is then retired
//! and its worker starts a new session, as after any unknown outcome.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use zookeeper_client as zk;

use super::zk::{bounded, classify, connect, path, persistent};
use super::{Completion, Ctx, Worker};

/// Values written are 0..VALUES: few values make CAS succeed often.
const VALUES: i64 = 5;

/// Session timeout asked for (longer than any pause of the nemesis).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

fn decode(data: &[u8]) -> Value {
    match String::from_utf8_lossy(data).parse::<i64>() {
        Ok(v) => json!(v),
        Err(_) => json!(String::from_utf8_lossy(data)),
    }
}

async fn read(ctx: &Ctx, c: &zk::Client, p: &str) -> Completion {
    let r = bounded(ctx, async {
        if !ctx.settings.serializable_reads {
            c.sync(p).await?;
        }
        c.get_data(p).await
    })
    .await;
    match r {
        Ok((data, _)) => Completion::Ok(decode(&data), None),
        Err(zk::Error::NoNode) => Completion::Ok(Value::Null, None),
        Err(e) => classify(&e, false),
    }
}

async fn write(ctx: &Ctx, c: &zk::Client, p: &str, v: i64) -> Completion {
    let data = v.to_string().into_bytes();
    let r = bounded(ctx, async {
        match c.set_data(p, &data, None).await {
            Err(zk::Error::NoNode) => match c.create(p, &data, &persistent()).await {
                Err(zk::Error::NodeExists) => c.set_data(p, &data, None).await.map(|_| ()),
                r => r.map(|_| ()),
            },
            r => r.map(|_| ()),
        }
    })
    .await;
    match r {
        Ok(()) => Completion::Ok(Value::Null, None),
        Err(e) => classify(&e, true),
    }
}

async fn cas(ctx: &Ctx, c: &zk::Client, p: &str, from: i64, to: i64) -> Completion {
    let version = match bounded(ctx, c.get_data(p)).await {
        Ok((data, stat)) if decode(&data) == json!(from) => stat.version,
        Ok(_) | Err(zk::Error::NoNode) => return Completion::Fail("compare failed".into(), Value::Null),
        Err(e) => return classify(&e, false),
    };
    match bounded(ctx, c.set_data(p, to.to_string().as_bytes(), Some(version))).await {
        Ok(_) => Completion::Ok(Value::Null, None),
        Err(zk::Error::BadVersion | zk::Error::NoNode) => Completion::Fail("compare failed".into(), Value::Null),
        Err(e) => classify(&e, true),
    }
}

/// Runs one register worker through the ZooKeeper port of its home member.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    // The session of the current process (a retired process's session is dropped and closed).
    let mut session: Option<(i64, zk::Client)> = None;
    while w.pace().await {
        if session.as_ref().is_none_or(|(p, c)| *p != w.process || c.state().is_terminated()) {
            session = None;
            match connect(&ctx, index, SESSION_TIMEOUT, false).await {
                Ok(c) => session = Some((w.process, c)),
                Err(_) => continue,
            }
        }
        let Some((_, c)) = &session else { continue };
        let c = c.clone();
        let n = ctx.sequence.fetch_add(1, Ordering::Relaxed) / ctx.settings.ops_per_key.max(1);
        let key = path(&ctx, &format!("zkreg-{n}"));
        let (inv, result) = match w.rng.random_range(0..3) {
            0 => (w.invoke("read", Some(key.clone()), Value::Null), read(&ctx, &c, &key).await),
            1 => {
                let v = w.rng.random_range(0..VALUES);
                (w.invoke("write", Some(key.clone()), json!(v)), write(&ctx, &c, &key, v).await)
            }
            _ => {
                let (from, to) = (w.rng.random_range(0..VALUES), w.rng.random_range(0..VALUES));
                (w.invoke("cas", Some(key.clone()), json!([from, to])), cas(&ctx, &c, &key, from, to).await)
            }
        };
        w.complete(inv, result).await;
    }
}
