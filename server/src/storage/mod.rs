//! Durable storage: the Raft log and vote (behind the narrow [`engine::LogEngine`] trait, sled
//! today) and state-machine snapshots (plain files, kept out of sled).

pub mod append_policy;
pub mod durability;
pub mod engine;
pub mod file_engine;
pub mod log_store;
pub mod recent_entries;
pub mod sm_store;
pub mod snapshot_file;

use std::io;

use crate::types::StorageError;

/// Wraps an I/O failure as an openraft storage error (which stops the Raft node: a replica that
/// cannot persist must not keep voting or acknowledging).
pub(crate) fn io_err(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::from_io_error(subject, verb, io::Error::other(e.to_string()))
}
