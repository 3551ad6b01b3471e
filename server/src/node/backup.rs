//! Backups ([`Node::backup`]): a consistent copy of one member's applied state, streamed as a
//! backup file (`crate::restore`) while it is encoded, so a large state (280 MB for 1 M keys) is
//! never held whole in memory a second time.

use std::io::Write;

use tokio::sync::{mpsc, oneshot};

use super::Node;
use crate::error::{Error, Result};
use crate::restore::Sealer;

/// A backup being encoded: what it holds, then its bytes in [`BackupPiece`]s.
#[derive(Debug)]
pub struct Backup {
    /// The store revision it holds.
    pub revision: u64,
    /// The last log index it includes (on this member).
    pub index: u64,
    /// The backup file's bytes in chunks, then [`BackupPiece::End`]. An `Err` (the encoding
    /// failed) or a closed channel without `End` means the backup is incomplete. Dropping the
    /// receiver stops the encoding.
    pub pieces: mpsc::Receiver<Result<BackupPiece>>,
}

/// A piece of a backup's byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupPiece {
    /// The next bytes of the backup file.
    Chunk(Vec<u8>),
    /// The end: the file's size and CRC-32 (IEEE) over all its bytes.
    End {
        /// Bytes sent in chunks.
        size: u64,
        /// CRC-32 of those bytes.
        crc32: u32,
    },
}

/// Chunks waiting to be sent; the encoder waits when the reader is this far behind.
const PIECES_QUEUED: usize = 2;

impl Node {
    /// A consistent copy of this member's applied state, holding every write acknowledged
    /// before the call (a read-index barrier through the leader first, so a follower's backup is
    /// not behind). The state is copied under its read lock (a moment: the copy shares its
    /// structure) and encoded on the blocking pool into chunks of `chunk_bytes` as the reader
    /// takes them; the cluster keeps running meanwhile.
    ///
    /// # Errors
    /// Retriable `Unavailable`-class errors when the member cannot confirm it is up to date (no
    /// leader, cut off: back up another member); `Internal` when the state lock is poisoned.
    /// An encoding failure later ends [`Backup::pieces`] with an `Internal` error.
    pub async fn backup(&self, chunk_bytes: usize) -> Result<Backup> {
        self.router.linearizable_barrier().await?;
        let shared = self.router.shared().clone();
        let (tx, mut pieces) = mpsc::channel(PIECES_QUEUED);
        let (copied_tx, copied_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut out = Sealer::new(Chunks::new(tx.clone(), chunk_bytes.max(1)));
            let encoded = shared.encode_applied_into(&mut out, |meta, revision| {
                let _ = copied_tx.send((meta.last_log_id.map_or(0, |l| l.index), revision));
            });
            let end = encoded
                .and_then(|()| out.finish().map_err(|e| e.to_string()))
                .and_then(|chunks| chunks.end().map_err(|e| e.to_string()));
            // Nothing to do when the reader is gone.
            let _ = tx.blocking_send(end.map_err(|e| Error::Internal(format!("backup: {e}"))));
        });
        match copied_rx.await {
            Ok((index, revision)) => Ok(Backup { revision, index, pieces }),
            // The copy failed: its error is the one piece sent.
            Err(_) => Err(match pieces.recv().await {
                Some(Err(e)) => e,
                _ => Error::Internal("backup: the encoding task ended without a result".into()),
            }),
        }
    }
}

/// Cuts what is written into chunks of `size` bytes and sends each on `tx` (waiting for room).
struct Chunks {
    tx: mpsc::Sender<Result<BackupPiece>>,
    buf: Vec<u8>,
    size: usize,
    sent: u64,
    crc: crc32fast::Hasher,
}

impl Chunks {
    fn new(tx: mpsc::Sender<Result<BackupPiece>>, size: usize) -> Self {
        Self { tx, buf: Vec::with_capacity(size), size, sent: 0, crc: crc32fast::Hasher::new() }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.size));
        self.crc.update(&chunk);
        self.sent += chunk.len() as u64;
        self.tx
            .blocking_send(Ok(BackupPiece::Chunk(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the backup's reader is gone"))
    }

    /// Sends what is left; the `End` piece to send last.
    fn end(mut self) -> std::io::Result<BackupPiece> {
        self.send()?;
        Ok(BackupPiece::End { size: self.sent, crc32: self.crc.finalize() })
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = (self.size - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` through a sealed [`Chunks`] in pieces of `step` bytes; returns the pieces.
    fn stream(data: &[u8], chunk: usize, step: usize) -> Vec<BackupPiece> {
        // Room for every chunk: nothing reads until the end.
        let (tx, mut rx) = mpsc::channel(data.len() + 64);
        let mut out = Sealer::new(Chunks::new(tx, chunk));
        for piece in data.chunks(step) {
            out.write_all(piece).expect("write");
        }
        let end = out.finish().expect("footer").end().expect("end");
        let mut pieces = Vec::new();
        while let Ok(p) = rx.try_recv() {
            pieces.push(p.expect("a chunk"));
        }
        pieces.push(end);
        pieces
    }

    #[test]
    fn streamed_chunks_are_the_sealed_file() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = crate::restore::seal(data.clone());
        for (chunk, step) in [(1_000, 333), (4_096, 10_000), (1, 7), (20_000, 1)] {
            let pieces = stream(&data, chunk, step);
            let mut bytes = Vec::new();
            for p in &pieces[..pieces.len() - 1] {
                let BackupPiece::Chunk(c) = p else { panic!("a chunk before the end: {p:?}") };
                assert!(!c.is_empty() && c.len() <= chunk, "chunk of {} bytes (max {chunk})", c.len());
                bytes.extend_from_slice(c);
            }
            assert_eq!(bytes, sealed, "chunk {chunk}, step {step}");
            let end = BackupPiece::End { size: sealed.len() as u64, crc32: crc32fast::hash(&sealed) };
            assert_eq!(pieces.last(), Some(&end));
        }
    }

    #[test]
    fn encoding_stops_when_the_reader_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut out = Chunks::new(tx, 4);
        let e = out.write_all(b"more than four bytes").expect_err("nobody reads");
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
