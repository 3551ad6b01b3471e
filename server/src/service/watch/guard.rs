//! A watch stream's authorization, re-checked while it lives (`--auth`): a watch delivers
//! changes only while the stream's caller may still read its range.
//!
//! The stream keeps its caller's identity (user, and for a token its expiry and the user's
//! epoch at issue). Before it sends any batch of events (after reading them, so every change
//! sent was applied before the auth state it was checked against), and whenever the applied
//! state moves, it asks [`Guard::check`]: the identity must still hold (the user exists with the
//! same epoch, the token has not expired) and the user must still have `read` on every watched
//! range (`AuthState::allows`). A timer also runs the check when the token expires, so an idle
//! watch ends then too.
//!
//! Cost: while neither the auth revision nor the token's validity changed since the last check
//! that passed, a check is one read of the auth revision and a clock comparison; after an auth
//! change, one full pass (O(watches × roles × permissions)) under one read lock. Without
//! `--auth` (or for a certificate identity, whose only end is its connection) nothing expires.

use tokio::time::Instant;

use crate::auth::{self, Authorizer, Caller, Identity};
use crate::error::Error;
use crate::log_entry::auth::PermType;
use crate::log_entry::KeySelector;

/// Why a stream's authorization ended.
pub(super) enum Ended {
    /// The identity ended (`Unauthenticated`): every watch of the stream.
    Identity(Error),
    /// The user may no longer read watch `id`'s range (`PermissionDenied`).
    Watch(i64, Error),
}

/// What a stream re-checks (see the module doc); `None` for [`Caller::Anyone`].
pub(super) struct Guard {
    identity: Identity,
    user: String,
    /// The auth revision of the last check that passed.
    checked: Option<u64>,
}

impl Guard {
    /// The guard of a stream opened by `identity`; `None` when authentication is off.
    pub(super) fn new(identity: Identity) -> Option<Self> {
        let Caller::User(user) = &identity.caller else { return None };
        let user = user.clone();
        Some(Self { identity, user, checked: None })
    }

    /// When the token expires, by this member's clock (then [`Guard::check`] fails).
    pub(super) fn deadline(&self) -> Option<Instant> {
        let remaining = self.identity.expires_ms()?.saturating_sub(auth::now_ms());
        Some(Instant::now() + std::time::Duration::from_millis(remaining))
    }

    /// Whether the stream's identity still holds and may still read every one of `watches`
    /// (id and range), on this member's applied auth state.
    ///
    /// # Errors
    /// [`Ended::Identity`] with `Unauthenticated` (`TOKEN_EXPIRED`: expired, or the user's
    /// password or roles changed; `TOKEN_INVALID`: the user was deleted); [`Ended::Watch`]
    /// with `PermissionDenied` for the first watch whose range is no longer readable. An
    /// unreadable state (a poisoned lock) is `Internal`, for every watch.
    pub(super) fn check<'a>(
        &mut self,
        auth: &Authorizer,
        watches: impl Iterator<Item = (i64, &'a KeySelector)>,
    ) -> Result<(), Ended> {
        let now = auth::now_ms();
        let expired = self.identity.expires_ms().is_some_and(|e| now >= e);
        let (identity, user, checked) = (&self.identity, &self.user, self.checked);
        let outcome = auth
            .read(|a| {
                if !expired && checked == Some(a.revision()) {
                    return Ok(a.revision());
                }
                Authorizer::still_valid(identity, a, now).map_err(Ended::Identity)?;
                for (id, selector) in watches {
                    if !a.allows(user, PermType::Read, selector) {
                        let context = format!(" (watch {id} ended: its user may no longer read it)");
                        return Err(Ended::Watch(
                            id,
                            auth::permission_denied(user, PermType::Read, selector, &context),
                        ));
                    }
                }
                Ok(a.revision())
            })
            .map_err(Ended::Identity)?;
        self.checked = Some(outcome?);
        Ok(())
    }
}
