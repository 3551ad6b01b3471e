//! A job manager in high availability, as a real process: campaigns for leadership, publishes
//! its address, and while leader increments a fenced checkpoint counter every 100 ms and stores
//! a fenced checkpoint pointer. One JSON object per line on stdout:
//! `{"event":"granted","epoch":N,"uuid":"..."}`, `{"event":"revoked","reason":"..."}`,
//! `{"event":"checkpoint","id":N}`, `{"event":"session","state":"Suspended"}`.
//!
//! `cargo run -p conclave-client --example job_manager -- --endpoints 127.0.0.1:7379 --cluster-id c1 --address jm-1:8081`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use conclave_client::recipes::retrieval::publish;
use conclave_client::recipes::{CheckpointIdCounter, LeaderElection, LeaderToken, LeadershipEvent, RevokePolicy};
use conclave_client::{proto as pb, Client, Error, Session, SessionState};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Conclave endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', env = "CONCLAVE_ENDPOINTS")]
    endpoints: Vec<String>,
    /// HA cluster id.
    #[arg(long)]
    cluster_id: String,
    /// This job manager's address (published while leader).
    #[arg(long)]
    address: String,
    /// Session TTL in seconds.
    #[arg(long, default_value_t = 2.0)]
    ttl: f64,
    /// Job whose checkpoints this job manager drives.
    #[arg(long, default_value = "job-1")]
    job_id: String,
    /// Revoke leadership on a suspended connection (ZooKeeper-like) instead of on expiry.
    #[arg(long)]
    revoke_on_suspended: bool,
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Checkpoints every 100 ms while `token` is the leadership; returns why it stopped.
async fn checkpoint_loop(client: Client, args: Arc<Args>, token: LeaderToken) -> String {
    let counter = match CheckpointIdCounter::new(&client, &args.cluster_id, &args.job_id, Some(token.clone())) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = counter.start().await {
        return format!("counter start failed: {e}");
    }
    let pointer = format!("/conclave/ha/{}/jobs/{}/latest-checkpoint", args.cluster_id, args.job_id);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        match counter.get_and_increment().await {
            Ok(id) => {
                let store = pb::TxnRequest {
                    compare: vec![LeaderElection::fence(&token)],
                    success: vec![pb::RequestOp {
                        request: Some(pb::request_op::Request::Put(pb::PutRequest {
                            key: pointer.clone().into_bytes(),
                            value: format!("s3://checkpoints/{}/chk-{id}", args.job_id).into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                };
                match client.txn(store).await {
                    Ok(r) if r.fencing_failure.is_some() => return "fenced: checkpoint pointer rejected".into(),
                    Ok(_) => emit(json!({"event": "checkpoint", "id": id})),
                    Err(e) => tracing_free_log(&format!("pointer store failed: {e}")),
                }
            }
            Err(Error::Fenced { current_token, .. }) => {
                return format!("fenced: a newer leader holds token {current_token}")
            }
            // Unknown outcome: the id may have been used; never reuse it, just go on.
            Err(e) => tracing_free_log(&format!("checkpoint increment failed: {e}")),
        }
    }
}

fn tracing_free_log(msg: &str) {
    eprintln!("job_manager: {msg}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let client = Client::connect(args.endpoints.clone()).await?;
    let policy = if args.revoke_on_suspended { RevokePolicy::OnSuspended } else { RevokePolicy::OnExpired };
    loop {
        let session = match Session::open(&client, Duration::from_secs_f64(args.ttl)).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing_free_log(&format!("cannot open a session: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut states = session.subscribe();
        let election =
            LeaderElection::new(&client, session.clone(), &args.cluster_id, args.address.as_bytes(), policy)?;
        let mut events = election.campaign();
        let mut worker: Option<tokio::task::JoinHandle<String>> = None;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(LeadershipEvent::Granted(token)) => {
                        emit(json!({"event": "granted", "epoch": token.epoch, "uuid": token.uuid.to_string()}));
                        if let Err(e) = publish(&client, &session, &args.cluster_id, &token, "dispatcher", &args.address).await {
                            tracing_free_log(&format!("publish failed: {e}"));
                        }
                        if let Some(w) = worker.take() { w.abort(); }
                        worker = Some(tokio::spawn(checkpoint_loop(client.clone(), args.clone(), token)));
                    }
                    Some(LeadershipEvent::Revoked(reason)) => {
                        if let Some(w) = worker.take() { w.abort(); }
                        emit(json!({"event": "revoked", "reason": reason}));
                    }
                    None => break,
                },
                reason = async { match worker.as_mut() { Some(w) => w.await.unwrap_or_else(|e| e.to_string()), None => std::future::pending().await } } => {
                    worker = None;
                    emit(json!({"event": "revoked", "reason": reason}));
                    // Our leadership is gone for good: give it up and campaign again.
                    let _ = election.resign().await;
                    events = election.campaign();
                }
                changed = states.changed() => {
                    if changed.is_err() { break; }
                    let state = *states.borrow_and_update();
                    emit(json!({"event": "session", "state": format!("{state:?}")}));
                    if state == SessionState::Expired {
                        if let Some(w) = worker.take() {
                            w.abort();
                            emit(json!({"event": "revoked", "reason": "session expired"}));
                        }
                        break;
                    }
                }
            }
        }
        if let Some(w) = worker.take() {
            w.abort();
        }
    }
}
