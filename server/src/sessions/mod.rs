//! Session liveness on the leader: in-memory deadlines renewed by keep-alives (no Raft entry
//! per keep-alive), and a loop that proposes the expiry of sessions whose deadline passed.
//!
//! Guarantees (documented in docs/design.md):
//! - A leader change never expires a session early: when a node becomes leader (a new term) it
//!   starts every session's deadline at the full TTL.
//! - Keep-alives are accepted only by a leader that has just confirmed its leadership with a
//!   quorum (a coalesced read-index round), so a deposed leader cannot keep a session alive.
//! - A session whose keep-alives stop is expired at most TTL + one expiry tick + one commit after
//!   its last successful keep-alive while the leader stays; across a leader change, at most
//!   2 x TTL + the election time.

mod tracker;

pub use tracker::{SessionTime, SessionTracker};
