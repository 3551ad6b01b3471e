//! Placing a client's watches on shared streams: each new watch goes to the first stream with
//! room (fewer watches than its limit), else to a new stream. A stream's limit starts at
//! [`ClientConfig::watches_per_stream`](crate::ClientConfig) and drops to what a member
//! accepted when it refuses more (`LIMIT_EXCEEDED`); the refused watches are placed again.
//!
//! Streams live as long as the client or a watch they carry: a stream left without watches
//! closes its gRPC stream and waits, and is reused for the client's next watch.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use super::stream::{self, Load};
use super::{Command, Route, WatchState};
use crate::connection::Connection;

struct Slot {
    commands: mpsc::UnboundedSender<Command>,
    load: Arc<Load>,
}

/// A client's watch streams (see the module doc).
pub(crate) struct Hub {
    streams: Mutex<Vec<Slot>>,
    next_id: AtomicI64,
    per_stream: usize,
    me: Weak<Hub>,
}

impl Hub {
    /// No streams yet; at most `per_stream` watches per stream (at least 1).
    pub(crate) fn new(per_stream: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            streams: Mutex::new(Vec::new()),
            next_id: AtomicI64::new(0),
            per_stream: per_stream.max(1),
            me: me.clone(),
        })
    }

    /// A stream with room for one more watch (counted), started if needed.
    fn stream_with_room(&self, conn: &Arc<Connection>) -> mpsc::UnboundedSender<Command> {
        let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        streams.retain(|s| !s.commands.is_closed());
        if let Some(s) = streams.iter().find(|s| s.load.try_take()) {
            return s.commands.clone();
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let load = Arc::new(Load::one_watch(self.per_stream));
        let (hub, c) = (self.me.clone(), conn.clone());
        let elsewhere: stream::Elsewhere = Box::new(move |w| match hub.upgrade() {
            Some(hub) => {
                hub.replace(&c, w);
                Ok(())
            }
            None => Err(w),
        });
        tokio::spawn(stream::run(conn.clone(), elsewhere, rx, load.clone()));
        streams.push(Slot { commands: commands.clone(), load });
        commands
    }

    /// Places a new watch, built by `make` from its id and route; returns both.
    pub(crate) fn place(&self, conn: &Arc<Connection>, make: impl FnOnce(i64, Route) -> WatchState) -> (i64, Route) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let commands = self.stream_with_room(conn);
        let route = Arc::new(Mutex::new(commands.clone()));
        let _ = commands.send(Command::Add(make(id, route.clone())));
        (id, route)
    }

    /// Places a watch a stream could not keep on another stream.
    fn replace(&self, conn: &Arc<Connection>, w: WatchState) {
        let commands = self.stream_with_room(conn);
        if let Ok(mut route) = w.route.lock() {
            route.clone_from(&commands);
        }
        let _ = commands.send(Command::Add(w));
    }
}
