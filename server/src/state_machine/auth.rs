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
use super::response::{AuthRefusal, CommandError, OutcomeBody};
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

/// Whether `perm` alone covers every key `selector` selects (see [`AuthState::allows`] for the
/// union of several permissions).
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

/// A half-open interval `[start, end)` of the key order; `end == None`: to the end of the key space.
type Span = (Vec<u8>, Option<Vec<u8>>);

/// The keys `selector` selects, as one interval (a key `k` is `[k, k\0)`).
fn selector_span(selector: &KeySelector) -> Span {
    match selector {
        KeySelector::Key(k) => (k.clone(), Some(key_successor(k))),
        KeySelector::Prefix(p) => (p.clone(), prefix_end(p)),
        KeySelector::Interval { start, end } => (start.clone(), Some(end.clone())),
    }
}

/// The keys `perm` grants, as one interval.
fn permission_span(perm: &Permission) -> Span {
    if perm.prefix {
        (perm.key.clone(), prefix_end(&perm.key))
    } else {
        (perm.key.clone(), Some(key_successor(&perm.key)))
    }
}

/// The smallest key after `key`: `key` followed by a zero byte.
fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// Whether the union of `grants` covers `wanted`: a sweep over the grants sorted by start that
/// extends the covered part `[wanted.start, reached)` until it reaches `wanted.end` (covered) or
/// meets a gap (not covered). O(n log n) in the number of grants.
fn union_covers(mut grants: Vec<Span>, wanted: Span) -> bool {
    grants.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let (mut reached, end) = wanted;
    for (start, grant_end) in grants {
        if start > reached {
            return false;
        }
        match grant_end {
            None => return true,
            Some(e) if e > reached => reached = e,
            Some(_) => {}
        }
        if end.as_ref().is_some_and(|end| reached >= *end) {
            return true;
        }
    }
    false
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
    /// named root is root, as in etcd); others need the union of the permissions of all their
    /// roles that grant `needed` to cover the selection, as etcd merges them (a key permission
    /// `k` is the interval `[k, k\0)`, a prefix one every key starting with it): `read` on
    /// `/a/` from one role and `read` on `/b/` from another allow the range `[/a/, /b0)`, `read`
    /// and `write` on a key from two roles allow both; one missing key refuses the whole
    /// selection. A user that does not exist may do nothing. Pure: a function of this state only.
    ///
    /// Cost: one permission covering the selection answers without allocating; otherwise a
    /// sweep over the user's granting permissions, O(p log p) for p permissions.
    pub fn allows(&self, user: &str, needed: PermType, selector: &KeySelector) -> bool {
        if user == ROOT {
            return true;
        }
        let Some(u) = self.users.get(user) else { return false };
        let granting = || {
            u.roles
                .iter()
                .filter_map(|r| self.roles.get(r))
                .flat_map(|r| r.perms.iter())
                .filter(move |p| p.perm.covers(needed))
        };
        if granting().any(|p| covers(p, selector)) {
            return true;
        }
        union_covers(granting().map(permission_span).collect(), selector_span(selector))
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

    /// A state with user `u` holding one role per permission in `grants`.
    fn user_with(grants: &[Permission]) -> AuthState {
        let mut a = AuthState::default();
        a.apply(&AuthCommand::UserAdd { name: "u".into(), password: hash() }).expect("user");
        for (i, p) in grants.iter().enumerate() {
            let role = format!("r{i}");
            a.apply(&AuthCommand::RoleAdd { name: role.clone() }).expect("role");
            a.apply(&AuthCommand::RoleGrantPermission { role: role.clone(), perm: p.clone() }).expect("grant");
            a.apply(&AuthCommand::UserGrantRole { user: "u".into(), role }).expect("grant role");
        }
        a
    }

    fn interval(start: &str, end: &str) -> KeySelector {
        KeySelector::Interval { start: start.into(), end: end.into() }
    }

    #[test]
    fn the_permissions_of_all_roles_merge_into_one_union() {
        use PermType::{Read, ReadWrite, Write};
        // Adjacent prefixes from two roles cover a range that neither covers alone.
        let a = user_with(&[perm(Read, "/a/", true), perm(Read, "/a0", true)]);
        let both = interval("/a/x", "/a0z");
        assert!(a.allows("u", Read, &both), "[/a/, /a1) covers [/a/x, /a0z)");
        assert!(!user_with(&[perm(Read, "/a/", true)]).allows("u", Read, &both), "one role alone does not");
        assert!(!user_with(&[perm(Read, "/a0", true)]).allows("u", Read, &both));
        assert!(!a.allows("u", Read, &interval("/a/x", "/a1x")), "/a1 is not granted");
        assert!(!a.allows("u", Write, &both), "only grants of the needed type count");
        // Overlapping grants, in any order; a key permission `k` is exactly `[k, k\0)`.
        let under = Permission { perm: Read, key: b"/b\0".to_vec(), prefix: true };
        let b = user_with(&[perm(Read, "/b/m", true), under, perm(Read, "/b", false), perm(Read, "/b/", true)]);
        assert!(b.allows("u", Read, &KeySelector::Interval { start: b"/b".to_vec(), end: b"/b\x01".to_vec() }));
        assert!(!b.allows("u", Read, &interval("/b", "/b0")), "keys between /b\\x01 and /b/ are not granted");
        // A gap refuses.
        let gap = user_with(&[perm(Read, "/c/a", true), perm(Read, "/c/c", true)]);
        assert!(!gap.allows("u", Read, &interval("/c/a", "/c/d")), "/c/b is not granted");
        assert!(!gap.allows("u", Read, &KeySelector::Prefix(b"/c/".to_vec())));
        // Read from one role and write from another make readwrite.
        let rw = user_with(&[perm(Read, "/d/", true), perm(Write, "/d/", true)]);
        let key = KeySelector::Key(b"/d/k".to_vec());
        assert!(rw.allows("u", Read, &key) && rw.allows("u", Write, &key));
        // The whole key space, from a prefix "" permission only.
        let all = user_with(&[perm(Write, "/", true), perm(ReadWrite, "", true)]);
        assert!(all.allows("u", Read, &KeySelector::Prefix(Vec::new())));
        assert!(!user_with(&[perm(Read, "/", true)]).allows("u", Read, &KeySelector::Prefix(Vec::new())));
    }

    /// Property: whatever the grants, an allowed selection has every one of its keys granted
    /// by some single permission (checked on every key of a small alphabet), and a selection
    /// whose keys all fall in one permission is allowed.
    #[test]
    fn the_union_allows_only_granted_keys_property() {
        const ALPHABET: &[u8] = &[0, b'a', b'b', 0xff];
        let mut keys = vec![Vec::new()];
        for len in 1..=3 {
            let mut next = Vec::new();
            for k in keys.iter().filter(|k| k.len() == len - 1) {
                for c in ALPHABET {
                    let mut k = k.clone();
                    k.push(*c);
                    next.push(k);
                }
            }
            keys.extend(next);
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let short = |random: &mut dyn FnMut(usize) -> usize| keys[random(1 + 4 + 16)].clone();
        for _ in 0..3000 {
            let grants: Vec<Permission> = (0..random(4))
                .map(|_| Permission { perm: PermType::Read, key: short(&mut random), prefix: random(2) == 0 })
                .collect();
            let a = user_with(&grants);
            let selector = match random(3) {
                0 => KeySelector::Key(short(&mut random)),
                1 => KeySelector::Prefix(short(&mut random)),
                _ => {
                    let (x, y) = (short(&mut random), short(&mut random));
                    if x == y {
                        continue;
                    }
                    KeySelector::Interval { start: x.clone().min(y.clone()), end: x.max(y) }
                }
            };
            let granted = |k: &[u8]| grants.iter().any(|p| if p.prefix { k.starts_with(&p.key) } else { k == p.key });
            if a.allows("u", PermType::Read, &selector) {
                for k in keys.iter().filter(|k| crate::state_machine::mvcc::selects(&selector, k)) {
                    assert!(granted(k), "{selector:?} allowed by {grants:?} but {k:?} is not granted");
                }
            }
            if grants.iter().any(|p| covers(p, &selector)) {
                assert!(a.allows("u", PermType::Read, &selector), "{selector:?} inside one of {grants:?}");
            }
        }
    }
}
