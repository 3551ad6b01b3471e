//! Request ids for exactly-once writes: a random client id, a sequence number per write, and
//! the lowest sequence number still outstanding (so the server can forget older results).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conclave_proto::v1 as pb;

/// Allocates request ids for one client.
pub(crate) struct RequestIds {
    client_id: u64,
    next: AtomicU64,
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
}

/// One write's id; it stays outstanding until dropped (after the final answer).
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) id: pb::RequestId,
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
}

/// The identity of one write, for sending it again after [`crate::Error::Indeterminate`]. While
/// any clone of it lives, the server keeps that write's result (the client reports it as still
/// outstanding), so a resend gets the original answer. Use it only with the same client and the
/// same arguments: the server answers a resend from its record and does not compare the request.
#[derive(Debug, Clone)]
pub struct WriteId(Arc<Ticket>);

impl WriteId {
    pub(crate) fn new(ticket: Ticket) -> Self {
        Self(Arc::new(ticket))
    }

    /// The request id sent with the write.
    pub fn request_id(&self) -> pb::RequestId {
        self.0.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut o) = self.outstanding.lock() {
            o.remove(&self.id.seq);
        }
    }
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        let client_id = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        Self { client_id, next: AtomicU64::new(1), outstanding: Arc::default() }
    }

    pub(crate) fn client_id(&self) -> u64 {
        self.client_id
    }

    pub(crate) fn begin(&self) -> Ticket {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let first_incomplete = match self.outstanding.lock() {
            Ok(mut o) => {
                o.insert(seq);
                o.first().copied().unwrap_or(seq)
            }
            Err(_) => 0,
        };
        Ticket {
            id: pb::RequestId { client_id: self.client_id, seq, first_incomplete },
            outstanding: self.outstanding.clone(),
        }
    }
}
