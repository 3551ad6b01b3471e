//! Whether this node may vote and campaign. Closed while the node rejoins after losing its
//! data (`node::rejoin`): a member whose log was lost must not grant votes or elect itself,
//! or a candidate missing committed entries could win (Raft's safety assumes a voter never
//! forgets what it acknowledged). Open otherwise.

use std::sync::atomic::{AtomicBool, Ordering};

/// The gate, shared by the peer service (votes), the prompt-election driver and the rejoin flow.
#[derive(Debug, Default)]
pub struct VotingGate {
    closed: AtomicBool,
}

impl VotingGate {
    /// Whether this node may grant votes and start elections now.
    pub fn open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }

    /// Opens (`true`) or closes the gate.
    pub fn set_open(&self, open: bool) {
        self.closed.store(!open, Ordering::SeqCst);
    }
}
