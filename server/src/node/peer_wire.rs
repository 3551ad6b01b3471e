//! The answering end of the framed peer wire (`raft::network::wire`): each call of a
//! connection runs in its own task through the same [`PeerService`] methods as over gRPC, so
//! the checks (cluster id, log format level) and answers are the same; answers go back in the
//! order they are ready.
//!
//! Limits: at most [`CALLS_PER_CONNECTION`] calls of one connection run at once (the rest wait
//! in the socket); a frame over the limits or that does not decode ends the connection with a
//! warning naming the peer, never the member.

use std::net::SocketAddr;
use std::sync::Arc;

use conclave_proto::internal::v1::raft_peer_server::RaftPeer;
use conclave_proto::internal::v1::RaftMessage;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::peer_service::PeerService;
use crate::raft::network::wire::{self, Header, Method};
use crate::raft::network::wire_write_loop;

/// Calls of one connection running at once.
pub const CALLS_PER_CONNECTION: usize = 1024;

/// Serves one connection whose first bytes are the wire's magic, until it closes or `stop`.
pub async fn serve(mut stream: TcpStream, remote: SocketAddr, service: Arc<PeerService>) {
    let mut magic = [0u8; 8];
    if stream.read_exact(&mut magic).await.is_err() || &magic != wire::MAGIC {
        tracing::warn!(%remote, "peer port: a connection opened like the peer wire with a wrong greeting; closed");
        return;
    }
    let (read, write) = stream.into_split();
    let mut read = wire::reader(read);
    let (tx, rx) = mpsc::channel(4096);
    let writer = tokio::spawn(wire_write_loop(write, rx));
    let running = Arc::new(Semaphore::new(CALLS_PER_CONNECTION));
    loop {
        match wire::read_frame(&mut read).await {
            Ok(Some((Header::Request { id, method, metadata, format }, payload))) => {
                let Ok(permit) = running.clone().acquire_owned().await else { break };
                let (service, tx) = (service.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut request = tonic::Request::new(RaftMessage { format, payload });
                    *request.metadata_mut() = wire::to_metadata(metadata);
                    let answer = dispatch(&service, method, request).await;
                    let (header, payload) = match answer {
                        Ok(reply) => {
                            let metadata = wire::from_metadata(reply.metadata());
                            let msg = reply.into_inner();
                            (Header::Response { id, status: None, metadata, format: msg.format }, msg.payload)
                        }
                        Err(status) => (
                            Header::Response {
                                id,
                                status: Some(wire::from_status(&status)),
                                metadata: vec![],
                                format: 0,
                            },
                            Vec::new(),
                        ),
                    };
                    if let Ok(frame) = wire::frame(&header, &payload) {
                        let _ = tx.send(frame).await;
                    }
                    drop(permit);
                });
            }
            Ok(Some((Header::Ping, _))) => {
                if let Ok(pong) = wire::frame(&Header::Pong, &[]) {
                    let _ = tx.send(pong).await;
                }
            }
            Ok(Some((Header::Pong, _))) => {}
            Ok(Some((Header::Response { .. }, _))) => {
                tracing::warn!(%remote, "peer wire: an answer arrived on an answering connection; closed");
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%remote, "peer wire: {e}; connection closed");
                break;
            }
        }
    }
    drop(tx);
    // Answers still running are dropped with the connection; the caller sees it closed.
    writer.abort();
}

async fn dispatch(
    service: &PeerService,
    method: Method,
    request: tonic::Request<RaftMessage>,
) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
    match method {
        Method::AppendEntries => service.append_entries(request).await,
        Method::Vote => service.vote(request).await,
        Method::Propose => service.propose(request).await,
        Method::ProposeBatch => service.propose_batch(request).await,
        Method::ReadIndex => service.read_index(request).await,
        Method::Sessions => service.sessions(request).await,
        Method::ElectionProbe => service.election_probe(request).await,
        Method::TimeoutNow => service.timeout_now(request).await,
    }
}
