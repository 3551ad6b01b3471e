//! What log format level each member decodes, as its peer messages say
//! (`log_entry::format`).
//!
//! Every peer request and reply carries its sender's level in the [`METADATA`] header; a
//! member of a build from before levels sends none and counts as level 0. A leader learns each
//! member's level from that member's AppendEntries replies (heartbeats included, so within a
//! heartbeat of a restart on another build), a follower its leader's from the AppendEntries it
//! receives. A member not heard from yet counts as 0: a new leader proposes level-0 writes until
//! every member has answered it once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use tonic::metadata::MetadataMap;

use super::NodeId;
use crate::log_entry::format::CURRENT;

/// The peer-message header carrying the sender's log format level (decimal).
pub const METADATA: &str = "conclave-log-format";

/// Lowers the level this member tells (test hook: `CONCLAVE_TELL_LOG_FORMAT=0` makes a member
/// stand in for an older build in a mixed-version test; it still decodes every level).
pub const TELL_ENV: &str = "CONCLAVE_TELL_LOG_FORMAT";

/// The level this member tells its peers and proposes at most: this build's [`CURRENT`], or
/// lower as [`TELL_ENV`] says.
pub fn own() -> u32 {
    static OWN: OnceLock<u32> = OnceLock::new();
    *OWN.get_or_init(|| {
        std::env::var(TELL_ENV).ok().and_then(|v| v.trim().parse().ok()).map_or(CURRENT, |v: u32| v.min(CURRENT))
    })
}

/// Adds this member's level ([`own`]) to an outgoing peer request or reply.
pub fn tell(metadata: &mut MetadataMap) {
    metadata.insert(METADATA, tonic::metadata::MetadataValue::from(own()));
}

/// The level a peer message's sender told (0 when it told none: an older build).
pub fn told(metadata: &MetadataMap) -> u32 {
    metadata.get(METADATA).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The last level heard from each member.
#[derive(Debug, Default)]
pub struct PeerLevels {
    heard: Mutex<HashMap<NodeId, u32>>,
}

impl PeerLevels {
    /// Records what `node` told.
    pub fn heard(&self, node: NodeId, level: u32) {
        self.heard.lock().unwrap_or_else(PoisonError::into_inner).insert(node, level);
    }

    /// `node`'s level (0 when not heard from yet).
    pub fn of(&self, node: NodeId) -> u32 {
        self.heard.lock().unwrap_or_else(PoisonError::into_inner).get(&node).copied().unwrap_or(0)
    }

    /// The lowest level among `members` (this member, `me`, at [`own`]).
    pub fn lowest(&self, me: NodeId, members: impl IntoIterator<Item = NodeId>) -> u32 {
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        members
            .into_iter()
            .map(|id| if id == me { own() } else { heard.get(&id).copied().unwrap_or(0) })
            .fold(own(), u32::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_not_heard_from_or_silent_counts_as_level_0() {
        let levels = PeerLevels::default();
        assert_eq!(levels.lowest(1, [1, 2, 3]), 0);
        levels.heard(2, CURRENT);
        assert_eq!(levels.lowest(1, [1, 2, 3]), 0);
        levels.heard(3, CURRENT);
        assert_eq!(levels.lowest(1, [1, 2, 3]), CURRENT);
        assert_eq!(levels.lowest(1, [1]), CURRENT);
        // Node 3 restarted on an older build: its next reply tells no level.
        levels.heard(3, told(&MetadataMap::new()));
        assert_eq!((levels.of(3), levels.lowest(1, [1, 2, 3])), (0, 0));
    }

    #[test]
    fn the_header_round_trips_and_garbage_is_level_0() {
        let mut md = MetadataMap::new();
        tell(&mut md);
        assert_eq!(told(&md), own());
        md.insert(METADATA, "x".parse().expect("ascii"));
        assert_eq!(told(&md), 0);
    }
}
