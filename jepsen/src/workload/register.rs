//! `register`: random reads, writes and compare-and-sets of small integers on a sequence of keys
//! (each key gets `ops_per_key` operations, so every key's history stays small enough to search).
//! Reads are linearizable range reads; CAS is a transaction comparing the value.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use conclave_client::proto as pb;
use rand::Rng;
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};

/// Values written are 0..VALUES: few values make CAS succeed often.
const VALUES: i64 = 5;

fn key_range(key: &str) -> Option<pb::KeyRange> {
    Some(pb::KeyRange { key: key.as_bytes().to_vec(), ..Default::default() })
}

async fn read(w: &Worker, key: &str) -> Completion {
    let serializable = w.ctx.settings.serializable_reads;
    let req = pb::RangeRequest { range: key_range(key), serializable, ..Default::default() };
    match w.client.range_request(req).await {
        Ok(resp) => {
            let value = match resp.kvs.first() {
                None => Value::Null,
                Some(kv) => match String::from_utf8_lossy(&kv.value).parse::<i64>() {
                    Ok(v) => json!(v),
                    Err(_) => json!(String::from_utf8_lossy(&kv.value)),
                },
            };
            Completion::Ok(value, served_by(resp.header.as_ref()))
        }
        Err(e) => classify(&e, false),
    }
}

async fn write(w: &Worker, key: &str, v: i64) -> Completion {
    let req = pb::PutRequest { key: key.as_bytes().to_vec(), value: v.to_string().into_bytes(), ..Default::default() };
    match w.client.put_request(req).await {
        Ok(resp) => Completion::Ok(Value::Null, served_by(resp.header.as_ref())),
        Err(e) => classify(&e, true),
    }
}

async fn cas(w: &Worker, key: &str, from: i64, to: i64) -> Completion {
    let compare = pb::Compare {
        target: Some(pb::compare::Target::Key(pb::KeyCompare {
            key: key.as_bytes().to_vec(),
            op: pb::CompareOp::Equal as i32,
            target: Some(pb::key_compare::Target::Value(from.to_string().into_bytes())),
        })),
    };
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: to.to_string().into_bytes(),
            ..Default::default()
        })),
    };
    let req = pb::TxnRequest { compare: vec![compare], success: vec![put], ..Default::default() };
    match w.client.txn(req).await {
        Ok(resp) if resp.succeeded => Completion::Ok(Value::Null, served_by(resp.header.as_ref())),
        Ok(_) => Completion::Fail("compare failed".into(), Value::Null),
        Err(e) => classify(&e, true),
    }
}

/// Runs one register worker.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    while w.pace().await {
        let n = ctx.sequence.fetch_add(1, Ordering::Relaxed) / ctx.settings.ops_per_key.max(1);
        let key = format!("{}reg/{n}", ctx.prefix);
        let (f, arg, c) = match w.rng.random_range(0..3) {
            0 => {
                let inv = w.invoke("read", Some(key.clone()), Value::Null);
                let c = w.bounded(read(&w, &key)).await;
                w.complete(inv, c).await;
                continue;
            }
            1 => {
                let v = w.rng.random_range(0..VALUES);
                ("write", json!(v), (v, v))
            }
            _ => {
                let (from, to) = (w.rng.random_range(0..VALUES), w.rng.random_range(0..VALUES));
                ("cas", json!([from, to]), (from, to))
            }
        };
        let inv = w.invoke(f, Some(key.clone()), arg);
        let result =
            if f == "write" { w.bounded(write(&w, &key, c.0)).await } else { w.bounded(cas(&w, &key, c.0, c.1)).await };
        w.complete(inv, result).await;
    }
}
