//! Write coalescing for the connections of the gRPC ports.
//!
//! h2 (under tonic) holds at most one "chained" DATA payload at a time: on a connection that
//! supports vectored writes it chains every payload over 256 bytes instead of copying it into
//! its 16 KiB frame buffer, and writes the buffer and that payload out before it takes the next
//! frame. A watch event for a plain gRPC client (a stream per watch) is about 300 bytes, so a
//! member delivering one revision to 330 watch streams made 330 `writev`s of 312 bytes
//! (`strace`), and the client 330 reads.
//!
//! [`Coalesced`] declares the connection non-vectored, so h2 copies payloads up to 1 KiB into
//! its buffer (about fifty watch events per write). A frame bigger than that would then take two
//! writes (h2's buffer, then the payload); a short write is therefore staged here and goes out
//! with the next one in a single `writev`, or at the flush that ends each of h2's write rounds.
//! (tokio's `BufWriter`, which the ZooKeeper port uses, would not do: it reports vectored writes,
//! so h2 still chains, and h2 flushes after every chained frame.)
//!
//! Guarantees: bytes reach the connection in the order they were written, and everything
//! accepted is written before `poll_flush` or `poll_shutdown` completes. At most
//! [`STAGE_LIMIT`] bytes are staged per connection, and a connection whose staged bytes are all
//! written keeps at most [`IDLE_CAPACITY`] of buffer (many idle client connections cost little).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes staged per connection; a write that would pass it goes out at once (with what is
/// staged, in one `writev`). Above h2's 16 KiB frame buffer, so its writes are staged whole.
const STAGE_LIMIT: usize = 32 * 1024;

/// Most staging buffer a connection keeps once everything staged is written; a bigger one is
/// freed (and allocated again by the next burst).
const IDLE_CAPACITY: usize = 4 * 1024;

/// A connection whose short writes are staged and sent together (see the module doc).
pub struct Coalesced<IO> {
    io: IO,
    staged: Vec<u8>,
    /// How much of `staged` is already written.
    sent: usize,
}

impl<IO> Coalesced<IO> {
    /// Wraps `io`; nothing is staged yet.
    pub fn new(io: IO) -> Self {
        Self { io, staged: Vec::new(), sent: 0 }
    }

    fn unsent(&self) -> &[u8] {
        &self.staged[self.sent..]
    }

    /// Marks `n` staged bytes written; forgets them all once all are (freeing a buffer over
    /// [`IDLE_CAPACITY`]).
    fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.staged.len() {
            if self.staged.capacity() > IDLE_CAPACITY {
                self.staged = Vec::new();
            } else {
                self.staged.clear();
            }
            self.sent = 0;
        }
    }
}

fn write_zero() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "the connection accepted no bytes")
}

impl<IO: AsyncWrite + Unpin> Coalesced<IO> {
    /// Writes out everything staged.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent().is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.staged[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(write_zero()));
            }
            self.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesced<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unsent().len() + buf.len() <= STAGE_LIMIT {
            // After a partial write the written part goes first, so the buffer stays in bounds.
            this.staged.drain(..this.sent);
            this.sent = 0;
            this.staged.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // Too big to stage: what is staged and `buf` leave in one write.
        while !this.unsent().is_empty() {
            let bufs = [IoSlice::new(&this.staged[this.sent..]), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(write_zero()));
            }
            let staged = this.unsent().len();
            this.advance(n.min(staged));
            if n > staged {
                return Poll::Ready(Ok(n - staged));
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// `false`: so h2 copies payloads up to 1 KiB into its frame buffer (see the module doc).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Coalesced<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalesced<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests;
