//! Follows the leader of a cluster id and prints every change as a JSON line:
//! `{"component":"dispatcher","address":"...","uuid":"...","epoch":N}` (nulls when there is no leader).
//!
//! `cargo run -p conclave-client --example leader_watch -- --endpoints 127.0.0.1:7379 --cluster-id c1`

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use conclave_client::recipes::LeaderRetrieval;
use conclave_client::Client;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Conclave endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', env = "CONCLAVE_ENDPOINTS")]
    endpoints: Vec<String>,
    /// HA cluster id.
    #[arg(long)]
    cluster_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::connect(args.endpoints).await?;
    let mut retrieval = LeaderRetrieval::watch_all(&client, &args.cluster_id)?;
    loop {
        match retrieval.next().await {
            Ok((component, info)) => {
                let line = json!({"component": component, "address": info.address, "uuid": info.uuid.map(|u| u.to_string()), "epoch": info.epoch});
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Err(e) => {
                eprintln!("leader_watch: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
