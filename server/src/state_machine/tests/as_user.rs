//! `Command::AsUser` (`--auth`): apply checks the caller's permissions and session ownership
//! again on the state at the entry, so what was revoked before it in the log is honoured.

use super::*;
use crate::log_entry::auth::{AuthCommand, PasswordHash, PermType, Permission};
use crate::log_entry::UserCommand;

fn auth(n: &mut Node, c: AuthCommand) {
    n.ok(Command::Auth(c));
}

/// User `u` with role `u`, granted write on `/u/`.
fn user_with_write_on_u(n: &mut Node) {
    let password = PasswordHash { iterations: 1, salt: vec![1], hash: vec![2] };
    auth(n, AuthCommand::UserAdd { name: "u".into(), password });
    auth(n, AuthCommand::RoleAdd { name: "u".into() });
    let perm = Permission { perm: PermType::ReadWrite, key: b("/u/"), prefix: true };
    auth(n, AuthCommand::RoleGrantPermission { role: "u".into(), perm });
    auth(n, AuthCommand::UserGrantRole { user: "u".into(), role: "u".into() });
}

fn as_user(user: &str, command: Command) -> Command {
    Command::AsUser { user: user.into(), command: UserCommand(Box::new(command)) }
}

fn refused(result: CommandResult) -> String {
    match result {
        Err(CommandError::PermissionDenied { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_write_applies_only_while_its_user_holds_the_permission() {
    let mut n = Node::new();
    user_with_write_on_u(&mut n);
    let written = n.ok(as_user("u", put("/u/k", "1")));
    assert_eq!(n.get("/u/k").map(|kv| kv.value), Some(b("1")), "applied as the command itself");
    assert_eq!(written.revision, n.sm.revision());
    let message = refused(n.apply(as_user("u", put("/other", "x"))));
    assert!(message.contains("\"u\"") && message.contains("/other"), "{message}");

    // Revoked (before the write in the log): refused, nothing changes.
    auth(&mut n, AuthCommand::RoleRevokePermission { role: "u".into(), key: b("/u/"), prefix: true });
    let before = n.sm.revision();
    refused(n.apply(as_user("u", put("/u/k", "2"))));
    refused(n.apply(as_user("u", txn(Vec::new(), vec![op_put("/u/t", "t")], Vec::new()))));
    refused(n.apply(as_user("u", add("/u/c", 1))));
    assert_eq!((n.sm.revision(), n.get("/u/k").map(|kv| kv.value)), (before, Some(b("1"))));

    // A deleted user, and root-only commands, are refused too; root passes unchecked.
    auth(&mut n, AuthCommand::UserDelete { name: "u".into() });
    refused(n.apply(as_user("u", put("/u/k", "3"))));
    refused(n.apply(as_user("u", Command::SessionExpire { session_id: 1 })));
    n.ok(as_user(crate::state_machine::auth::ROOT, put("/u/k", "4")));
    assert_eq!(n.get("/u/k").map(|kv| kv.value), Some(b("4")));
}

#[test]
fn a_session_opened_by_another_user_is_refused_at_apply() {
    let mut n = Node::new();
    user_with_write_on_u(&mut n);
    // The member that received u's request did not know session `s` yet (it let it pass); by
    // the time the entry applies, another user opened it.
    let opened = n.ok(Command::SessionOpenOwned { ttl_ms: 5_000, owner: "other".into() });
    let OutcomeBody::SessionOpened { session_id: s } = opened.body else { panic!("{opened:?}") };
    let bound = Command::Put { key: b("/u/e"), value: b("v"), prev_kv: false, session: s };
    let message = refused(n.apply(as_user("u", bound)));
    assert!(message.contains(&format!("session {s}")), "{message}");
    refused(n.apply(as_user("u", Command::SessionClose { session_id: s })));
    assert!(n.sm.sessions().get(s).is_some(), "the session is left as it was");
    assert_eq!(n.get("/u/e"), None);
    // u's own session works.
    let own = n.ok(as_user("u", Command::SessionOpenOwned { ttl_ms: 5_000, owner: "u".into() }));
    let OutcomeBody::SessionOpened { session_id: mine } = own.body else { panic!("{own:?}") };
    n.ok(as_user("u", Command::Put { key: b("/u/e"), value: b("v"), prev_kv: false, session: mine }));
    assert_eq!(n.get("/u/e").map(|kv| kv.session), Some(mine));
}
