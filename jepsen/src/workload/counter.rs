//! `counter`: `get_and_add(1)` (mostly) and linearizable reads of one counter; after the faults
//! heal, a final read through every node.

use std::sync::Arc;
use std::time::Duration;

use conclave_client::Client;
use rand::Rng;
use serde_json::{json, Value};

use super::{classify, served_by, Completion, Ctx, Worker};

fn name(ctx: &Ctx) -> String {
    format!("{}counter", ctx.prefix)
}

/// Runs one counter worker.
pub async fn run(ctx: Arc<Ctx>, index: usize) {
    let mut w = Worker::new(ctx.clone(), index).await;
    let counter = name(&ctx);
    while w.pace().await {
        if w.rng.random_bool(0.8) {
            let inv = w.invoke("add", None, json!(1));
            let c = w
                .bounded(async {
                    match w.client.counter_add_full(&counter, 1).await {
                        Ok(r) => Completion::Ok(json!(r.previous), served_by(r.header.as_ref())),
                        Err(e) => classify(&e, true),
                    }
                })
                .await;
            w.complete(inv, c).await;
        } else {
            let inv = w.invoke("read", None, Value::Null);
            let c = w.bounded(read(&w.client, &counter)).await;
            w.complete(inv, c).await;
        }
    }
}

async fn read(client: &Client, counter: &str) -> Completion {
    match client.counter_get(counter, false).await {
        Ok(r) => Completion::Ok(json!(r.value), served_by(r.header.as_ref())),
        Err(e) => classify(&e, false),
    }
}

/// The final read (linearizable), retried for up to 30 s.
pub async fn final_reads(ctx: Arc<Ctx>) {
    let counter = name(&ctx);
    let mut w = Worker::new(ctx.clone(), 0).await;
    super::retry_final(&mut w, Duration::from_secs(30), "final-read", None, |client| {
        let counter = counter.clone();
        async move { read(&client, &counter).await }
    })
    .await;
}
