//! The credentials a client logs in with and the token it attaches to every request, shared by
//! its channels ([`crate::grpc_channel`] attaches it; [`crate::auth`] fetches it).

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use conclave_proto::errors::{reason_of, Reason};
use conclave_proto::v1 as pb;
use tonic::Status;

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// The current token of a client's credentials, shared by its channels.
#[derive(Debug)]
pub struct TokenCell {
    credentials: Credentials,
    token: Mutex<Option<String>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl TokenCell {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Self { credentials, token: Mutex::new(None), refreshing: tokio::sync::Mutex::new(()) }
    }

    /// The token to attach, if any.
    pub(crate) fn current(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether `status` is a refusal a fresh token may cure.
    pub(crate) fn curable(status: &Status) -> bool {
        matches!(reason_of(status), Some(Reason::TokenExpired | Reason::AuthRequired | Reason::TokenInvalid))
    }

    /// Replaces the token with the one `authenticate` gets for these credentials, unless another
    /// task replaced `stale` meanwhile (one refresh at a time: callers that all saw the same
    /// stale token authenticate once).
    ///
    /// # Errors
    /// What `authenticate` fails with.
    pub(crate) async fn refresh<F, Fut>(&self, stale: Option<String>, authenticate: F) -> Result<(), Status>
    where
        F: FnOnce(pb::AuthenticateRequest) -> Fut,
        Fut: Future<Output = Result<String, Status>>,
    {
        let _one = self.refreshing.lock().await;
        if self.current() != stale {
            return Ok(());
        }
        let req = pb::AuthenticateRequest {
            name: self.credentials.user.clone(),
            password: self.credentials.password.clone(),
        };
        let token = authenticate(req).await?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
        Ok(())
    }
}
