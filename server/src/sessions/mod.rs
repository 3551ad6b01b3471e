//! Session liveness on the leader: in-memory deadlines renewed by keep-alives (no Raft entry
//! per keep-alive), and a loop that proposes the expiry of sessions whose deadline passed.
//!
//! Guarantees (documented in docs/design.md):
//! - A leader change never expires a session early: when a node becomes leader (a new term) it
//!   starts every session's deadline at the full TTL.
//! - Keep-alives are accepted only by a leader that has just confirmed its leadership with a
//!   quorum (a coalesced read-index round), so a deposed leader cannot keep a session alive.
//! - A stall of the leader never expires a session early: when the leader could not serve for
//!   longer than openraft's leader lease (the maximum election timeout, 300 ms by default) --
//!   its expiry tick ran that late (process paused, runtime blocked) or no quorum acknowledged
//!   it for that long (the metrics' `millis_since_quorum_ack`, aged while they go unreported) --
//!   it restarts every deadline at the full TTL before expiring anything, as a new term does
//!   (`stall.rs`). So a session is never expired less than a TTL after the leader can serve
//!   again; a stall shorter than the lease leaves at least 2/3 of the TTL for a keep-alive sent
//!   every TTL / 3.
//! - A session whose keep-alives stop is expired at most TTL + one expiry tick + one commit after
//!   the later of its last successful keep-alive and the end of the leader's last stall, while
//!   the leader stays; across a leader change, at most 2 x TTL + the election time.

mod deadlines;
mod stall;
mod tracker;

pub use tracker::{SessionTime, SessionTracker};
