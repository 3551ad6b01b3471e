//! The `Maintenance` service: backups (`Snapshot`) and the consistency check (`HashKV`), both
//! served by the member asked from its own applied state (no leader involved).

use std::pin::Pin;

use conclave_proto::v1 as pb;
use conclave_proto::v1::maintenance_server::Maintenance;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::Api;

/// Bytes per `SnapshotChunk` (well under the 4 MiB default message limit of gRPC clients).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for Api {
    type SnapshotStream = ChunkStream;

    async fn snapshot(&self, req: Request<pb::SnapshotRequest>) -> Result<Response<ChunkStream>, Status> {
        self.root(&req, "saving a snapshot")?;
        let backup = self.node.backup().await?;
        let trailer = pb::SnapshotTrailer {
            revision: backup.revision,
            size: backup.bytes.len() as u64,
            crc32: crc32fast::hash(&backup.bytes),
            index: backup.index,
            header: Some(self.header(backup.revision)),
        };
        // Chunks are copied out one at a time as the stream is polled (the backup is in memory
        // once, plus the chunk in flight).
        let bytes = backup.bytes;
        let chunks = (0..bytes.len().div_ceil(SNAPSHOT_CHUNK_BYTES))
            .map(move |i| {
                let end = ((i + 1) * SNAPSHOT_CHUNK_BYTES).min(bytes.len());
                pb::SnapshotChunk { blob: bytes[i * SNAPSHOT_CHUNK_BYTES..end].to_vec(), trailer: None }
            })
            .chain(std::iter::once(pb::SnapshotChunk { blob: Vec::new(), trailer: Some(trailer) }))
            .map(Ok);
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        self.root(&req, "hashing the key space")?;
        let h = self.node.hash_kv(req.into_inner().revision)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.header(h.revision)),
            revision: h.revision,
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }
}
