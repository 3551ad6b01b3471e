//! `election`: contenders campaign with the client's `LeaderElection` recipe (one session per
//! process, TTL 2 s); a leader makes writes fenced with its token, sometimes resigns, and
//! sometimes keeps its old token to try a "zombie" write after losing leadership (a paused
//! leader waking up). Worker 0 observes the lease (linearizable reads) so every grant becomes
//! known to the checker.

use std::sync::Arc;
use std::time::Duration;

use conclave_client::proto as pb;
use conclave_client::recipes::{LeaderElection, LeaderToken, LeadershipEvent, RevokePolicy};
use conclave_client::Session;
use rand::Rng;
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};

/// Session TTL of the contenders.
const TTL: Duration = Duration::from_secs(2);

fn cluster_id(ctx: &Ctx) -> String {
    ctx.prefix.replace('/', "-").trim_end_matches('-').to_owned()
}

/// Runs one election worker (worker 0 observes).
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    if index == 0 {
        observe(&mut w).await;
        return;
    }
    let mut zombie: Option<LeaderToken> = None;
    while w.pace().await {
        if let Some(token) = zombie.take() {
            fenced_write(&mut w, &token).await;
            continue;
        }
        zombie = contend(&mut w).await;
    }
}

/// One campaign of the current process; returns a token to misuse later, sometimes.
async fn contend(w: &mut Worker) -> Option<LeaderToken> {
    let inv = w.invoke("open", None, Value::Null);
    let limit = w.ctx.settings.op_timeout + Duration::from_secs(1);
    let opened = match tokio::time::timeout(limit, Session::open(&w.client, TTL)).await {
        Ok(r) => r.map_err(|e| classify(&e, true)),
        Err(_) => Err(Completion::Info(format!("no answer within {limit:?}"))),
    };
    let session = match opened {
        Ok(s) => s,
        Err(c) => {
            w.complete(inv, c).await;
            return None;
        }
    };
    let id = session.id();
    w.complete_keep(inv, Completion::Ok(json!({"session": id, "ttl_ms": TTL.as_millis() as u64}), None));
    let cid = cluster_id(&w.ctx);
    let election = match LeaderElection::new(&w.client, Arc::new(session), &cid, b"jepsen", RevokePolicy::OnExpired) {
        Ok(e) => e,
        Err(e) => {
            let inv = w.invoke("acquire", None, Value::Null);
            w.complete(inv, Completion::Info(format!("cannot campaign: {e}"))).await;
            return None;
        }
    };
    let mut events = election.campaign();
    let inv = w.invoke("acquire", None, json!({"session": id}));
    let wait = Duration::from_secs_f64(w.rng.random_range(1.0..6.0));
    let token = match tokio::time::timeout(wait, events.recv()).await {
        Ok(Some(LeadershipEvent::Granted(t))) => t,
        Ok(Some(LeadershipEvent::Revoked(why))) => {
            w.complete(inv, Completion::Info(format!("revoked before granted: {why}"))).await;
            return None;
        }
        Ok(None) => {
            w.complete(inv, Completion::Info("campaign ended".into())).await;
            return None;
        }
        Err(_) => {
            // The campaign may still win in the background: unknown, and the process retires
            // (dropping the election and session, which then expires).
            w.complete(inv, Completion::Info(format!("not granted within {wait:?}"))).await;
            return None;
        }
    };
    w.complete_keep(inv, Completion::Ok(json!({"granted": true, "token": token.epoch, "session": id}), None));
    // Lead: fenced writes until leadership is lost, resigned, or the phase ends.
    let terms = w.rng.random_range(3..30);
    for _ in 0..terms {
        if !w.pace().await {
            break;
        }
        if let Ok(LeadershipEvent::Revoked(why)) = events.try_recv() {
            w.instant("revoked", None, json!({"token": token.epoch, "reason": why}));
            break;
        }
        if !fenced_write(w, &token).await {
            break;
        }
    }
    let keep = w.rng.random_bool(0.3);
    let inv = w.invoke("release", None, json!({"token": token.epoch}));
    let c = match election.resign().await {
        Ok(()) => Completion::Ok(Value::Null, None),
        Err(e) => classify(&e, true),
    };
    w.complete(inv, c).await;
    keep.then_some(token)
}

/// A write fenced by `token`; false when it was rejected or failed.
async fn fenced_write(w: &mut Worker, token: &LeaderToken) -> bool {
    let key = format!("{}election/owner", w.ctx.prefix);
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.into_bytes(),
            value: token.epoch.to_string().into_bytes(),
            ..Default::default()
        })),
    };
    let req = pb::TxnRequest { compare: vec![LeaderElection::fence(token)], success: vec![put], ..Default::default() };
    let inv = w.invoke("fenced-write", Some(token.lease.clone()), json!({"token": token.epoch}));
    let c = w
        .bounded(async {
            match w.client.txn(req).await {
                Ok(r) if r.succeeded => Completion::Ok(
                    json!({"revision": r.header.as_ref().map_or(0, |h| h.revision)}),
                    served_by(r.header.as_ref()),
                ),
                Ok(r) => match r.fencing_failure {
                    Some(f) => Completion::Fail("fenced".into(), json!({"current_token": f.current_token})),
                    None => Completion::Fail("not succeeded".into(), Value::Null),
                },
                Err(e) => classify(&e, true),
            }
        })
        .await;
    let ok = matches!(c, Completion::Ok(..));
    w.complete(inv, c).await;
    ok
}

/// Reads the lease's holder and last token, again and again.
async fn observe(w: &mut Worker) {
    let lease = conclave_client::recipes::keys::election_lease(&cluster_id(&w.ctx));
    while w.pace().await {
        let inv = w.invoke("read-lease", Some(lease.clone()), Value::Null);
        let c = w
            .bounded(async {
                match w.client.lease_get(&lease, false).await {
                    Ok(r) => Completion::Ok(
                        json!({"token": r.holder.as_ref().map_or(0, |h| h.token), "last_token": r.last_token}),
                        served_by(r.header.as_ref()),
                    ),
                    Err(e) => classify(&e, false),
                }
            })
            .await;
        w.complete(inv, c).await;
    }
}
