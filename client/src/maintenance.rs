//! Backups and consistency checks of one specific member (`Maintenance` service): what
//! `conclavectl snapshot save` and `conclavectl endpoint hashkv` call. No leader following:
//! each call goes to the endpoint named.

use std::io::Write;
use std::path::{Path, PathBuf};

use conclave_proto::v1 as pb;
use conclave_proto::v1::maintenance_client::MaintenanceClient;
use tonic::Code;

use crate::{Client, Error, Result};

/// A backup written by [`Client::snapshot_save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSaved {
    /// The store revision the backup holds.
    pub revision: u64,
    /// Bytes written.
    pub size: u64,
    /// CRC-32 (IEEE) of the file, as the member computed it and the client verified it.
    pub crc32: u32,
    /// The last Raft log index it includes (on the member that made it).
    pub index: u64,
}

/// One member's key-space digest ([`Client::hash_kv_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointHash {
    /// The revision hashed.
    pub revision: u64,
    /// The digest: members that applied the same log agree on it at the same revision.
    pub hash: u32,
    /// The member's oldest readable revision.
    pub compact_revision: u64,
    /// The member's id.
    pub node_id: u64,
}

impl Client {
    /// Streams a consistent backup of `endpoint`'s applied state into `path`: written to
    /// `path.tmp`, checked against the member's size and CRC-32, fsynced, then renamed over
    /// `path` (so `path` is either the old file or a complete new one). The member keeps
    /// serving meanwhile.
    ///
    /// # Errors
    /// The member's error status, `Unavailable` when it cannot be reached, or a `DataLoss`
    /// status when the stream ends early or its checksum or size do not match; an I/O failure
    /// writing the file is an `Internal` status. Nothing is left at `path` on failure.
    pub async fn snapshot_save(&self, endpoint: &str, path: &Path) -> Result<SnapshotSaved> {
        let mut client = MaintenanceClient::new(self.conn.authenticated_channel_to(endpoint).await?)
            .max_decoding_message_size(8 << 20);
        let mut stream =
            client.snapshot(pb::SnapshotRequest {}).await.map_err(|s| Error::from_status(&s))?.into_inner();
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let io = |what: &str, e: std::io::Error| Error::local(Code::Internal, format!("{what} {}: {e}", tmp.display()));
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        let (mut crc, mut size, mut trailer) = (crc32fast::Hasher::new(), 0u64, None);
        let received = async {
            while let Some(chunk) = stream.message().await.map_err(|s| Error::from_status(&s))? {
                crc.update(&chunk.blob);
                size += chunk.blob.len() as u64;
                file.write_all(&chunk.blob).map_err(|e| io("write", e))?;
                if chunk.trailer.is_some() {
                    trailer = chunk.trailer;
                }
            }
            file.sync_all().map_err(|e| io("fsync", e))
        }
        .await;
        let checked = received.and_then(|()| check_trailer(trailer, size, crc.finalize()));
        let saved = match checked {
            Ok(saved) => saved,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync directory of", e))?;
        }
        Ok(saved)
    }

    /// `endpoint`'s key-space digest at `revision` (0: its current revision), bounded by the
    /// attempt timeout.
    ///
    /// # Errors
    /// `OutOfRange` (reason COMPACTED or FUTURE_REVISION) when that member cannot read at
    /// `revision`; `Unavailable` when it does not answer in time.
    pub async fn hash_kv_of(&self, endpoint: &str, revision: u64) -> Result<EndpointHash> {
        let mut client = MaintenanceClient::new(self.conn.authenticated_channel_to(endpoint).await?);
        let timeout = self.config().attempt_timeout;
        let r = tokio::time::timeout(timeout, client.hash_kv(pb::HashKvRequest { revision }))
            .await
            .map_err(|_| Error::Unavailable(format!("{endpoint}: no answer within {timeout:?}")))?
            .map_err(|s| Error::from_status(&s))?
            .into_inner();
        let node_id = r.header.map_or(0, |h| h.node_id);
        Ok(EndpointHash { revision: r.revision, hash: r.hash, compact_revision: r.compact_revision, node_id })
    }
}

/// The saved backup if the stream ended with a trailer matching what was received.
fn check_trailer(trailer: Option<pb::SnapshotTrailer>, size: u64, crc32: u32) -> Result<SnapshotSaved> {
    let data_loss = |m: String| Error::local(Code::DataLoss, m);
    let t = trailer
        .ok_or_else(|| data_loss(format!("the snapshot stream ended after {size} bytes without its trailer")))?;
    if t.size != size || t.crc32 != crc32 {
        return Err(data_loss(format!(
            "received {size} bytes with CRC-32 {crc32:08x}, the member sent {} bytes with CRC-32 {:08x}",
            t.size, t.crc32
        )));
    }
    Ok(SnapshotSaved { revision: t.revision, size, crc32, index: t.index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_mismatched_trailer_is_data_loss() {
        let t = pb::SnapshotTrailer { revision: 7, size: 10, crc32: 0xabcd, index: 3, header: None };
        assert_eq!(
            check_trailer(Some(t), 10, 0xabcd).ok(),
            Some(SnapshotSaved { revision: 7, size: 10, crc32: 0xabcd, index: 3 })
        );
        assert_eq!(check_trailer(Some(t), 9, 0xabcd).map_err(|e| e.code()).err(), Some(Code::DataLoss));
        assert_eq!(check_trailer(Some(t), 10, 0xabce).map_err(|e| e.code()).err(), Some(Code::DataLoss));
        assert_eq!(check_trailer(None, 10, 0xabcd).map_err(|e| e.code()).err(), Some(Code::DataLoss));
    }
}
