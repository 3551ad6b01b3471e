//! Keep-alives of many [`Session`](super::Session) handles of one client, coalesced: a
//! keep-alive waits a few milliseconds ([`MAX_WINDOW`] at most) for others to come due, and
//! those that came due within that window go together in one request. A client holding thousands of
//! sessions sends about one request per round trip instead of one per session: 100,000
//! sessions renewed every 10 s were 10,000 requests per second, each a leadership
//! confirmation on the leader.
//!
//! Each session keeps its own timer and state machine (`keep_alive_loop`); only the request is
//! shared. A request's failure is every waiting session's failure (each then retries on its
//! own, on another member). Requests carry at most [`MAX_IDS`] ids (the server's limit is
//! 100,000).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::Client;

/// Most session ids in one coalesced request.
pub const MAX_IDS: usize = 10_000;

/// Outcome for one session: `Some(alive)`, or `None` when the request failed.
type Reply = oneshot::Sender<Option<bool>>;

/// The sessions waiting for the next request, and whether a sender is running.
#[derive(Default)]
pub(crate) struct KeepAlives {
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    sessions: Vec<(u64, Reply)>,
    sending: bool,
}

impl Client {
    /// Renews session `id` in the next coalesced request: `Some(alive)`, or `None` when that
    /// request failed or did not answer within `budget`.
    pub(super) async fn keep_alive_coalesced(&self, id: u64, budget: Duration) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        let start_sender = {
            let mut w = self.keep_alives.state.lock().ok()?;
            w.sessions.push((id, tx));
            !std::mem::replace(&mut w.sending, true)
        };
        if start_sender {
            tokio::spawn(send_while_waiting(self.clone(), budget));
        }
        tokio::time::timeout(budget, rx).await.ok().and_then(Result::ok).flatten()
    }
}

/// How long the first waiting session holds a request open for others: a small part of its
/// budget, at most [`MAX_WINDOW`] (a renewal a few milliseconds late costs nothing: sessions
/// renew every TTL / 3).
fn window(budget: Duration) -> Duration {
    (budget / 20).min(MAX_WINDOW)
}

/// Longest wait for other sessions before a request goes.
pub const MAX_WINDOW: Duration = Duration::from_millis(50);

/// Every window, sends what has come due as one request (without waiting for the previous
/// request's answer: a slow answer delays no other session), until nothing is waiting.
async fn send_while_waiting(client: Client, budget: Duration) {
    loop {
        tokio::time::sleep(window(budget)).await;
        let batch: Vec<(u64, Reply)> = {
            let Ok(mut w) = client.keep_alives.state.lock() else { return };
            if w.sessions.is_empty() {
                w.sending = false;
                return;
            }
            let n = w.sessions.len().min(MAX_IDS);
            w.sessions.drain(..n).collect()
        };
        tokio::spawn(send(client.clone(), batch, budget));
    }
}

/// One request for `batch`; each session gets its own answer. A request refused with
/// PERMISSION_DENIED (under `--auth`, one of its sessions belongs to another user) is sent
/// again one session at a time, so only that session fails.
async fn send(client: Client, batch: Vec<(u64, Reply)>, budget: Duration) {
    let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
    let alive: Option<HashSet<u64>> = match client.keep_alive_once(&ids, budget).await {
        Ok(results) => Some(results.into_iter().filter(|r| r.alive).map(|r| r.session_id).collect()),
        Err(e) if e.code() == tonic::Code::PermissionDenied && batch.len() > 1 => {
            for (id, reply) in batch {
                let alive = client.keep_alive_once(&[id], budget).await.ok().map(|r| r.iter().any(|r| r.alive));
                let _ = reply.send(alive);
            }
            return;
        }
        Err(_) => None,
    };
    for (id, reply) in batch {
        let _ = reply.send(alive.as_ref().map(|a| a.contains(&id)));
    }
}
