//! Counter operations.

use conclave_proto::v1 as pb;
use conclave_proto::v1::counter_client::CounterClient;

use std::time::Duration;

use crate::{Client, Result, WriteId};

const ZERO: Duration = Duration::ZERO;

impl Client {
    /// Adds `delta` to counter `name` and returns the previous value, in one Raft round.
    /// Exactly-once: a retry never skips or repeats a value.
    ///
    /// # Errors
    /// `Status(FailedPrecondition)` on overflow; `Indeterminate` when the outcome is unknown.
    pub async fn counter_add(&self, name: &str, delta: u64) -> Result<u64> {
        Ok(self.counter_add_full(name, delta).await?.previous)
    }

    /// Like [`Client::counter_add`], returning the whole response (revision included).
    ///
    /// # Errors
    /// See [`Client::counter_add`].
    pub async fn counter_add_full(&self, name: &str, delta: u64) -> Result<pb::CounterAddResponse> {
        self.counter_add_full_as(&self.new_write_id(), name, delta).await
    }

    /// [`Client::counter_add`] as the write `id` (a resend after `Indeterminate` gets the
    /// original previous value; the counter moves once).
    ///
    /// # Errors
    /// See [`Client::counter_add`].
    pub async fn counter_add_as(&self, id: &WriteId, name: &str, delta: u64) -> Result<u64> {
        Ok(self.counter_add_full_as(id, name, delta).await?.previous)
    }

    /// [`Client::counter_add_full`] as the write `id`.
    ///
    /// # Errors
    /// See [`Client::counter_add`].
    pub async fn counter_add_full_as(&self, id: &WriteId, name: &str, delta: u64) -> Result<pb::CounterAddResponse> {
        let req = pb::CounterAddRequest { name: name.to_owned(), delta, request_id: Some(id.request_id()) };
        self.write(Some(id), ZERO, req, |ch, r| async move { CounterClient::new(ch).add(r).await }).await
    }

    /// Reads a counter (0 when it does not exist).
    ///
    /// # Errors
    /// `Unavailable` when no member could answer.
    pub async fn counter_get(&self, name: &str, serializable: bool) -> Result<pb::CounterGetResponse> {
        let req = |min_revision| pb::CounterGetRequest { name: name.to_owned(), serializable, min_revision };
        self.conn.read(serializable, req, |ch, r| async move { CounterClient::new(ch).get(r).await }).await
    }

    /// Sets a counter; returns the previous value.
    ///
    /// # Errors
    /// `Indeterminate` when the outcome is unknown.
    pub async fn counter_set(&self, name: &str, value: u64) -> Result<u64> {
        self.counter_set_as(&self.new_write_id(), name, value).await
    }

    /// [`Client::counter_set`] as the write `id`.
    ///
    /// # Errors
    /// See [`Client::counter_set`].
    pub async fn counter_set_as(&self, id: &WriteId, name: &str, value: u64) -> Result<u64> {
        let req = pb::CounterSetRequest { name: name.to_owned(), value, request_id: Some(id.request_id()) };
        let resp = self.write(Some(id), ZERO, req, |ch, r| async move { CounterClient::new(ch).set(r).await }).await?;
        Ok(resp.previous)
    }

    /// Deletes a counter; returns whether it existed.
    ///
    /// # Errors
    /// `Indeterminate` when the outcome is unknown.
    pub async fn counter_delete(&self, name: &str) -> Result<bool> {
        self.counter_delete_as(&self.new_write_id(), name).await
    }

    /// [`Client::counter_delete`] as the write `id`.
    ///
    /// # Errors
    /// See [`Client::counter_delete`].
    pub async fn counter_delete_as(&self, id: &WriteId, name: &str) -> Result<bool> {
        let req = pb::CounterDeleteRequest { name: name.to_owned(), request_id: Some(id.request_id()) };
        let resp =
            self.write(Some(id), ZERO, req, |ch, r| async move { CounterClient::new(ch).delete(r).await }).await?;
        Ok(resp.deleted)
    }
}
