//! Bodies: the request body split into what is ready now and the rest (streamed by a task),
//! and the response body read from the HTTP/2 stream with its flow-control capacity released.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt;
use h2::{RecvStream, SendStream};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::Status;

/// What a request body has ready without waiting.
pub(super) struct Ready {
    /// The data frames ready now.
    pub(super) chunks: Vec<Bytes>,
    /// Whether the body has ended (a unary call's body ends after its one message).
    pub(super) ended: bool,
}

/// Takes every frame `body` has ready now. tonic encodes a unary request as a stream that only
/// reports its end when polled again after its message; that second poll is ready at once, so
/// a unary request is complete here and goes out as HEADERS + DATA(END_STREAM).
///
/// # Errors
/// `Internal` when the body fails (an encoding error in the caller's message).
pub(super) fn take_ready(body: &mut Body) -> Result<Ready, Status> {
    let mut chunks = Vec::new();
    loop {
        if body.is_end_stream() {
            return Ok(Ready { chunks, ended: true });
        }
        match body.frame().now_or_never() {
            None => return Ok(Ready { chunks, ended: false }),
            Some(None) => return Ok(Ready { chunks, ended: true }),
            Some(Some(Ok(frame))) => chunks.extend(frame.into_data().ok().filter(|d| !d.is_empty())),
            Some(Some(Err(e))) => return Err(Status::internal(format!("request body: {e}"))),
        }
    }
}

/// Streams the rest of a request body (a streaming call: watch, keep-alive) to the server, and
/// ends the stream when the body ends. Stops when the server resets the stream.
pub(super) async fn pipe(mut body: Body, mut stream: SendStream<Bytes>) {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = futures::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if stream.send_data(data, false).is_err() {
                        return;
                    }
                }
            }
            Some(Err(_)) => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}

/// A response body: DATA frames (their flow-control capacity given back as they are read),
/// then the trailers that carry the gRPC status.
#[derive(Debug)]
pub struct ResponseBody {
    recv: RecvStream,
    data_done: bool,
}

impl ResponseBody {
    pub(super) fn new(recv: RecvStream) -> Self {
        Self { recv, data_done: false }
    }
}

/// A stream that failed after its request went out: the server may have acted on it.
pub(super) fn broken(e: &h2::Error) -> Status {
    conclave_proto::errors::status(
        tonic::Code::Unknown,
        format!("the stream failed after the request was sent (outcome unknown): {e}"),
        conclave_proto::errors::Reason::Unavailable,
        conclave_proto::errors::Outcome::Unknown,
    )
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(broken(&e)))),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(broken(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
