//! Watches that survive member failures: [`Client::watch`] returns a [`Watcher`] that sees
//! every change exactly once, in revision order, resuming (on another member if needed) from
//! its last delivered revision + 1 when its stream breaks.
//!
//! A client's watches share gRPC streams, as etcd's clientv3 does: each stream carries up to
//! [`ClientConfig::watches_per_stream`](crate::ClientConfig) watches (and fewer if a member
//! refuses more: the refused ones move to another stream), so 1,000 watches of one client are
//! one stream, not 1,000. A stream goes to the client's home member, like serializable reads, so
//! many clients' watchers spread over the members; any member serves a watch (each delivers
//! changes as it applies them). When a stream breaks, all its watches resume on the new one,
//! each from its own last delivered revision + 1. A watch's events wait in its own buffer
//! ([`WATCH_BUFFER`] of them); a consumer that lets it fill holds up the other watches of its
//! stream (not those of other streams) until it reads again.
//!
//! Under `--auth`, an expired token (or changed credentials) on a live watch is renewed and the
//! watch resumes the same way, without loss or duplicates; when its user may no longer read
//! the watched range, the watcher yields the `PERMISSION_DENIED` error and ends.
//!
//! If the resume point was compacted away, the watcher yields [`WatchEvent::Compacted`] and ends:
//! the caller re-reads the current state and starts a new watch from that read's revision + 1.

mod hub;
mod stream;

use std::sync::{Arc, Mutex};

use conclave_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::{Client, Error};

pub(crate) use hub::Hub;

/// Events buffered per watch.
pub const WATCH_BUFFER: usize = 256;

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

/// What a watcher asks of the stream that carries it.
pub(crate) enum Command {
    /// Carry this watch.
    Add(WatchState),
    /// Stop the watch with this id.
    Cancel(i64),
    /// Send a progress notification to this watch.
    Progress(i64),
}

/// Where a watch's commands go: the stream carrying it (a watch refused by a member moves).
pub(crate) type Route = Arc<Mutex<mpsc::UnboundedSender<Command>>>;

/// One watch, as the stream carrying it keeps it.
pub(crate) struct WatchState {
    /// Unique in the client (so in every stream).
    id: i64,
    range: pb::KeyRange,
    opts: WatchOptions,
    /// Next revision to deliver; 0 until the first create was answered (then "now + 1").
    next: u64,
    tx: mpsc::Sender<Result<WatchEvent, Error>>,
    route: Route,
}

/// A running watch. Dropping it cancels the watch.
pub struct Watcher {
    rx: mpsc::Receiver<Result<WatchEvent, Error>>,
    id: i64,
    route: Route,
}

impl Watcher {
    /// The next event; `None` after the watch ended (compaction or a final error).
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        self.rx.recv().await
    }

    /// Asks for a progress notification.
    pub fn request_progress(&self) {
        self.command(Command::Progress(self.id));
    }

    fn command(&self, c: Command) {
        if let Ok(route) = self.route.lock() {
            let _ = route.send(c);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.command(Command::Cancel(self.id));
    }
}

impl Client {
    /// Watches a key (or prefix / range) from `opts.start_revision` (0 = now), resuming across
    /// disconnects and member failures, on a stream shared with this client's other watches.
    ///
    /// Bad input (an empty range) is reported as the first item, an `Error::Status`; the other
    /// watches of the stream carry on.
    pub fn watch(&self, key: impl AsRef<[u8]>, opts: WatchOptions) -> Watcher {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let range = pb::KeyRange { key: key.as_ref().to_vec(), range_end: opts.range_end.clone(), prefix: opts.prefix };
        let next = opts.start_revision;
        let (id, route) = self.watches.place(&self.conn, |id, route| WatchState { id, range, opts, next, tx, route });
        Watcher { rx, id, route }
    }
}

/// The revision a (re)created watch starts at: the next one to deliver, or, for a watch "from
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
