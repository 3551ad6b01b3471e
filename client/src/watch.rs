//! Watches that survive member failures: [`Client::watch`] returns a [`Watcher`] whose
//! background task reconnects (to another member if needed) and resumes from the last
//! delivered revision + 1, so the caller sees every change exactly once, in revision order.
//! Any member serves a watch (each delivers changes as it applies them); a watch goes to the
//! client's home member, like serializable reads, so many watchers spread over the members.
//!
//! If the resume point was compacted away, the watcher yields [`WatchEvent::Compacted`] and ends:
//! the caller re-reads the current state and starts a new watch from that read's revision + 1.

use std::time::Duration;

use conclave_proto::v1 as pb;
use conclave_proto::v1::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::{Client, Error};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Every key with this prefix.
    pub prefix: bool,
    /// Keys in `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// First revision to deliver (0 = changes after now).
    pub start_revision: u64,
    /// Include each key's previous value.
    pub prev_kv: bool,
    /// Ask for progress notifications while idle.
    pub progress_notify: bool,
}

/// What a watcher yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// All changes of one revision, in the order they were made.
    Changes {
        /// The revision.
        revision: u64,
        /// Its events.
        events: Vec<pb::Event>,
    },
    /// Every change up to `revision` has been delivered.
    Progress {
        /// The revision.
        revision: u64,
    },
    /// The resume revision was compacted; the watch ended (re-read and watch again).
    Compacted {
        /// The oldest revision still available.
        oldest: u64,
    },
}

/// A running watch. Dropping it stops the background task.
pub struct Watcher {
    rx: mpsc::Receiver<Result<WatchEvent, Error>>,
    task: JoinHandle<()>,
    progress: mpsc::UnboundedSender<()>,
}

impl Watcher {
    /// The next event; `None` after the watch ended (compaction or a final error).
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        self.rx.recv().await
    }

    /// Asks for a progress notification.
    pub fn request_progress(&self) {
        let _ = self.progress.send(());
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Watches a key (or prefix / range) from `opts.start_revision` (0 = now), resuming across
    /// disconnects and member failures.
    ///
    /// Bad input (an empty range) is reported as the first item, an `Error::Status`.
    pub fn watch(&self, key: impl AsRef<[u8]>, opts: WatchOptions) -> Watcher {
        let (tx, rx) = mpsc::channel(256);
        let (progress, progress_rx) = mpsc::unbounded_channel();
        let range = pb::KeyRange { key: key.as_ref().to_vec(), range_end: opts.range_end.clone(), prefix: opts.prefix };
        let task = tokio::spawn(run(self.clone(), range, opts, tx, progress_rx));
        Watcher { rx, task, progress }
    }
}

/// How a stream ended.
enum End {
    /// The caller is gone or the watch is over.
    Done,
    /// Reconnect (the stream broke).
    Retry(String),
}

async fn run(
    client: Client,
    range: pb::KeyRange,
    opts: WatchOptions,
    tx: mpsc::Sender<Result<WatchEvent, Error>>,
    mut progress_rx: mpsc::UnboundedReceiver<()>,
) {
    // Next revision to deliver; 0 until the first create answered (then "now + 1").
    let mut next = opts.start_revision;
    let mut backoff = Duration::from_millis(20);
    loop {
        let end = stream_once(&client, &range, &opts, &mut next, &tx, &mut progress_rx).await;
        match end {
            End::Done => return,
            End::Retry(why) => {
                tracing::debug!("watch stream broke ({why}); resuming from revision {next}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The revision a (re)created stream starts at: the next one to deliver, or, for a watch "from
/// now" that has not started yet, just after the newest revision this client has seen, so a
/// member that lags behind it does not deliver changes from before the watch (0 = the serving
/// member's now, when the client has seen nothing).
fn start_revision(next: u64, seen: u64) -> u64 {
    if next != 0 || seen == 0 {
        next
    } else {
        seen + 1
    }
}

async fn stream_once(
    client: &Client,
    range: &pb::KeyRange,
    opts: &WatchOptions,
    next: &mut u64,
    tx: &mpsc::Sender<Result<WatchEvent, Error>>,
    progress_rx: &mut mpsc::UnboundedReceiver<()>,
) -> End {
    let (addr, channel) = match client.conn.pick_home() {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return End::Done;
        }
    };
    let create = pb::WatchRequest {
        request: Some(pb::watch_request::Request::Create(pb::WatchCreateRequest {
            range: Some(range.clone()),
            start_revision: start_revision(*next, client.conn.seen_revision()),
            prev_kv: opts.prev_kv,
            progress_notify: opts.progress_notify,
            watch_id: 1,
        })),
    };
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let _ = req_tx.send(create);
    let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(req_rx);
    let stale = client.conn.token();
    let mut stream = match WatchClient::new(channel.clone()).watch(requests).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            return match client.conn.renew_token(channel, &s, stale).await {
                Ok(true) => End::Retry(s.to_string()),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    End::Done
                }
                Ok(false) if s.code() == Code::Unauthenticated => {
                    let _ = tx.send(Err(Error::from_status(&s))).await;
                    End::Done
                }
                Ok(false) => {
                    client.conn.fail_over(&addr, None);
                    End::Retry(s.to_string())
                }
            };
        }
    };
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            Some(()) = progress_rx.recv() => {
                let _ = req_tx.send(pb::WatchRequest { request: Some(pb::watch_request::Request::Progress(pb::WatchProgressRequest {})) });
                continue;
            }
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => {
                client.conn.fail_over(&addr, None);
                return End::Retry("stream closed".into());
            }
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::ResourceExhausted | Code::PermissionDenied) => {
                let _ = tx.send(Err(Error::from_status(&s))).await;
                return End::Done;
            }
            Err(s) => {
                client.conn.fail_over(&addr, None);
                return End::Retry(s.to_string());
            }
        };
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let event = if resp.canceled && resp.compact_revision > 0 {
            let _ = tx.send(Ok(WatchEvent::Compacted { oldest: resp.compact_revision })).await;
            return End::Done;
        } else if resp.created {
            if *next == 0 {
                *next = revision + 1;
            }
            continue;
        } else if resp.progress {
            WatchEvent::Progress { revision }
        } else if !resp.events.is_empty() {
            if revision < *next {
                continue; // never deliver a revision twice
            }
            *next = revision + 1;
            WatchEvent::Changes { revision, events: resp.events }
        } else {
            continue;
        };
        if tx.send(Ok(event)).await.is_err() {
            return End::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::start_revision;

    #[test]
    fn a_watch_from_now_starts_after_what_the_client_has_seen() {
        assert_eq!(start_revision(0, 0), 0, "nothing seen: the serving member's now");
        assert_eq!(start_revision(0, 41), 42);
        assert_eq!(start_revision(7, 41), 7, "an explicit or resumed start is kept");
    }
}
