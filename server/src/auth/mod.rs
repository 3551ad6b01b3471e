//! Authentication and authorization of the public API (`conclave serve --auth`), etcd's model.
//!
//! - **Identity**: a token from `Auth.Authenticate` (user + password) in the `authorization:
//!   Bearer <token>` or `x-conclave-token` metadata. Tokens are HMAC-signed with a secret kept
//!   in the replicated state ([`token`]), so every member checks them locally; expiry is
//!   checked against the member's clock, never inside apply. Without a token, on a client port
//!   with mutual TLS (`--client-ca`), the verified client certificate's CN (else its first DNS
//!   name) is the user (no password; etcd's rule).
//! - **Authorization**: the user's roles must grant the permission every key a request touches
//!   needs ([`access`]); `root` may do everything; user / role administration and cluster
//!   maintenance are root only. Checked against the member's applied state (a read lock and a
//!   map lookup per request; the state is updated by apply).
//! - **Freshness**: a follower applies a moment after its leader. A refusal is never decided
//!   on that older state: it is checked again after a linearizable barrier
//!   (`Authorizer::fresh`), so a user, password, grant or session change acknowledged
//!   through any member holds for the next request on every member. `Authenticate` looks the
//!   user up after the barrier too, so an old password is refused at once. A user's write is
//!   proposed as `Command::AsUser`, and apply checks it again on the state at its index
//!   ([`access::refusal`]), as etcd does: a permission revoked, a role taken away or a user
//!   deleted before the write in the log is honoured even when the member that received the
//!   write had not applied the revocation yet.
//! - **Streams**: a watch stream keeps its caller's [`Identity`] and re-checks it
//!   ([`Authorizer::still_valid`]) and its permissions while it lives
//!   (`service/watch/guard.rs`), so a watch ends when its token expires, its user's
//!   credentials change or its permission is revoked.
//! - **Off** (the default): [`Authorizer::caller`] answers [`Caller::Anyone`] at once and
//!   every check passes, so nothing else changes.
//! - **Session ownership**: a session opened by an authenticated user belongs to that user
//!   (`Command::SessionOpenOwned`); only the owner or root may keep it alive, close it, read its
//!   status or name it in a write ([`Authorizer::require_session_owner`]). Sessions opened
//!   without `--auth`, before owners existed, or on the ZooKeeper port have no owner: anyone
//!   may use them.
//!
//! Failures are `Error::Unauthenticated` (which failure and what to do),
//! `Error::PermissionDenied` (user, permission and key) and `Error::SessionNotOwned` (the
//! session; the owner is not named).

pub mod bootstrap;
pub mod password;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::metadata::MetadataMap;

use crate::error::{AuthFailure, Error, Result};
use crate::log_entry::auth::{AuthCommand, PermType};
use crate::log_entry::{Command, KeySelector, Proposal};
use crate::node::{Consistency, Node};
pub use crate::state_machine::access;
use crate::state_machine::auth::{AuthState, ROOT};
use crate::state_machine::response::OutcomeBody;
use crate::state_machine::StateMachine;
use access::{describe, Needs};

/// The authentication settings of a member.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// `--auth`: every public request needs an identity.
    pub enabled: bool,
    /// `--auth-token-ttl`: how long a token is valid.
    pub token_ttl: Duration,
    /// `--root-password-file`: creates `root` with this password if no root user exists yet.
    pub root_password_file: Option<std::path::PathBuf>,
}

/// Who sends a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off: everything is allowed.
    Anyone,
    /// An authenticated user.
    User(String),
}

/// Who sends a request, and what may end that identity while a stream of it lives: the token's
/// user epoch and expiry (none for a client certificate, which ends only with its connection).
#[derive(Clone, Debug)]
pub struct Identity {
    /// Who it is.
    pub caller: Caller,
    /// The token's claims, when the identity came from a token.
    token: Option<token::Claims>,
}

impl Identity {
    /// When the token expires (milliseconds since the Unix epoch); `None` without a token.
    pub fn expires_ms(&self) -> Option<u64> {
        self.token.as_ref().map(|c| c.expires_ms)
    }
}

/// `N` random bytes from the operating system's generator.
///
/// # Errors
/// `Internal` when the operating system has no working generator (never a guessable value).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Internal("the operating system's random generator failed".into()))?;
    Ok(out)
}

/// Milliseconds since the Unix epoch, by this member's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The token a request carries, if any.
fn token_of(md: &MetadataMap) -> Option<&str> {
    if let Some(t) = md.get(conclave_proto::TOKEN_METADATA).and_then(|v| v.to_str().ok()) {
        return Some(t.trim());
    }
    let auth = md.get(conclave_proto::AUTHORIZATION_METADATA)?.to_str().ok()?;
    auth.strip_prefix("Bearer ").map(str::trim)
}

/// The sessions of `ids` (0 skipped) that `sm` does not know, or `Err` with the first one owned
/// by a user other than `user`.
fn sessions_of_others(sm: &StateMachine, ids: &[u64], user: &str) -> std::result::Result<Vec<u64>, u64> {
    let mut unknown = Vec::new();
    for &id in ids.iter().filter(|id| **id != 0) {
        match (sm.sessions().get(id), sm.session_owner(id)) {
            (None, _) => unknown.push(id),
            (Some(_), Some(owner)) if owner != user => return Err(id),
            (Some(_), _) => {}
        }
    }
    Ok(unknown)
}

fn token_invalid(message: String) -> Error {
    Error::unauthenticated(AuthFailure::TokenInvalid, message)
}

/// Whether verified `claims` still hold on `a` at `now_ms` (see [`Authorizer::still_valid`]).
fn claims_hold(a: &AuthState, claims: &token::Claims, now_ms: u64) -> Result<()> {
    let expired = |m: String| Error::unauthenticated(AuthFailure::TokenExpired, m);
    let Some(user) = a.user(&claims.user) else {
        return Err(token_invalid(format!("user {:?} of the token no longer exists", claims.user)));
    };
    if user.epoch != claims.epoch {
        return Err(expired(format!(
            "the password or roles of user {:?} changed after the token was issued; authenticate again",
            claims.user
        )));
    }
    if now_ms >= claims.expires_ms {
        return Err(expired(format!(
            "the token of user {:?} expired {} ms ago; authenticate again",
            claims.user,
            now_ms - claims.expires_ms
        )));
    }
    Ok(())
}

/// The refusal of `needed` on `selector` to `user`; `context` (may be empty) is appended to
/// what was refused (e.g. which watch).
pub fn permission_denied(user: &str, needed: PermType, selector: &KeySelector, context: &str) -> Error {
    Error::PermissionDenied { user: user.to_owned(), needed: needed.name().into(), what: describe(selector) + context }
}

/// Checks identities and permissions for the public services.
pub struct Authorizer {
    config: AuthConfig,
    node: Arc<Node>,
}

impl Authorizer {
    /// The checker of `node`'s requests.
    pub fn new(config: AuthConfig, node: Arc<Node>) -> Arc<Self> {
        Arc::new(Self { config, node })
    }

    /// Whether `--auth` is on.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn view<T>(&self, f: impl FnOnce(&AuthState) -> T) -> Result<T> {
        self.node.view(|sm| f(sm.auth()))
    }

    /// Runs `check` on this member's applied state; a refusal (`Unauthenticated`,
    /// `PermissionDenied`, `SessionNotOwned`) is checked once more on state at least as new as
    /// every write acknowledged before this request (a linearizable barrier). A follower lags
    /// its leader by a moment: a user created, a password changed, a role granted or a session
    /// closed just before must not be refused here on the older state. A passing check costs
    /// nothing more; a refusal on a member cut off from its leader becomes the barrier's
    /// retriable error (`NoLeader`, `Unavailable`), never a refusal it cannot vouch for.
    async fn fresh<T>(&self, check: impl Fn(&StateMachine) -> Result<T>) -> Result<T> {
        self.fresh_when(check, |answer| answer.as_ref().is_err_and(Error::is_refusal)).await
    }

    /// [`Authorizer::fresh`], checking again whenever `again` says the local answer may be
    /// stale (not only on a refusal).
    async fn fresh_when<T>(
        &self,
        check: impl Fn(&StateMachine) -> Result<T>,
        again: impl Fn(&Result<T>) -> bool,
    ) -> Result<T> {
        match self.node.view(&check)? {
            answer if again(&answer) => self.node.read(Consistency::Linearizable, check).await,
            answer => answer,
        }
    }

    /// Who sends a request with metadata `md` over a connection whose verified client
    /// certificate names `cert_user` (a token, when present, is used first).
    ///
    /// # Errors
    /// As [`Authorizer::identify`].
    pub async fn caller(&self, md: &MetadataMap, cert_user: Option<&str>) -> Result<Caller> {
        self.identify(md, cert_user).await.map(|i| i.caller)
    }

    /// [`Authorizer::caller`], keeping what a stream needs to re-check the identity while it
    /// lives ([`Authorizer::still_valid`]).
    ///
    /// # Errors
    /// `Unauthenticated`: no token and no client certificate (`AUTH_REQUIRED`), a malformed or
    /// foreign token or one of a deleted user (`TOKEN_INVALID`), an expired token or one issued
    /// before the user's credentials or roles changed (`TOKEN_EXPIRED`).
    pub async fn identify(&self, md: &MetadataMap, cert_user: Option<&str>) -> Result<Identity> {
        if !self.config.enabled {
            return Ok(Identity { caller: Caller::Anyone, token: None });
        }
        let token = token_of(md);
        if let (None, Some(user)) = (token, cert_user) {
            return Ok(Identity { caller: Caller::User(user.to_owned()), token: None });
        }
        let Some(token) = token else {
            return Err(Error::unauthenticated(
                AuthFailure::Required,
                "authentication is required (the server runs with --auth): authenticate with a user name and \
                 password (Auth.Authenticate; conclavectl --user NAME:PASSWORD) and send the token, or \
                 present a client certificate (when the server has --client-ca)",
            ));
        };
        let claims = self
            .fresh(|sm| {
                let a = sm.auth();
                let secret =
                    a.secret().ok_or_else(|| token_invalid("the token was not issued by this cluster".into()))?;
                let claims = token::verify(token, secret).map_err(|e| {
                    token_invalid(format!(
                        "the token is not valid here ({e:?}): it was altered or issued by another cluster; authenticate \
                         again"
                    ))
                })?;
                claims_hold(a, &claims, now_ms())?;
                Ok(claims)
            })
            .await?;
        Ok(Identity { caller: Caller::User(claims.user.clone()), token: Some(claims) })
    }

    /// Whether `identity` still holds on the applied auth state `a` at `now_ms`: its token's
    /// user exists, with the epoch the token was issued at, and the token has not expired
    /// (always, without a token). Pure: a lookup in `a` and a comparison with `now_ms`.
    ///
    /// # Errors
    /// `Unauthenticated` with `TOKEN_INVALID` (the user was deleted) or `TOKEN_EXPIRED` (the
    /// token expired, or the user's password or roles changed since it was issued).
    pub fn still_valid(identity: &Identity, a: &AuthState, now_ms: u64) -> Result<()> {
        identity.token.as_ref().map_or(Ok(()), |claims| claims_hold(a, claims, now_ms))
    }

    /// Fails unless `caller` may do `needed` on every key of `selector`.
    ///
    /// # Errors
    /// `PermissionDenied` naming the user, the permission and the key.
    pub async fn require(&self, caller: &Caller, needed: PermType, selector: &KeySelector) -> Result<()> {
        self.require_all(caller, &[(needed, selector.clone())]).await
    }

    async fn require_all(&self, caller: &Caller, needs: &[(PermType, KeySelector)]) -> Result<()> {
        let Caller::User(user) = caller else { return Ok(()) };
        self.fresh(|sm| match needs.iter().find(|(p, s)| !sm.auth().allows(user, *p, s)) {
            Some((perm, selector)) => Err(permission_denied(user, *perm, selector, "")),
            None => Ok(()),
        })
        .await
    }

    /// Fails unless `caller` is root (or authentication is off); `what` names the operation.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn require_root(&self, caller: &Caller, what: &str) -> Result<()> {
        match caller {
            Caller::User(user) if user != ROOT => {
                Err(Error::PermissionDenied { user: user.clone(), needed: "root".into(), what: what.into() })
            }
            _ => Ok(()),
        }
    }

    /// Fails unless `caller` may run `command` (see [`access`]).
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub async fn require_command(&self, caller: &Caller, command: &Command) -> Result<()> {
        match access::needs(command) {
            Needs::Keys(needs) => self.require_all(caller, &needs).await,
            Needs::Root => self.require_root(caller, "this operation"),
        }
    }

    /// [`Authorizer::require_session_owner`] for the sessions `command` names
    /// ([`access::sessions_named`]); nothing is computed for an unauthenticated or root caller,
    /// so writes without `--auth` pay nothing.
    ///
    /// # Errors
    /// As [`Authorizer::require_session_owner`].
    pub async fn require_sessions_of(&self, caller: &Caller, command: &Command) -> Result<()> {
        match caller {
            Caller::User(user) if user != ROOT => {
                self.require_session_owner(caller, &access::sessions_named(command)).await
            }
            _ => Ok(()),
        }
    }

    /// Fails unless `caller` may use every session of `ids` (0 = no session, skipped): root,
    /// authentication off, or each session has no owner or is `caller`'s. Checked against this
    /// member's applied state; a session it does not know (a follower that has not applied its
    /// open yet) or finds owned by another user (a follower that has not applied its close yet)
    /// is checked again after a linearizable barrier, so a refusal never rests on stale state;
    /// one still unknown passes (the write then fails with `SESSION_NOT_FOUND` as before). An
    /// owner never changes after the open, so a session found owned by `caller` stays so until
    /// it ends.
    ///
    /// # Errors
    /// `SessionNotOwned` for the first session owned by another user (not naming the owner);
    /// the barrier's transient errors (`NoLeader`, `Unavailable`).
    pub async fn require_session_owner(&self, caller: &Caller, ids: &[u64]) -> Result<()> {
        let Caller::User(user) = caller else { return Ok(()) };
        if user == ROOT || ids.iter().all(|id| *id == 0) {
            return Ok(());
        }
        let check = |sm: &StateMachine| {
            sessions_of_others(sm, ids, user)
                .map_err(|session_id| Error::SessionNotOwned { user: user.clone(), session_id })
        };
        // A session unknown here (its open not applied yet) is looked up again too.
        let unknown_here = |answer: &Result<Vec<u64>>| match answer {
            Ok(unknown) => !unknown.is_empty(),
            Err(e) => e.is_refusal(),
        };
        self.fresh_when(check, unknown_here).await.map(|_still_unknown| ())
    }

    /// Checks `password` and issues a token for `name`, valid `--auth-token-ttl`. The user is
    /// looked up after a linearizable barrier: every user, password and role change
    /// acknowledged before holds, on any member.
    ///
    /// # Errors
    /// `Unauthenticated` (`AUTH_FAILED`) for an unknown user or a wrong password (the message
    /// does not say which); the barrier's transient errors (`NoLeader`, `Unavailable`, when the
    /// member is cut off from its leader); transient errors while proposing the token secret.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<(String, Duration)> {
        let failed = || {
            Error::unauthenticated(
                AuthFailure::Failed,
                "wrong user name or password (a new cluster has no users until a member starts with \
                 --root-password-file)",
            )
        };
        // Linearizable, as etcd's: a user created or a password changed through any member
        // just before is the one checked here, and an old password is refused at once.
        let lookup = |sm: &StateMachine| sm.auth().user(name).cloned().ok_or_else(failed);
        let user = self.node.read(Consistency::Linearizable, lookup).await?;
        let password = password.to_owned();
        let stored = user.password.clone();
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
            .await
            .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        if !ok {
            return Err(failed());
        }
        let secret = self.secret().await?;
        let ttl = self.config.token_ttl;
        let claims =
            token::Claims { user: name.to_owned(), expires_ms: now_ms() + ttl.as_millis() as u64, epoch: user.epoch };
        Ok((token::sign(&claims, &secret), ttl))
    }

    /// The cluster's token secret; proposes a random one (the first proposal wins) if unset.
    async fn secret(&self) -> Result<[u8; 32]> {
        if let Some(s) = self.view(|a| a.secret().copied())? {
            return Ok(s);
        }
        let command = Command::Auth(AuthCommand::SetSecret { secret: random_bytes()? });
        self.node.propose(Proposal { request_id: None, command }, 64).await?;
        // The first secret applied wins. A follower's forwarded proposal is answered by the
        // leader before it is applied here, and it changes no key (its outcome's revision says
        // nothing): wait for this member to apply what the leader had committed.
        self.node
            .read(Consistency::Linearizable, |sm| {
                sm.auth()
                    .secret()
                    .copied()
                    .ok_or_else(|| Error::Internal("the token secret is unset after it was applied".into()))
            })
            .await
    }

    /// Proposes an auth change (root checked by the caller), hashing nothing: see
    /// [`password::hash`] for the commands that carry one.
    ///
    /// # Errors
    /// `Command(Auth)` refusals, transient errors.
    pub async fn propose(&self, command: AuthCommand) -> Result<u64> {
        let proposal = Proposal { request_id: None, command: Command::Auth(command) };
        match self.node.propose(proposal, 256).await?.body {
            OutcomeBody::Auth { auth_revision } => Ok(auth_revision),
            other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Runs `f` on the applied auth state (user / role listings).
    ///
    /// # Errors
    /// `Internal` when the state lock is poisoned.
    pub fn read<T>(&self, f: impl FnOnce(&AuthState) -> T) -> Result<T> {
        self.view(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::BatchV1;
    use crate::state_machine::response::Outcome;

    fn open(sm: &mut StateMachine, command: Command) -> u64 {
        let batch = BatchV1 { leader_time_ms: 0, proposals: vec![Proposal { request_id: None, command }] };
        match sm.apply_batch(&batch, 1).pop() {
            Some(Ok(Outcome { body: OutcomeBody::SessionOpened { session_id }, .. })) => session_id,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_sessions_of_another_owner_are_refused_and_unknown_ones_are_listed() {
        let mut sm = StateMachine::default();
        let unowned = open(&mut sm, Command::SessionOpen { ttl_ms: 5_000 });
        let of_a = open(&mut sm, Command::SessionOpenOwned { ttl_ms: 5_000, owner: "a".into() });
        let of_b = open(&mut sm, Command::SessionOpenOwned { ttl_ms: 5_000, owner: "b".into() });
        assert_eq!(sessions_of_others(&sm, &[unowned, of_a, 0], "a"), Ok(Vec::new()), "no owner: anyone's");
        assert_eq!(sessions_of_others(&sm, &[unowned, of_a], "b"), Err(of_a));
        assert_eq!(sessions_of_others(&sm, &[of_b, 99, 98], "b"), Ok(vec![99, 98]), "unknown: checked again");
        assert_eq!(sessions_of_others(&sm, &[99, of_b], "a"), Err(of_b));
    }
}
