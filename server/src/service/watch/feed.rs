//! One shared fan-out per member: the changes of each new revision are read from the state
//! machine once (one read-lock acquisition per batch of revisions, for all keys), converted to
//! protobuf events once, and kept in a bounded [`Window`] that every watch stream of this
//! member reads from (cloning `Arc`s under a short mutex, then filtering by its own selectors).
//!
//! The window is filled lazily by whichever stream first sees the applied revision move
//! ([`Feed::catch_up`]); the others find it filled. Nothing runs while nobody watches.
//! Positions before the window (new watches from an old revision, readers that fell behind
//! the window) read the state machine's history as before and then join the window.
//!
//! Memory bound: [`WINDOW_REVISIONS`] revisions and [`WINDOW_BYTES`] of keys and values (one
//! revision always kept), whatever the number of streams or how slow their readers are.

use std::sync::Mutex;

use conclave_proto::v1 as pb;

use super::window::{Window, WindowRead};
use crate::log_entry::KeySelector;
use crate::node::Node;
use crate::service::convert;
use crate::state_machine::history::HistoryRead;
use crate::state_machine::mvcc::{selects, Change};

/// Most revisions the shared window holds.
pub const WINDOW_REVISIONS: usize = 1024;
/// Most bytes of keys and values the shared window holds.
pub const WINDOW_BYTES: usize = 16 << 20;

/// One change, converted once for every stream.
#[derive(Debug)]
pub struct SharedEvent {
    /// The event without `prev_kv`.
    event: pb::Event,
    /// The key's previous state, for watches that asked for it.
    prev: Option<pb::KeyValue>,
}

/// The events of one revision, in the order they were made.
pub type RevisionEvents = Vec<SharedEvent>;

impl SharedEvent {
    /// Converts a change at `revision`; `None` for a change that is neither a put nor a delete
    /// of an existing key.
    pub fn new(change: Change, revision: u64) -> Option<Self> {
        let prev = change.prev.map(convert::kv);
        let event = match change.current {
            Some(kv) => {
                pb::Event { r#type: pb::event::EventType::Put as i32, kv: Some(convert::kv(kv)), prev_kv: None }
            }
            None => {
                let key = prev.as_ref()?.key.clone();
                let kv = pb::KeyValue { key, mod_revision: revision, ..Default::default() };
                pb::Event { r#type: pb::event::EventType::Delete as i32, kv: Some(kv), prev_kv: None }
            }
        };
        Some(Self { event, prev })
    }

    /// Whether `selector` selects this change's key.
    pub fn selected_by(&self, selector: &KeySelector) -> bool {
        self.event.kv.as_ref().is_some_and(|kv| selects(selector, &kv.key))
    }

    /// The event for one watch.
    pub fn to_event(&self, prev_kv: bool) -> pb::Event {
        let mut event = self.event.clone();
        if prev_kv {
            event.prev_kv.clone_from(&self.prev);
        }
        event
    }

    /// Bytes of keys and values held.
    fn size(&self) -> usize {
        let kv = |kv: &Option<pb::KeyValue>| kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len());
        kv(&self.event.kv) + kv(&self.prev)
    }
}

/// The member's shared fan-out (see the module doc).
pub struct Feed {
    window: Mutex<Window<RevisionEvents>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self { window: Mutex::new(Window::new(WINDOW_REVISIONS, WINDOW_BYTES)) }
    }
}

impl Feed {
    /// Brings the window up to `applied` (the applied revision a stream was woken for), reading
    /// the new revisions' changes once under the state machine's read lock. A gap larger than
    /// the window (a first fill, a snapshot install) or a compacted start restarts the window
    /// empty at the current revision: readers before it catch up from history.
    pub fn catch_up(&self, node: &Node, applied: u64) {
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        if window.end().is_some_and(|end| end >= applied) {
            return;
        }
        let max = window.max_revisions();
        let filled = node.view(|sm| {
            let current = sm.revision();
            let from = match window.end() {
                Some(end) if end <= current && current - end <= max as u64 => end + 1,
                _ => return window.restart(current),
            };
            match sm.read_changes(from, max, |_| true) {
                HistoryRead::Compacted(_) => window.restart(current),
                HistoryRead::Changes { revisions, next } => {
                    for (revision, changes) in revisions {
                        let events: RevisionEvents =
                            changes.into_iter().filter_map(|c| SharedEvent::new(c, revision)).collect();
                        let size = events.iter().map(SharedEvent::size).sum();
                        window.push(revision, events, size);
                    }
                    window.advance(next - 1);
                }
            }
        });
        if let Err(e) = filled {
            tracing::warn!("watch feed: cannot read the state machine: {e}");
        }
    }

    /// At most `max` changed revisions from `next` on, shared (see [`Window::read`]).
    pub fn read(&self, next: u64, max: usize) -> WindowRead<RevisionEvents> {
        match self.window.lock() {
            Ok(window) => window.read(next, max),
            Err(_) => WindowRead::Behind,
        }
    }
}
