//! Job-result store: an entry per finished job, first *dirty* (its cleanup is pending), then
//! *clean*. `create_dirty` fails if the job has an entry; `mark_clean` fails unless it is dirty.
//! Both are atomic compare-and-write steps.

use serde::{Deserialize, Serialize};

use super::{exists, keys, put_op};
use crate::{proto as pb, Client, Error, GetOptions, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    clean: bool,
    result: Vec<u8>,
}

/// The job results of one cluster id.
pub struct JobResultStore {
    client: Client,
    prefix: String,
}

fn status(code: tonic::Code, message: String) -> Error {
    Error::local(code, message)
}

impl JobResultStore {
    /// The store of `cluster_id`.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id.
    pub fn new(client: &Client, cluster_id: &str) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        Ok(Self { client: client.clone(), prefix: keys::job_results(cluster_id) })
    }

    fn key(&self, job_id: &str) -> Vec<u8> {
        format!("{}{job_id}", self.prefix).into_bytes()
    }

    async fn entry(&self, job_id: &str) -> Result<Option<(Entry, u64)>> {
        let kv = self.client.get(self.key(job_id)).await?;
        kv.map(|kv| {
            serde_json::from_slice::<Entry>(&kv.value)
                .map(|e| (e, kv.mod_revision))
                .map_err(|e| status(tonic::Code::DataLoss, format!("corrupt job result of {job_id}: {e}")))
        })
        .transpose()
    }

    /// Records a finished job as dirty.
    ///
    /// # Errors
    /// `Status(AlreadyExists)` when the job already has an entry.
    pub async fn create_dirty(&self, job_id: &str, result: &[u8]) -> Result<()> {
        keys::check_id("job id", job_id)?;
        let value = serde_json::to_vec(&Entry { clean: false, result: result.to_vec() })
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let req = pb::TxnRequest {
            compare: vec![exists(self.key(job_id), false)],
            success: vec![put_op(self.key(job_id), value, 0)],
            ..Default::default()
        };
        if !self.client.txn(req).await?.succeeded {
            return Err(status(tonic::Code::AlreadyExists, format!("job {job_id} already has a result")));
        }
        Ok(())
    }

    /// Marks a dirty job result clean.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` when there is no dirty entry for the job.
    pub async fn mark_clean(&self, job_id: &str) -> Result<()> {
        let Some((entry, rev)) = self.entry(job_id).await?.filter(|(e, _)| !e.clean) else {
            return Err(status(tonic::Code::FailedPrecondition, format!("job {job_id} has no dirty result")));
        };
        let value =
            serde_json::to_vec(&Entry { clean: true, ..entry }).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let unchanged = pb::Compare {
            target: Some(pb::compare::Target::Key(pb::KeyCompare {
                key: self.key(job_id),
                op: pb::CompareOp::Equal as i32,
                target: Some(pb::key_compare::Target::ModRevision(rev)),
            })),
        };
        let req = pb::TxnRequest {
            compare: vec![unchanged],
            success: vec![put_op(self.key(job_id), value, 0)],
            ..Default::default()
        };
        if !self.client.txn(req).await?.succeeded {
            return Err(status(tonic::Code::FailedPrecondition, format!("job {job_id}'s result changed concurrently")));
        }
        Ok(())
    }

    /// Whether the job has a dirty entry.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn has_dirty(&self, job_id: &str) -> Result<bool> {
        Ok(self.entry(job_id).await?.is_some_and(|(e, _)| !e.clean))
    }

    /// Whether the job has a clean entry.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn has_clean(&self, job_id: &str) -> Result<bool> {
        Ok(self.entry(job_id).await?.is_some_and(|(e, _)| e.clean))
    }

    /// Every dirty entry: (job id, result).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn dirty_results(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let all = self.client.get_with(&self.prefix, GetOptions { prefix: true, ..Default::default() }).await?;
        Ok(all
            .kvs
            .into_iter()
            .filter_map(|kv| {
                let e: Entry = serde_json::from_slice(&kv.value).ok()?;
                (!e.clean).then(|| (String::from_utf8_lossy(&kv.key[self.prefix.len()..]).into_owned(), e.result))
            })
            .collect())
    }
}
