//! Cleanup of HA data: one job's data, a whole cluster id's data, and listing cluster ids so
//! operators can find leftovers. Every call is idempotent.

use std::collections::BTreeSet;

use super::{delete_op, keys};
use crate::{proto as pb, Client, GetOptions, Result};

fn counter_delete(name: String) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::CounterDelete(pb::CounterDeleteRequest { name, request_id: None })),
    }
}

/// Deletes one job's data: its free-form prefix, its checkpoint counter and marker, and its
/// job result entry, atomically.
///
/// # Errors
/// Transport errors.
pub async fn delete_job(client: &Client, cluster_id: &str, job_id: &str) -> Result<()> {
    keys::check_id("cluster id", cluster_id)?;
    keys::check_id("job id", job_id)?;
    let ops = vec![
        delete_op(keys::job_prefix(cluster_id, job_id).into_bytes(), true),
        counter_delete(keys::checkpoint_counter(cluster_id, job_id)),
        delete_op(format!("{}{job_id}", keys::counter_markers(cluster_id)).into_bytes(), false),
        delete_op(format!("{}{job_id}", keys::job_results(cluster_id)).into_bytes(), false),
    ];
    client.txn(pb::TxnRequest { success: ops, ..Default::default() }).await.map(|_| ())
}

/// Deletes everything of a cluster id: every key under its prefix and every counter it created.
///
/// # Errors
/// Transport errors.
pub async fn delete_cluster(client: &Client, cluster_id: &str) -> Result<()> {
    keys::check_id("cluster id", cluster_id)?;
    let markers =
        client.get_with(keys::counter_markers(cluster_id), GetOptions { prefix: true, ..Default::default() }).await?;
    let counters: Vec<pb::RequestOp> =
        markers.kvs.into_iter().map(|kv| counter_delete(String::from_utf8_lossy(&kv.value).into_owned())).collect();
    for chunk in counters.chunks(100) {
        client.txn(pb::TxnRequest { success: chunk.to_vec(), ..Default::default() }).await?;
    }
    client.delete(keys::cluster_prefix(cluster_id), true).await.map(|_| ())
}

/// Every cluster id with data.
///
/// # Errors
/// Transport errors.
pub async fn list_cluster_ids(client: &Client) -> Result<Vec<String>> {
    let all = client.get_with(keys::ROOT, GetOptions { prefix: true, keys_only: true, ..Default::default() }).await?;
    let ids: BTreeSet<String> = all
        .kvs
        .iter()
        .filter_map(|kv| {
            let rest = kv.key.strip_prefix(keys::ROOT.as_bytes())?;
            let id = rest.split(|b| *b == b'/').next()?;
            (!id.is_empty()).then(|| String::from_utf8_lossy(id).into_owned())
        })
        .collect();
    Ok(ids.into_iter().collect())
}
