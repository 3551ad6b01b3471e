//! The `Maintenance` service: backups (`Snapshot`) and the consistency check (`HashKV`), both
//! served by the member asked from its own applied state (no leader involved).

use std::pin::Pin;

use conclave_proto::v1 as pb;
use conclave_proto::v1::maintenance_server::Maintenance;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::Api;
use crate::node::backup::BackupPiece;

/// Bytes per `SnapshotChunk` (well under the 4 MiB default message limit of gRPC clients).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for Api {
    type SnapshotStream = ChunkStream;

    async fn snapshot(&self, req: Request<pb::SnapshotRequest>) -> Result<Response<ChunkStream>, Status> {
        self.root(&req, "saving a snapshot").await?;
        let backup = self.node.backup(SNAPSHOT_CHUNK_BYTES).await?;
        let header = self.header(backup.revision);
        let (revision, index) = (backup.revision, backup.index);
        // Chunks are sent as the member encodes them: the backup is never whole in memory.
        let chunks = tokio_stream::wrappers::ReceiverStream::new(backup.pieces).map(move |piece| match piece {
            Ok(BackupPiece::Chunk(blob)) => Ok(pb::SnapshotChunk { blob, trailer: None }),
            Ok(BackupPiece::End { size, crc32 }) => {
                let trailer = pb::SnapshotTrailer { revision, size, crc32, index, header: Some(header) };
                Ok(pb::SnapshotChunk { blob: Vec::new(), trailer: Some(trailer) })
            }
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        self.root(&req, "hashing the key space").await?;
        let h = self.node.hash_kv(req.into_inner().revision)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.header(h.revision)),
            revision: h.revision,
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }
}
