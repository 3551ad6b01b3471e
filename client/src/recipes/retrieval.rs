//! Leader publication and retrieval.
//!
//! [`publish`] writes `{address, uuid, epoch}` for a component in one fenced, ephemeral step:
//! it succeeds only while the election token is current, and the record vanishes with the
//! leader's session. [`LeaderRetrieval`] follows one component (or all components of a
//! cluster id) and yields every change: the new `(address, uuid)`, or `(None, None)` when the
//! record is removed (leadership revoked, session expired). It never goes back in time: it
//! reports records in revision order, resuming across member failures.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::election::{LeaderElection, LeaderToken};
use super::{check_fencing, delete_op, keys, put_op};
use crate::session::Session;
use crate::watch::{WatchEvent, WatchOptions, Watcher};
use crate::{proto as pb, Client, Error, GetOptions, Result};

/// A component's published leader, or `None`s when there is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Where the leader can be reached.
    pub address: Option<String>,
    /// The leader's session id (the grant's UUID).
    pub uuid: Option<Uuid>,
    /// The grant's epoch (fencing token).
    pub epoch: Option<u64>,
}

/// Publishes `address` as `component`'s leader, fenced by `token` and bound to `session`.
///
/// # Errors
/// [`Error::Fenced`] when `token` is no longer the leadership; `Indeterminate` when unknown.
pub async fn publish(
    client: &Client,
    session: &Session,
    cluster_id: &str,
    token: &LeaderToken,
    component: &str,
    address: &str,
) -> Result<u64> {
    keys::check_id("component", component)?;
    let info = LeaderInfo { address: Some(address.to_owned()), uuid: Some(token.uuid), epoch: Some(token.epoch) };
    let value = serde_json::to_vec(&info).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let req = pb::TxnRequest {
        compare: vec![LeaderElection::fence(token)],
        success: vec![put_op(keys::leader_key(cluster_id, component).into_bytes(), value, session.id())],
        ..Default::default()
    };
    let resp = client.txn(req).await?;
    check_fencing(&resp)?;
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// Removes `component`'s leader record, fenced by `token` (on resignation).
///
/// # Errors
/// [`Error::Fenced`] when `token` is no longer the leadership.
pub async fn unpublish(client: &Client, cluster_id: &str, token: &LeaderToken, component: &str) -> Result<()> {
    let req = pb::TxnRequest {
        compare: vec![LeaderElection::fence(token)],
        success: vec![delete_op(keys::leader_key(cluster_id, component).into_bytes(), false)],
        ..Default::default()
    };
    check_fencing(&client.txn(req).await?)
}

fn parse(value: &[u8]) -> LeaderInfo {
    serde_json::from_slice(value).unwrap_or_default()
}

/// Follows published leaders.
pub struct LeaderRetrieval {
    client: Client,
    prefix: String,
    single: bool,
    watcher: Option<Watcher>,
    /// Pending changes from one watch response (component, info).
    queue: std::collections::VecDeque<(String, LeaderInfo)>,
    /// Last reported info per component (to report only changes).
    last: std::collections::BTreeMap<String, LeaderInfo>,
}

impl LeaderRetrieval {
    /// Follows one component of a cluster id.
    ///
    /// # Errors
    /// `InvalidArgument` for malformed ids.
    pub fn watch(client: &Client, cluster_id: &str, component: &str) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        keys::check_id("component", component)?;
        Ok(Self::new(client, keys::leader_key(cluster_id, component), true))
    }

    /// Follows every component of a cluster id.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed cluster id.
    pub fn watch_all(client: &Client, cluster_id: &str) -> Result<Self> {
        keys::check_id("cluster id", cluster_id)?;
        Ok(Self::new(client, keys::leader_prefix(cluster_id), false))
    }

    fn new(client: &Client, prefix: String, single: bool) -> Self {
        Self {
            client: client.clone(),
            prefix,
            single,
            watcher: None,
            queue: Default::default(),
            last: Default::default(),
        }
    }

    fn component_of(&self, key: &[u8]) -> String {
        let key = String::from_utf8_lossy(key);
        if self.single {
            key.rsplit('/').next().unwrap_or_default().to_owned()
        } else {
            key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned()
        }
    }

    fn report(&mut self, component: String, info: LeaderInfo) {
        if self.last.get(&component) != Some(&info) {
            self.last.insert(component.clone(), info.clone());
            self.queue.push_back((component, info));
        }
    }

    /// Reads the current records and starts watching after them.
    async fn resync(&mut self) -> Result<()> {
        let snapshot =
            self.client.get_with(&self.prefix, GetOptions { prefix: !self.single, ..Default::default() }).await?;
        let mut present = std::collections::BTreeSet::new();
        for kv in &snapshot.kvs {
            let c = self.component_of(&kv.key);
            present.insert(c.clone());
            self.report(c, parse(&kv.value));
        }
        let gone: Vec<String> = self.last.keys().filter(|c| !present.contains(*c)).cloned().collect();
        for c in gone {
            self.report(c, LeaderInfo::default());
        }
        if self.single && snapshot.kvs.is_empty() && self.last.is_empty() {
            let c = self.component_of(self.prefix.as_bytes());
            self.report(c, LeaderInfo::default());
        }
        let opts = WatchOptions { prefix: !self.single, start_revision: snapshot.revision + 1, ..Default::default() };
        self.watcher = Some(self.client.watch(&self.prefix, opts));
        Ok(())
    }

    /// The next change: `(component, info)`; `info` has `None`s when the leader went away.
    /// The first call reports the current state.
    ///
    /// # Errors
    /// `Unavailable` when the cluster cannot be read; the retrieval can be polled again.
    pub async fn next(&mut self) -> Result<(String, LeaderInfo)> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(item);
            }
            let Some(watcher) = self.watcher.as_mut() else {
                self.resync().await?;
                continue;
            };
            match watcher.next().await {
                Some(Ok(WatchEvent::Changes { events, .. })) => {
                    for e in events {
                        let Some(kv) = e.kv else { continue };
                        let c = self.component_of(&kv.key);
                        let info = if e.r#type == pb::event::EventType::Delete as i32 {
                            LeaderInfo::default()
                        } else {
                            parse(&kv.value)
                        };
                        self.report(c, info);
                    }
                }
                Some(Ok(WatchEvent::Progress { .. })) => {}
                Some(Ok(WatchEvent::Compacted { .. })) | None => self.watcher = None,
                Some(Err(e)) => {
                    self.watcher = None;
                    return Err(e);
                }
            }
        }
    }
}
