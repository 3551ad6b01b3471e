//! `set`: each add puts a new key `set/<element>`; after the faults heal, a prefix read through
//! every node lists the elements.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conclave_client::proto as pb;
use conclave_client::Client;
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};

fn prefix(ctx: &Ctx) -> String {
    format!("{}set/", ctx.prefix)
}

/// Runs one set worker.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    while w.pace().await {
        let element = ctx.sequence.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}{element:010}", prefix(&ctx));
        let inv = w.invoke("add", Some(prefix(&ctx)), json!(element));
        let c = w
            .bounded(async {
                let req = pb::PutRequest { key: key.into_bytes(), value: b"1".to_vec(), ..Default::default() };
                match w.client.put_request(req).await {
                    Ok(r) => Completion::Ok(Value::Null, served_by(r.header.as_ref())),
                    Err(e) => classify(&e, true),
                }
            })
            .await;
        w.complete(inv, c).await;
    }
}

async fn read_all(client: &Client, prefix: &str) -> Completion {
    let req = pb::RangeRequest {
        range: Some(pb::KeyRange { key: prefix.as_bytes().to_vec(), prefix: true, ..Default::default() }),
        keys_only: true,
        ..Default::default()
    };
    match client.range_request(req).await {
        Ok(r) => {
            let mut elements: Vec<u64> =
                r.kvs.iter().filter_map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).parse().ok()).collect();
            elements.sort_unstable();
            Completion::Ok(json!(elements), served_by(r.header.as_ref()))
        }
        Err(e) => classify(&e, false),
    }
}

/// The final read (linearizable), retried for up to 30 s.
pub async fn final_reads(ctx: Arc<Ctx>) {
    let p = prefix(&ctx);
    let mut w = Worker::new(ctx.clone(), 0).await;
    super::retry_final(&mut w, Duration::from_secs(30), "final-read", Some(p.clone()), |client| {
        let p = p.clone();
        async move { read_all(&client, &p).await }
    })
    .await;
}
