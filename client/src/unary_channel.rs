//! A channel for unary calls that sends each request as two HTTP/2 frames instead of three.
//!
//! tonic encodes a request body as a stream that only learns it has ended when polled once more
//! after its one message, so hyper sends HEADERS, then DATA, then an empty DATA frame that ends
//! the stream, each usually its own `writev` on the socket and its own wake-up on the server.
//! Measured with 64 writers on one 2-core machine: ~3 `writev` per put. [`UnaryChannel`]
//! collects the (already encoded, immediately ready) message first and hands hyper a body that
//! knows its length and end, so the message goes out as HEADERS + DATA with END_STREAM, which is
//! what gRPC's Go and C++ clients send.
//!
//! Only for unary calls: collecting a streaming request would wait for the stream to end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Channel`] for unary calls (see the module docs). Cheap to clone, like the channel.
#[derive(Clone, Debug)]
pub struct UnaryChannel(Channel);

impl UnaryChannel {
    /// Wraps `channel`.
    pub fn new(channel: Channel) -> Self {
        Self(channel)
    }
}

impl tower::Service<http::Request<Body>> for UnaryChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The channel made ready by `poll_ready` is the one that must be called (it holds the
        // reserved buffer slot); a fresh clone takes its place here.
        let fresh = self.0.clone();
        let mut ready = std::mem::replace(&mut self.0, fresh);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let message = body.collect().await?.to_bytes();
            let request = http::Request::from_parts(parts, Body::new(Full::new(message)));
            Ok(tower::Service::call(&mut ready, request).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[tokio::test]
    async fn the_replacement_body_ends_with_its_message() {
        let body = Body::new(Full::new(bytes::Bytes::from_static(b"abc")));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(3));
        let mut body = body;
        let frame = body.frame().await.expect("one frame").expect("no error");
        assert_eq!(frame.into_data().expect("data").as_ref(), b"abc");
        assert!(body.is_end_stream(), "the end is known without another poll");
    }
}
