//! Log format levels: which [`Command`] variants a build decodes, so that a rolling upgrade
//! never puts into the log an entry that a member still running the older build cannot decode.
//!
//! Level 0 is every build from before levels existed: it decodes the variants up to
//! [`Command::Auth`]. Level 1 adds [`Command::SessionOpenOwned`] and [`Command::AsUser`]. A
//! variant added later raises [`CURRENT`] and gets a branch in [`lower`].
//!
//! Members tell each other their level on every peer message (`raft::peer_levels`). Before a
//! write is proposed it is lowered to the level of the members that will decode it: what a
//! leader proposes, to the lowest level among every member of the cluster; what a follower
//! hands to its leader, to the leader's level. Lowering keeps what an older cluster did with
//! the same request:
//! - `AsUser { user, command }` becomes `command`: the member that received the request has
//!   checked `user`'s permissions, as before level 1; only the second check at apply
//!   (`state_machine::access`) is skipped.
//! - `SessionOpenOwned { ttl_ms, owner }` becomes `SessionOpen { ttl_ms }`: the session has no
//!   owner, so any user allowed to use sessions may use it, as before level 1.
//!
//! Once every member runs a build of level N, writes carry level-N variants again; a member
//! moved back to an older build after that cannot decode them (no downgrades, as in etcd).

use super::{Command, Proposal};

/// The level this build decodes (and tells its peers).
pub const CURRENT: u32 = 1;

/// The lowest level that decodes `command` (with what it holds).
pub fn level_of(command: &Command) -> u32 {
    match command {
        Command::AsUser { command, .. } => level_of(command).max(1),
        Command::SessionOpenOwned { .. } => 1,
        _ => 0,
    }
}

/// `proposal` as members of `level` decode it (unchanged when they decode it already).
/// `level` is asked only for a proposal above level 0 (most writes are not), so finding the
/// members' level stays off the path of every other write.
pub fn lower(proposal: Proposal, level: impl FnOnce() -> u32) -> Proposal {
    let needed = level_of(&proposal.command);
    if needed == 0 {
        return proposal;
    }
    let level = level();
    if needed <= level {
        return proposal;
    }
    Proposal { command: lower_command(proposal.command, level), ..proposal }
}

fn lower_command(command: Command, level: u32) -> Command {
    if level_of(&command) <= level {
        return command;
    }
    match command {
        Command::AsUser { command, .. } => lower_command(*command.0, level),
        Command::SessionOpenOwned { ttl_ms, .. } => Command::SessionOpen { ttl_ms },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::{RequestId, UserCommand};

    fn put() -> Command {
        Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), prev_kv: false, session: 0 }
    }

    fn proposal(command: Command) -> Proposal {
        Proposal { request_id: Some(RequestId { client_id: 7, seq: 3, first_incomplete: 1 }), command }
    }

    #[test]
    fn level_1_variants_are_lowered_for_level_0_and_kept_for_level_1() {
        let as_user = proposal(Command::AsUser { user: "a".into(), command: UserCommand(Box::new(put())) });
        assert_eq!(lower(as_user.clone(), || 1), as_user);
        assert_eq!(lower(as_user, || 0), proposal(put()));
        let owned = proposal(Command::SessionOpenOwned { ttl_ms: 5_000, owner: "a".into() });
        assert_eq!(lower(owned.clone(), || CURRENT), owned);
        assert_eq!(lower(owned, || 0), proposal(Command::SessionOpen { ttl_ms: 5_000 }));
        // What a user's session open is proposed as: both lowered at once.
        let owned = Command::SessionOpenOwned { ttl_ms: 5_000, owner: "a".into() };
        let users = proposal(Command::AsUser { user: "a".into(), command: UserCommand(Box::new(owned)) });
        assert_eq!(lower(users.clone(), || CURRENT), users);
        assert_eq!(lower(users, || 0), proposal(Command::SessionOpen { ttl_ms: 5_000 }));
    }

    #[test]
    fn older_variants_are_never_changed() {
        for command in [put(), Command::SessionOpen { ttl_ms: 1 }, Command::SessionClose { session_id: 4 }] {
            assert_eq!(level_of(&command), 0);
            assert_eq!(lower(proposal(command.clone()), || 0), proposal(command.clone()));
            // The members' level is not even looked up for such a write.
            assert_eq!(lower(proposal(command.clone()), || panic!("level asked for {command:?}")), proposal(command));
        }
    }
}
