//! Key-value operations.

use conclave_proto::v1 as pb;
use conclave_proto::v1::kv_client::KvClient;

use std::time::Duration;

use crate::{Client, Result};

/// A key-value as returned by reads.
pub type KeyValue = pb::KeyValue;

/// The result of a read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeResult {
    /// Store revision the read was served at.
    pub revision: u64,
    /// Key-values in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether `limit` left keys out.
    pub more: bool,
    /// Number of keys in the range.
    pub count: u64,
}

/// Options of [`Client::get_with`].
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    /// Every key with this prefix.
    pub prefix: bool,
    /// Keys in `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// Serve locally on the contacted node (may be stale).
    pub serializable: bool,
    /// Read at this past revision (0 = current).
    pub revision: u64,
    /// At most this many keys (0 = all).
    pub limit: u64,
    /// Omit values.
    pub keys_only: bool,
    /// Only count.
    pub count_only: bool,
}

impl Client {
    /// Sets `key` to `value`; returns the revision of the write.
    ///
    /// # Errors
    /// `Status` for invalid input (empty or oversized key/value), `Indeterminate` when the outcome
    /// is unknown, `Unavailable` when no member could be reached.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        let req = pb::PutRequest { key: key.as_ref().to_vec(), value: value.as_ref().to_vec(), ..Default::default() };
        Ok(self.put_request(req).await?.header.map_or(0, |h| h.revision))
    }

    /// Puts a key bound to a session (an ephemeral key: deleted when the session ends).
    ///
    /// # Errors
    /// As [`Client::put`]; `Status(NotFound)` when the session does not exist.
    pub async fn put_ephemeral(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, session_id: u64) -> Result<u64> {
        let req = pb::PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            session_id,
            ..Default::default()
        };
        Ok(self.put_request(req).await?.header.map_or(0, |h| h.revision))
    }

    /// Sends a put as given. Its `request_id` is filled in when empty; a request id the caller
    /// set (from [`Client::new_write_id`] or an `Indeterminate` error) is kept, so a resend is
    /// applied at most once.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn put_request(&self, mut req: pb::PutRequest) -> Result<pb::PutResponse> {
        let id = self.write_id_for(&mut req.request_id);
        self.write(id.as_ref(), Duration::ZERO, req, |ch, r| async move { KvClient::new(ch).put(r).await }).await
    }

    /// Reads one key (linearizable).
    ///
    /// # Errors
    /// `Status` for invalid input, `Unavailable` when no member could answer.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        Ok(self.get_with(key, GetOptions::default()).await?.kvs.into_iter().next())
    }

    /// Reads with options.
    ///
    /// # Errors
    /// `Status(OutOfRange)` for a compacted or future revision; see [`Client::get`].
    pub async fn get_with(&self, key: impl AsRef<[u8]>, opts: GetOptions) -> Result<RangeResult> {
        let req = pb::RangeRequest {
            range: Some(pb::KeyRange { key: key.as_ref().to_vec(), range_end: opts.range_end, prefix: opts.prefix }),
            limit: opts.limit,
            revision: opts.revision,
            keys_only: opts.keys_only,
            count_only: opts.count_only,
            serializable: opts.serializable,
            min_revision: 0,
        };
        let resp = self.range_request(req).await?;
        Ok(RangeResult {
            revision: resp.header.map_or(0, |h| h.revision),
            kvs: resp.kvs,
            more: resp.more,
            count: resp.count,
        })
    }

    /// Sends a range request as given.
    ///
    /// # Errors
    /// See [`Client::get_with`].
    pub async fn range_request(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse> {
        let request_for = |seen: u64| pb::RangeRequest { min_revision: req.min_revision.max(seen), ..req.clone() };
        self.conn.read(req.serializable, request_for, |ch, r| async move { KvClient::new(ch).range(r).await }).await
    }

    /// Deletes one key (or, with `prefix`, every key starting with it); returns how many.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn delete(&self, key: impl AsRef<[u8]>, prefix: bool) -> Result<u64> {
        let req = pb::DeleteRangeRequest {
            range: Some(pb::KeyRange { key: key.as_ref().to_vec(), range_end: Vec::new(), prefix }),
            ..Default::default()
        };
        Ok(self.delete_request(req).await?.deleted)
    }

    /// Sends a delete as given (`request_id` as in [`Client::put_request`]).
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn delete_request(&self, mut req: pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse> {
        let id = self.write_id_for(&mut req.request_id);
        self.write(id.as_ref(), Duration::ZERO, req, |ch, r| async move { KvClient::new(ch).delete_range(r).await })
            .await
    }

    /// Runs a transaction (`request_id` as in [`Client::put_request`]). Retries are exactly-once.
    ///
    /// # Errors
    /// As [`Client::put`]; `Status(FailedPrecondition)` when a counter would overflow.
    pub async fn txn(&self, mut req: pb::TxnRequest) -> Result<pb::TxnResponse> {
        let id = self.write_id_for(&mut req.request_id);
        self.write(id.as_ref(), Duration::ZERO, req, |ch, r| async move { KvClient::new(ch).txn(r).await }).await
    }
}
