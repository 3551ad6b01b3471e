//! The replicated authentication state: users (with password hashes computed before proposing),
//! roles with key permissions, and the token-signing secret. Apply only stores what the command
//! carries (no hashing, no randomness, no clock); the permission matcher ([`AuthState::allows`])
//! is a pure lookup the request path runs on a member's applied state.
//!
//! Every applied change increments the auth revision; a user's `epoch` is the auth revision of
//! its last credential change (created, password changed, a role revoked). Tokens carry the
//! epoch they were issued at, so such a change invalidates them on every member.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::mvcc::prefix_end;
use super::response::{CommandError, OutcomeBody};
use crate::log_entry::auth::{AuthCommand, PasswordHash, PermType, Permission};
use crate::log_entry::KeySelector;

/// The user with every permission.
pub const ROOT: &str = "root";

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Password hash.
    pub password: PasswordHash,
    /// Granted roles.
    pub roles: BTreeSet<String>,
    /// Auth revision of its last credential change (tokens issued before are refused).
    pub epoch: u64,
}

/// A role: permissions on keys and prefixes, at most one per (key, prefix).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Permissions, ordered by (key, prefix).
    pub perms: Vec<Permission>,
}

/// Why an auth change was refused (a value every replica agrees on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRefusal {
    /// The user or role exists already.
    Exists,
    /// No such user, role or permission.
    NotFound,
}

/// Users, roles and the token secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    revision: u64,
    secret: Option<[u8; 32]>,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

fn refused(refusal: AuthRefusal, message: String) -> CommandError {
    CommandError::Auth { refusal, message }
}

fn no_user(name: &str) -> CommandError {
    refused(AuthRefusal::NotFound, format!("user {name:?} does not exist"))
}

fn no_role(name: &str) -> CommandError {
    refused(AuthRefusal::NotFound, format!("role {name:?} does not exist"))
}

/// Whether `perm` covers every key `selector` selects. One permission must cover the whole
/// selection (permissions are not merged).
pub fn covers(perm: &Permission, selector: &KeySelector) -> bool {
    if !perm.prefix {
        return matches!(selector, KeySelector::Key(k) if *k == perm.key);
    }
    let p = &perm.key;
    match selector {
        KeySelector::Key(k) | KeySelector::Prefix(k) => k.starts_with(p),
        KeySelector::Interval { start, end } => {
            start.starts_with(p) && prefix_end(p).is_none_or(|pe| !end.is_empty() && *end <= pe)
        }
    }
}

impl AuthState {
    /// Auth revision: the number of applied auth changes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The token-signing secret, once set.
    pub fn secret(&self) -> Option<&[u8; 32]> {
        self.secret.as_ref()
    }

    /// A user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// User names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// A role.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Role names, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Whether `user` may do `needed` (`Read` or `Write`) on every key of `selector`: root may
    /// do everything (a root token exists only once the root user does; a client certificate
    /// named root is root, as in etcd); others need one permission of one of their roles
    /// covering the selection. A user that does not exist may do nothing.
    pub fn allows(&self, user: &str, needed: PermType, selector: &KeySelector) -> bool {
        if user == ROOT {
            return true;
        }
        let Some(u) = self.users.get(user) else { return false };
        u.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .any(|p| p.perm.covers(needed) && covers(p, selector))
    }

    /// Applies one change.
    ///
    /// # Errors
    /// [`CommandError::Auth`] when the named user or role exists already (adds) or does not
    /// exist (everything else); nothing changes then.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<OutcomeBody, CommandError> {
        let next = self.revision + 1;
        match command {
            AuthCommand::SetSecret { secret } => {
                if self.secret.is_some() {
                    return Ok(OutcomeBody::Auth { auth_revision: self.revision });
                }
                self.secret = Some(*secret);
            }
            AuthCommand::BootstrapRoot { password } => {
                if self.users.contains_key(ROOT) {
                    return Ok(OutcomeBody::Auth { auth_revision: self.revision });
                }
                let root = User { password: password.clone(), roles: BTreeSet::new(), epoch: next };
                self.users.insert(ROOT.to_owned(), root);
            }
            AuthCommand::UserAdd { name, password } => {
                if self.users.contains_key(name) {
                    return Err(refused(AuthRefusal::Exists, format!("user {name:?} already exists")));
                }
                self.users
                    .insert(name.clone(), User { password: password.clone(), roles: BTreeSet::new(), epoch: next });
            }
            AuthCommand::UserDelete { name } => {
                self.users.remove(name).ok_or_else(|| no_user(name))?;
            }
            AuthCommand::UserChangePassword { name, password } => {
                let user = self.users.get_mut(name).ok_or_else(|| no_user(name))?;
                user.password = password.clone();
                user.epoch = next;
            }
            AuthCommand::UserGrantRole { user, role } => {
                if !self.roles.contains_key(role) {
                    return Err(no_role(role));
                }
                self.users.get_mut(user).ok_or_else(|| no_user(user))?.roles.insert(role.clone());
            }
            AuthCommand::UserRevokeRole { user, role } => {
                let u = self.users.get_mut(user).ok_or_else(|| no_user(user))?;
                if !u.roles.remove(role) {
                    return Err(refused(AuthRefusal::NotFound, format!("user {user:?} does not hold role {role:?}")));
                }
                u.epoch = next;
            }
            AuthCommand::RoleAdd { name } => {
                if self.roles.contains_key(name) {
                    return Err(refused(AuthRefusal::Exists, format!("role {name:?} already exists")));
                }
                self.roles.insert(name.clone(), Role::default());
            }
            AuthCommand::RoleDelete { name } => {
                self.roles.remove(name).ok_or_else(|| no_role(name))?;
                for u in self.users.values_mut() {
                    if u.roles.remove(name) {
                        u.epoch = next;
                    }
                }
            }
            AuthCommand::RoleGrantPermission { role, perm } => {
                let r = self.roles.get_mut(role).ok_or_else(|| no_role(role))?;
                match r.perms.binary_search_by(|p| (&p.key, p.prefix).cmp(&(&perm.key, perm.prefix))) {
                    Ok(i) => r.perms[i] = perm.clone(),
                    Err(i) => r.perms.insert(i, perm.clone()),
                }
            }
            AuthCommand::RoleRevokePermission { role, key, prefix } => {
                let r = self.roles.get_mut(role).ok_or_else(|| no_role(role))?;
                let i = r.perms.binary_search_by(|p| (&p.key, p.prefix).cmp(&(key, *prefix))).map_err(|_| {
                    let what = if *prefix { "prefix" } else { "key" };
                    refused(
                        AuthRefusal::NotFound,
                        format!("role {role:?} has no permission on {what} {:?}", String::from_utf8_lossy(key)),
                    )
                })?;
                r.perms.remove(i);
            }
        }
        self.revision = next;
        Ok(OutcomeBody::Auth { auth_revision: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(perm: PermType, key: &str, prefix: bool) -> Permission {
        Permission { perm, key: key.into(), prefix }
    }

    fn hash() -> PasswordHash {
        PasswordHash { iterations: 1, salt: vec![1], hash: vec![2] }
    }

    #[test]
    fn a_prefix_permission_covers_keys_prefixes_and_intervals_inside_it_only() {
        let p = perm(PermType::Read, "/a/", true);
        assert!(covers(&p, &KeySelector::Key(b"/a/x".to_vec())));
        assert!(covers(&p, &KeySelector::Prefix(b"/a/x/".to_vec())));
        assert!(covers(&p, &KeySelector::Prefix(b"/a/".to_vec())));
        assert!(!covers(&p, &KeySelector::Prefix(b"/a".to_vec())), "/a covers /ab too");
        assert!(!covers(&p, &KeySelector::Key(b"/b/x".to_vec())));
        assert!(covers(&p, &KeySelector::Interval { start: b"/a/b".to_vec(), end: b"/a0".to_vec() }));
        assert!(!covers(&p, &KeySelector::Interval { start: b"/a/b".to_vec(), end: b"/a1".to_vec() }));
        assert!(!covers(&p, &KeySelector::Interval { start: b"/a/b".to_vec(), end: Vec::new() }));
        let everything = perm(PermType::Read, "", true);
        assert!(covers(&everything, &KeySelector::Prefix(Vec::new())));
        let single = perm(PermType::Read, "/a/k", false);
        assert!(covers(&single, &KeySelector::Key(b"/a/k".to_vec())));
        assert!(!covers(&single, &KeySelector::Prefix(b"/a/k".to_vec())));
        assert!(!covers(&single, &KeySelector::Key(b"/a/k2".to_vec())));
    }

    #[test]
    fn users_get_what_their_roles_grant_and_root_everything() {
        let mut a = AuthState::default();
        let apply = |a: &mut AuthState, c: AuthCommand| a.apply(&c).expect("applies");
        apply(&mut a, AuthCommand::BootstrapRoot { password: hash() });
        apply(&mut a, AuthCommand::UserAdd { name: "u".into(), password: hash() });
        apply(&mut a, AuthCommand::RoleAdd { name: "r".into() });
        apply(&mut a, AuthCommand::RoleGrantPermission { role: "r".into(), perm: perm(PermType::Read, "/a/", true) });
        let key = KeySelector::Key(b"/a/k".to_vec());
        assert!(!a.allows("u", PermType::Read, &key), "no role yet");
        apply(&mut a, AuthCommand::UserGrantRole { user: "u".into(), role: "r".into() });
        assert!(a.allows("u", PermType::Read, &key));
        assert!(!a.allows("u", PermType::Write, &key), "read does not cover write");
        assert!(a.allows(ROOT, PermType::Write, &key));
        assert!(AuthState::default().allows(ROOT, PermType::Write, &key), "a certificate named root");
        assert!(!a.allows("nobody", PermType::Read, &key));
        let epoch = a.user("u").map(|u| u.epoch);
        apply(&mut a, AuthCommand::UserRevokeRole { user: "u".into(), role: "r".into() });
        assert_ne!(a.user("u").map(|u| u.epoch), epoch, "a revoke invalidates tokens");
        assert!(!a.allows("u", PermType::Read, &key));
    }

    #[test]
    fn refusals_change_nothing_and_bootstrap_and_secret_apply_once() {
        let mut a = AuthState::default();
        a.apply(&AuthCommand::SetSecret { secret: [1; 32] }).expect("set");
        a.apply(&AuthCommand::SetSecret { secret: [2; 32] }).expect("no-op");
        assert_eq!(a.secret(), Some(&[1; 32]));
        a.apply(&AuthCommand::BootstrapRoot { password: hash() }).expect("root");
        let before = a.clone();
        let other = PasswordHash { iterations: 2, ..hash() };
        a.apply(&AuthCommand::BootstrapRoot { password: other }).expect("no-op");
        assert_eq!(a, before, "a second bootstrap changes nothing");
        assert!(matches!(
            a.apply(&AuthCommand::UserAdd { name: ROOT.into(), password: hash() }),
            Err(CommandError::Auth { refusal: AuthRefusal::Exists, .. })
        ));
        assert!(matches!(
            a.apply(&AuthCommand::UserGrantRole { user: ROOT.into(), role: "missing".into() }),
            Err(CommandError::Auth { refusal: AuthRefusal::NotFound, .. })
        ));
        assert_eq!(a, before);
    }
}
