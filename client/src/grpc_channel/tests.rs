//! The channel against a bare HTTP/2 server (the `h2` crate's), so each test controls exactly
//! what the server does: answer, vanish mid-call, close after one call, stop answering pings.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::Code;
use tower::Service;

use super::*;

/// A gRPC-framed message.
fn framed(payload: &[u8]) -> Bytes {
    let mut b = vec![0u8];
    b.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    b.extend_from_slice(payload);
    Bytes::from(b)
}

fn request(body: Body) -> http::Request<Body> {
    http::Request::post("/test.Echo/Call").header("content-type", "application/grpc").body(body).expect("request")
}

fn options() -> ChannelOptions {
    ChannelOptions { connect_timeout: Duration::from_millis(300), ..ChannelOptions::default() }
}

/// What the server saw of one request.
#[derive(Debug)]
struct Seen {
    authority: String,
    path: String,
    /// Whether END_STREAM came with the first DATA frame (no separate empty frame).
    ended_with_first_data: bool,
    data: Vec<Bytes>,
}

/// Answers a request with its own body and `grpc-status: 0`, after reading all of it.
async fn echo(req: http::Request<h2::RecvStream>, mut respond: h2::server::SendResponse<Bytes>) -> Seen {
    let authority = req.uri().authority().map(ToString::to_string).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let mut body = req.into_body();
    let mut data = Vec::new();
    let mut ended_with_first_data = false;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("request data");
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.is_empty() {
            ended_with_first_data = body.is_end_stream();
        }
        data.push(chunk);
    }
    let response = http::Response::builder().header("content-type", "application/grpc").body(()).expect("response");
    let mut send = respond.send_response(response, false).expect("send response");
    for chunk in &data {
        send.send_data(chunk.clone(), false).expect("send data");
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().expect("header"));
    send.send_trailers(trailers).expect("trailers");
    Seen { authority, path, ended_with_first_data, data }
}

/// Serves `per_connection` requests on each accepted connection (echoing them), then closes it;
/// reports every request seen and every accepted connection.
async fn echo_server(per_connection: usize) -> (String, mpsc::UnboundedReceiver<Seen>, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let (conn_tx, conn_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = conn_tx.send(());
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.expect("handshake");
                for _ in 0..per_connection {
                    let Some(Ok((req, respond))) = conn.accept().await else { return };
                    let serve = tokio::spawn(echo(req, respond));
                    // Keep driving the connection while the request is served.
                    let seen = tokio::select! {
                        seen = serve => seen.expect("served"),
                        _ = futures::future::poll_fn(|cx| conn.poll_closed(cx)) => return,
                    };
                    let _ = seen_tx.send(seen);
                }
                // Requests already on their way when the GOAWAY goes out are still served.
                conn.graceful_shutdown();
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(echo(req, respond));
                }
            });
        }
    });
    (addr, seen_rx, conn_rx)
}

async fn body_of(response: http::Response<ResponseBody>) -> (Bytes, http::HeaderMap) {
    let collected = response.into_body().collect().await.expect("response body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn a_unary_request_goes_out_whole_with_end_stream_on_its_data() {
    let (addr, mut seen, _) = echo_server(usize::MAX).await;
    let mut channel = GrpcChannel::new(&addr, options()).expect("channel");
    let message = framed(b"hello");
    let response = channel.call(request(Body::new(Full::new(message.clone())))).await.expect("call");
    let (body, trailers) = body_of(response).await;
    assert_eq!(body, message);
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    let seen = seen.recv().await.expect("seen");
    assert_eq!(seen.authority, addr);
    assert_eq!(seen.path, "/test.Echo/Call");
    assert_eq!(seen.data, vec![message]);
    assert!(seen.ended_with_first_data, "END_STREAM must ride on the message's DATA frame");
}

#[tokio::test]
async fn clones_share_one_connection_and_a_closed_one_is_replaced() {
    // The server closes each connection after two requests.
    let (addr, _seen, mut conns) = echo_server(2).await;
    let channel = GrpcChannel::new(&addr, options()).expect("channel");
    for i in 0..5u8 {
        let mut c = channel.clone();
        let mut outcome = c.call(request(Body::new(Full::new(framed(&[i]))))).await;
        if outcome.is_err() {
            // The call raced the server's close: it failed before it was sent; a retry reconnects.
            let status = outcome.as_ref().expect_err("error");
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            outcome = c.call(request(Body::new(Full::new(framed(&[i]))))).await;
        }
        let (body, _) = body_of(outcome.expect("call")).await;
        assert_eq!(body, framed(&[i]));
    }
    drop(channel);
    let mut accepted = 0;
    while conns.try_recv().is_ok() {
        accepted += 1;
    }
    // Calls that reach a connection during its shutdown are still served, so 2 or more.
    assert!((2..=5).contains(&accepted), "5 calls, 2 per connection: {accepted} connections");
}

#[tokio::test]
async fn a_streaming_body_is_piped_until_it_ends() {
    let (addr, mut seen, _) = echo_server(usize::MAX).await;
    let mut channel = GrpcChannel::new(&addr, options()).expect("channel");
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, Status>>(4);
    tx.send(Ok(http_body::Frame::data(framed(b"one")))).await.expect("send");
    let body = Body::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)));
    let call = tokio::spawn(async move { body_of(channel.call(request(body)).await.expect("call")).await });
    tx.send(Ok(http_body::Frame::data(framed(b"two")))).await.expect("send");
    drop(tx);
    let (body, _) = call.await.expect("joined");
    let seen = seen.recv().await.expect("seen");
    assert_eq!(seen.data.concat(), [framed(b"one"), framed(b"two")].concat());
    assert_eq!(body, [framed(b"one"), framed(b"two")].concat());
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_names_the_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let mut channel = GrpcChannel::new(&addr, options()).expect("channel");
    let status = channel.call(request(Body::new(Full::new(framed(b"x"))))).await.expect_err("nobody listens");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("connect") && status.message().contains(&addr), "{status:?}");
}

/// Accepts one connection, takes its first request, then runs `then` with the connection.
async fn one_request_then<F, Fut>(then: F) -> String
where
    F: FnOnce(h2::server::Connection<tokio::net::TcpStream, Bytes>, h2::server::SendResponse<Bytes>) -> Fut
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut conn = h2::server::handshake(tcp).await.expect("handshake");
        let (_req, respond) = conn.accept().await.expect("a request").expect("valid");
        then(conn, respond).await;
    });
    addr
}

#[tokio::test]
async fn a_connection_lost_after_the_request_was_sent_is_an_unknown_outcome() {
    let addr = one_request_then(|conn, respond| async move {
        drop(respond);
        drop(conn);
    })
    .await;
    let mut channel = GrpcChannel::new(&addr, options()).expect("channel");
    let status = channel.call(request(Body::new(Full::new(framed(b"x"))))).await.expect_err("connection dropped");
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(status.message().contains("outcome unknown"), "{status:?}");
}

#[tokio::test]
async fn an_unanswered_keep_alive_fails_the_open_call() {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The server takes the request, then neither answers it nor polls the connection again, so
    // pings go unanswered (a frozen or partitioned member).
    let addr = one_request_then(|conn, respond| async move {
        let _ = stop_rx.await;
        drop((conn, respond));
    })
    .await;
    let fast = ChannelOptions {
        keep_alive_interval: Duration::from_millis(100),
        keep_alive_timeout: Duration::from_millis(200),
        ..options()
    };
    let mut channel = GrpcChannel::new(&addr, fast).expect("channel");
    let outcome =
        tokio::time::timeout(Duration::from_secs(10), channel.call(request(Body::new(Full::new(framed(b"x")))))).await;
    let status = outcome.expect("the keep-alive must end the call").expect_err("the server never answers");
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    let _ = stop_tx.send(());
}
