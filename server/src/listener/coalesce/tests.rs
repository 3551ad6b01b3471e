use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::{Coalesced, IDLE_CAPACITY, STAGE_LIMIT};

/// What reached the connection: the bytes of each write call, in order.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

impl Writes {
    fn count(&self) -> usize {
        self.0.lock().expect("the writes lock").len()
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("the writes lock").concat()
    }
}

/// A connection that records its writes and takes at most `per_call` bytes a call, doing
/// vectored writes as a TCP socket does (one call for all slices); over an in-memory pipe when
/// `pipe` is set, else a sink.
struct Recorder {
    writes: Writes,
    per_call: usize,
    pipe: Option<DuplexStream>,
    /// Every other call is refused as "not now" (a full socket buffer), when set.
    stalls: bool,
    stalled: bool,
}

fn recorder(per_call: usize, pipe: Option<DuplexStream>) -> (Recorder, Writes) {
    let writes = Writes::default();
    (Recorder { writes: writes.clone(), per_call, pipe, stalls: false, stalled: false }, writes)
}

impl AsyncWrite for Recorder {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stalls {
            this.stalled = !this.stalled;
            if this.stalled {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let mut taken: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).take(this.per_call).collect();
        if let Some(pipe) = this.pipe.as_mut() {
            match Pin::new(pipe).poll_write(cx, &taken) {
                Poll::Ready(Ok(n)) => taken.truncate(n),
                other => return other,
            }
        }
        let n = taken.len();
        this.writes.0.lock().expect("the writes lock").push(taken);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().pipe.as_mut() {
            Some(pipe) => Pin::new(pipe).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Recorder {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().pipe.as_mut() {
            Some(pipe) => Pin::new(pipe).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// `n` chunks of distinct bytes, of sizes cycling through `sizes`.
fn chunks(n: usize, sizes: &[usize]) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..sizes[i % sizes.len()]).map(|j| (i * 31 + j) as u8).collect()).collect()
}

#[tokio::test]
async fn short_writes_leave_together_at_the_flush() {
    let (io, writes) = recorder(usize::MAX, None);
    let mut c = Coalesced::new(io);
    let sent = chunks(50, &[312]);
    for chunk in &sent {
        c.write_all(chunk).await.expect("write");
    }
    assert_eq!(writes.count(), 0, "nothing leaves before the flush");
    c.flush().await.expect("flush");
    assert_eq!(writes.count(), 1);
    assert_eq!(writes.bytes(), sent.concat());
    assert!(c.staged.capacity() <= IDLE_CAPACITY, "a drained connection keeps at most {IDLE_CAPACITY} bytes");
}

#[tokio::test]
async fn a_big_write_takes_what_is_staged_along_in_one_call() {
    let (io, writes) = recorder(usize::MAX, None);
    let mut c = Coalesced::new(io);
    let sent = chunks(2, &[9, STAGE_LIMIT + 1]);
    for chunk in &sent {
        c.write_all(chunk).await.expect("write");
    }
    assert_eq!(writes.count(), 1, "the header and the payload leave in one write");
    c.flush().await.expect("flush");
    assert_eq!(writes.count(), 1, "nothing was left to flush");
    assert_eq!(writes.bytes(), sent.concat());
}

#[tokio::test]
async fn partial_writes_keep_every_byte_in_order() {
    let (io, writes) = recorder(7, None);
    let mut c = Coalesced::new(io);
    let sent = chunks(40, &[1, 300, STAGE_LIMIT + 5, 20, 2 * STAGE_LIMIT]);
    for chunk in &sent {
        c.write_all(chunk).await.expect("write");
    }
    c.shutdown().await.expect("shutdown");
    assert_eq!(writes.bytes(), sent.concat(), "shutdown sends what is staged, in order");
}

#[tokio::test]
async fn a_connection_that_takes_little_at_a_time_never_has_more_than_the_limit_staged() {
    let (mut io, writes) = recorder(3000, None);
    io.stalls = true;
    let mut c = Coalesced::new(io);
    let sent = chunks(60, &[9, 20_000, 300, STAGE_LIMIT - 100, 5000]);
    for chunk in &sent {
        c.write_all(chunk).await.expect("write");
        assert!(c.staged.len() <= STAGE_LIMIT, "{} bytes held", c.staged.len());
    }
    c.flush().await.expect("flush");
    assert_eq!(writes.bytes(), sent.concat());
}

/// The case the wrapper is for: an HTTP/2 server sending a ~300-byte DATA frame on each of many
/// streams, as a member sends one revision's event to many watch streams.
#[tokio::test]
async fn the_frames_of_many_streams_leave_in_a_few_writes() {
    const STREAMS: usize = 200;
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (io, writes) = recorder(usize::MAX, Some(server_io));
    let server = tokio::spawn(async move {
        let mut conn = h2::server::handshake(Coalesced::new(io)).await.expect("server handshake");
        let mut responders = Vec::new();
        while responders.len() < STREAMS {
            let (_, respond) = conn.accept().await.expect("a request").expect("a good request");
            responders.push(respond);
        }
        let before = writes.count();
        // Kept open: a stream dropped unfinished is reset.
        let mut bodies = Vec::new();
        for mut respond in responders {
            let mut body = respond.send_response(http::Response::new(()), false).expect("response");
            body.send_data(bytes::Bytes::from(vec![b'w'; 300]), false).expect("data");
            bodies.push(body);
        }
        // Drives the connection until the client hangs up.
        while conn.accept().await.is_some() {}
        writes.count() - before
    });
    let (client, conn) = h2::client::handshake(client_io).await.expect("client handshake");
    tokio::spawn(conn);
    let (mut responses, mut requests) = (Vec::new(), Vec::new());
    for _ in 0..STREAMS {
        let mut client = client.clone().ready().await.expect("ready");
        let (response, request) = client.send_request(http::Request::new(()), false).expect("request");
        responses.push(response);
        requests.push(request);
    }
    for response in responses {
        let mut body = response.await.expect("response headers").into_body();
        let data = body.data().await.expect("a DATA frame").expect("good data");
        assert_eq!(data.len(), 300);
        let _ = body.flow_control().release_capacity(data.len());
    }
    drop((client, requests));
    let data_writes = server.await.expect("the server task");
    assert!(
        data_writes <= 10,
        "{STREAMS} streams' headers and DATA frames took {data_writes} writes; one each would be {STREAMS}"
    );
}
