//! Owner-locked state-handle stores (job graphs, completed checkpoints): small pointers to
//! state kept in a blob store, each with locks held by sessions.
//!
//! Layout under the store prefix: `data/NAME` (the pointer), `locks/NAME/SESSION` (one
//! ephemeral key per lock holder: a lock vanishes with its session), `deleting/NAME` (the
//! "marked for deletion" flag of a two-phase removal).
//!
//! Guarantees: [`StateHandleStore::add_and_lock`] and [`StateHandleStore::replace`] are atomic
//! compare-and-write steps (optionally fenced by leadership); [`StateHandleStore::get_all_and_lock`]
//! returns every entry as of one revision; [`StateHandleStore::release_and_try_remove`] removes
//! an entry only when no other session holds a lock on it, and leaves it visibly marked for
//! deletion otherwise (a marked entry can no longer be locked; the last holder to release and
//! try to remove it completes the removal). Values are limited by the server (1 MiB).

use super::election::{LeaderElection, LeaderToken};
use super::{check_fencing, delete_op, exists, keys, put_op, range_op};
use crate::session::Session;
use crate::{proto as pb, Client, Error, GetOptions, Result};

/// Most entries locked by one `get_all_and_lock` transaction (compare + lock per entry).
const ENTRIES_PER_TXN: usize = 60;

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateHandle {
    /// Entry name.
    pub name: String,
    /// The pointer.
    pub value: Vec<u8>,
    /// Version, for [`StateHandleStore::replace`].
    pub version: u64,
}

/// A state-handle store whose locks belong to one session.
pub struct StateHandleStore {
    client: Client,
    session_id: u64,
    prefix: String,
    token: Option<LeaderToken>,
}

impl StateHandleStore {
    /// Store `store` of `cluster_id`, locking with `session`, fencing writes with `token`.
    ///
    /// # Errors
    /// `InvalidArgument` for malformed ids.
    pub fn new(
        client: &Client,
        session: &Session,
        cluster_id: &str,
        store: &str,
        token: Option<LeaderToken>,
    ) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        keys::check_id("store", store)?;
        Ok(Self {
            client: client.clone(),
            session_id: session.id(),
            prefix: keys::store_prefix(cluster_id, store),
            token,
        })
    }

    fn data(&self, name: &str) -> Vec<u8> {
        format!("{}data/{name}", self.prefix).into_bytes()
    }
    fn locks(&self, name: &str) -> Vec<u8> {
        format!("{}locks/{name}/", self.prefix).into_bytes()
    }
    fn my_lock(&self, name: &str) -> Vec<u8> {
        format!("{}locks/{name}/{}", self.prefix, self.session_id).into_bytes()
    }
    fn deleting(&self, name: &str) -> Vec<u8> {
        format!("{}deleting/{name}", self.prefix).into_bytes()
    }

    fn txn(
        &self,
        mut compare: Vec<pb::Compare>,
        success: Vec<pb::RequestOp>,
        failure: Vec<pb::RequestOp>,
    ) -> pb::TxnRequest {
        if let Some(t) = &self.token {
            compare.push(LeaderElection::fence(t));
        }
        pb::TxnRequest { compare, success, failure, ..Default::default() }
    }

    /// Adds an entry and locks it; fails with `AlreadyExists` if it exists (or is being deleted).
    ///
    /// # Errors
    /// `Status(AlreadyExists)`, [`Error::Fenced`], or a transport error.
    pub async fn add_and_lock(&self, name: &str, value: &[u8]) -> Result<u64> {
        keys::check_id("entry name", name)?;
        let req = self.txn(
            vec![exists(self.data(name), false), exists(self.deleting(name), false)],
            vec![put_op(self.data(name), value.to_vec(), 0), put_op(self.my_lock(name), Vec::new(), self.session_id)],
            Vec::new(),
        );
        let resp = self.client.txn(req).await?;
        check_fencing(&resp)?;
        if !resp.succeeded {
            return Err(status(tonic::Code::AlreadyExists, format!("state handle {name:?} already exists")));
        }
        Ok(1)
    }

    /// Reads an entry and locks it for this session.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist or is marked for deletion.
    pub async fn get_and_lock(&self, name: &str) -> Result<StateHandle> {
        let req = pb::TxnRequest {
            compare: vec![exists(self.data(name), true), exists(self.deleting(name), false)],
            success: vec![put_op(self.my_lock(name), Vec::new(), self.session_id), range_op(self.data(name), false)],
            ..Default::default()
        };
        let resp = self.client.txn(req).await?;
        if !resp.succeeded {
            return Err(status(
                tonic::Code::NotFound,
                format!("state handle {name:?} does not exist or is marked for deletion"),
            ));
        }
        let kv = resp
            .responses
            .get(1)
            .and_then(|r| match &r.response {
                Some(pb::response_op::Response::Range(r)) => r.kvs.first().cloned(),
                _ => None,
            })
            .ok_or_else(|| status(tonic::Code::Internal, "missing range result".into()))?;
        Ok(StateHandle { name: name.to_owned(), value: kv.value, version: kv.version })
    }

    /// Every entry not marked for deletion, as of one revision, each locked for this session.
    ///
    /// # Errors
    /// Transport errors; retried internally while entries change concurrently.
    pub async fn get_all_and_lock(&self) -> Result<Vec<StateHandle>> {
        'retry: for _ in 0..16 {
            let data_prefix = format!("{}data/", self.prefix);
            let snap = self.client.get_with(&data_prefix, GetOptions { prefix: true, ..Default::default() }).await?;
            let deleting = self
                .client
                .get_with(
                    format!("{}deleting/", self.prefix),
                    GetOptions { prefix: true, keys_only: true, revision: snap.revision, ..Default::default() },
                )
                .await?;
            let marked: std::collections::BTreeSet<Vec<u8>> =
                deleting.kvs.iter().map(|kv| kv.key[self.prefix.len() + "deleting/".len()..].to_vec()).collect();
            let handles: Vec<StateHandle> = snap
                .kvs
                .iter()
                .filter(|kv| !marked.contains(&kv.key[data_prefix.len()..]))
                .map(|kv| StateHandle {
                    name: String::from_utf8_lossy(&kv.key[data_prefix.len()..]).into_owned(),
                    value: kv.value.clone(),
                    version: kv.version,
                })
                .collect();
            // Lock them, provided none changed since the snapshot (mod revision compares).
            for chunk in snap.kvs.chunks(ENTRIES_PER_TXN) {
                let compare = chunk
                    .iter()
                    .map(|kv| pb::Compare {
                        target: Some(pb::compare::Target::Key(pb::KeyCompare {
                            key: kv.key.clone(),
                            op: pb::CompareOp::Equal as i32,
                            target: Some(pb::key_compare::Target::ModRevision(kv.mod_revision)),
                        })),
                    })
                    .collect();
                let locks = chunk
                    .iter()
                    .map(|kv| String::from_utf8_lossy(&kv.key[data_prefix.len()..]).into_owned())
                    .filter(|n| !marked.contains(n.as_bytes()))
                    .map(|n| put_op(self.my_lock(&n), Vec::new(), self.session_id))
                    .collect();
                let resp = self.client.txn(pb::TxnRequest { compare, success: locks, ..Default::default() }).await?;
                if !resp.succeeded {
                    continue 'retry;
                }
            }
            return Ok(handles);
        }
        Err(Error::Unavailable("state handles kept changing; could not lock a consistent snapshot".into()))
    }

    /// Replaces an entry's value if its version is still `expected_version`.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` on a version mismatch (or a missing entry), [`Error::Fenced`].
    pub async fn replace(&self, name: &str, expected_version: u64, value: &[u8]) -> Result<u64> {
        let version_is = pb::Compare {
            target: Some(pb::compare::Target::Key(pb::KeyCompare {
                key: self.data(name),
                op: pb::CompareOp::Equal as i32,
                target: Some(pb::key_compare::Target::Version(expected_version)),
            })),
        };
        let req = self.txn(
            vec![version_is, exists(self.data(name), true)],
            vec![put_op(self.data(name), value.to_vec(), 0)],
            Vec::new(),
        );
        let resp = self.client.txn(req).await?;
        check_fencing(&resp)?;
        if !resp.succeeded {
            return Err(status(
                tonic::Code::FailedPrecondition,
                format!("state handle {name:?} is not at version {expected_version}"),
            ));
        }
        Ok(expected_version + 1)
    }

    /// The entry's version, if it exists.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn exists(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.client.get(self.data(name)).await?.map(|kv| kv.version))
    }

    /// Whether the entry is marked for deletion (phase one of a removal happened).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn is_marked_for_deletion(&self, name: &str) -> Result<bool> {
        Ok(self.client.get(self.deleting(name)).await?.is_some())
    }

    /// Releases this session's lock on an entry.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn release(&self, name: &str) -> Result<()> {
        self.client.delete(self.my_lock(name), false).await.map(|_| ())
    }

    /// Releases every lock this session holds in the store.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn release_all(&self) -> Result<()> {
        let all = self
            .client
            .get_with(
                format!("{}locks/", self.prefix),
                GetOptions { prefix: true, keys_only: true, ..Default::default() },
            )
            .await?;
        let mine = format!("/{}", self.session_id);
        let ops: Vec<pb::RequestOp> = all
            .kvs
            .into_iter()
            .filter(|kv| kv.key.ends_with(mine.as_bytes()))
            .map(|kv| delete_op(kv.key, false))
            .collect();
        for chunk in ops.chunks(100) {
            self.client.txn(pb::TxnRequest { success: chunk.to_vec(), ..Default::default() }).await?;
        }
        Ok(())
    }

    /// Two-phase removal: marks the entry for deletion and releases this session's lock, then
    /// removes it if no other session holds a lock. Returns whether it was removed (false:
    /// still locked by others, left marked for deletion).
    ///
    /// # Errors
    /// [`Error::Fenced`] (phase one is fenced), transport errors.
    pub async fn release_and_try_remove(&self, name: &str) -> Result<bool> {
        let mark = self.txn(
            Vec::new(),
            vec![put_op(self.deleting(name), Vec::new(), 0), delete_op(self.my_lock(name), false)],
            Vec::new(),
        );
        check_fencing(&self.client.txn(mark).await?)?;
        let no_locks = pb::Compare {
            target: Some(pb::compare::Target::Children(pb::ChildrenCompare {
                prefix: self.locks(name),
                op: pb::CompareOp::Equal as i32,
                count: 0,
            })),
        };
        let remove = pb::TxnRequest {
            compare: vec![no_locks],
            success: vec![delete_op(self.data(name), false), delete_op(self.deleting(name), false)],
            ..Default::default()
        };
        Ok(self.client.txn(remove).await?.succeeded)
    }

    /// Releases this session's locks and tries to remove every entry (see
    /// [`Self::release_and_try_remove`]); returns the names still held by others.
    ///
    /// # Errors
    /// As [`Self::release_and_try_remove`].
    pub async fn clear_entries(&self) -> Result<Vec<String>> {
        let data_prefix = format!("{}data/", self.prefix);
        let all = self
            .client
            .get_with(&data_prefix, GetOptions { prefix: true, keys_only: true, ..Default::default() })
            .await?;
        let mut kept = Vec::new();
        for kv in all.kvs {
            let name = String::from_utf8_lossy(&kv.key[data_prefix.len()..]).into_owned();
            if !self.release_and_try_remove(&name).await? {
                kept.push(name);
            }
        }
        Ok(kept)
    }
}

fn status(code: tonic::Code, message: String) -> Error {
    Error::local(code, message)
}
