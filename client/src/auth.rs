//! Authentication (servers started with `--auth`): the credentials a client logs in with, the
//! token it attaches to every request, and user / role administration (root only).
//!
//! The token is fetched on the first refusal for want of one, and fetched again whenever a
//! member answers `TOKEN_EXPIRED` (or `AUTH_REQUIRED` / `TOKEN_INVALID`), then the request is
//! sent again once: callers never see an expired token. Decided from the reason in the error
//! contract, never from the message.

use conclave_proto::v1 as pb;
use conclave_proto::v1::auth_client::AuthClient;
use tonic::Status;

use crate::grpc_channel::GrpcChannel;
pub use crate::token::{Credentials, TokenCell};
use crate::{Client, Result};

/// Authenticates on `channel` and stores the token in `cell`, unless another task replaced
/// `stale` meanwhile (see [`TokenCell::refresh`]).
///
/// # Errors
/// The server's refusal (`AUTH_FAILED`: wrong credentials) or a transport failure.
pub(crate) async fn refresh_token(
    cell: &TokenCell,
    channel: GrpcChannel,
    stale: Option<String>,
) -> std::result::Result<(), Status> {
    cell.refresh(stale, |req| async move { Ok(AuthClient::new(channel).authenticate(req).await?.into_inner().token) })
        .await
}

fn perm_type(t: pb::PermissionType) -> i32 {
    t as i32
}

impl Client {
    /// Adds a user (root only under `--auth`).
    ///
    /// # Errors
    /// `Status(AlreadyExists)` when it exists; `Status(PermissionDenied)` for a non-root caller.
    pub async fn user_add(&self, name: &str, password: &str) -> Result<()> {
        let req = pb::UserAddRequest { name: name.into(), password: password.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).user_add(r).await }).await?;
        Ok(())
    }

    /// Deletes a user; its tokens stop working.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn user_delete(&self, name: &str) -> Result<()> {
        let req = pb::UserDeleteRequest { name: name.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).user_delete(r).await }).await?;
        Ok(())
    }

    /// Changes a user's password; its tokens stop working.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn user_change_password(&self, name: &str, password: &str) -> Result<()> {
        let req = pb::UserChangePasswordRequest { name: name.into(), password: password.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).user_change_password(r).await }).await?;
        Ok(())
    }

    /// Grants `role` to `user`.
    ///
    /// # Errors
    /// `Status(NotFound)` when either does not exist.
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<()> {
        let req = pb::UserGrantRoleRequest { user: user.into(), role: role.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).user_grant_role(r).await }).await?;
        Ok(())
    }

    /// Revokes `role` from `user`; the user's tokens stop working.
    ///
    /// # Errors
    /// `Status(NotFound)` when the user does not hold it.
    pub async fn user_revoke_role(&self, user: &str, role: &str) -> Result<()> {
        let req = pb::UserRevokeRoleRequest { user: user.into(), role: role.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).user_revoke_role(r).await }).await?;
        Ok(())
    }

    /// User names.
    ///
    /// # Errors
    /// `Status(PermissionDenied)` for a non-root caller.
    pub async fn user_list(&self) -> Result<Vec<String>> {
        let resp = self
            .conn
            .unary(false, pb::UserListRequest {}, |ch, r| async move { AuthClient::new(ch).user_list(r).await })
            .await?;
        Ok(resp.users)
    }

    /// A user's roles.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn user_get(&self, name: &str) -> Result<Vec<String>> {
        let req = pb::UserGetRequest { name: name.into() };
        let resp = self.conn.unary(false, req, |ch, r| async move { AuthClient::new(ch).user_get(r).await }).await?;
        Ok(resp.roles)
    }

    /// Adds a role.
    ///
    /// # Errors
    /// `Status(AlreadyExists)` when it exists.
    pub async fn role_add(&self, name: &str) -> Result<()> {
        let req = pb::RoleAddRequest { name: name.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).role_add(r).await }).await?;
        Ok(())
    }

    /// Deletes a role (revoking it from every user).
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn role_delete(&self, name: &str) -> Result<()> {
        let req = pb::RoleDeleteRequest { name: name.into() };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).role_delete(r).await }).await?;
        Ok(())
    }

    /// Grants `role` a permission on `key` (every key starting with it when `prefix`).
    ///
    /// # Errors
    /// `Status(NotFound)` when the role does not exist.
    pub async fn role_grant_permission(
        &self,
        role: &str,
        perm: pb::PermissionType,
        key: &[u8],
        prefix: bool,
    ) -> Result<()> {
        let perm = pb::Permission { perm_type: perm_type(perm), key: key.to_vec(), prefix };
        let req = pb::RoleGrantPermissionRequest { role: role.into(), perm: Some(perm) };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).role_grant_permission(r).await }).await?;
        Ok(())
    }

    /// Removes `role`'s permission on `key` (`prefix`).
    ///
    /// # Errors
    /// `Status(NotFound)` when the role or the permission does not exist.
    pub async fn role_revoke_permission(&self, role: &str, key: &[u8], prefix: bool) -> Result<()> {
        let req = pb::RoleRevokePermissionRequest { role: role.into(), key: key.to_vec(), prefix };
        self.write(None, ZERO, req, |ch, r| async move { AuthClient::new(ch).role_revoke_permission(r).await }).await?;
        Ok(())
    }

    /// Role names.
    ///
    /// # Errors
    /// `Status(PermissionDenied)` for a non-root caller.
    pub async fn role_list(&self) -> Result<Vec<String>> {
        let resp = self
            .conn
            .unary(false, pb::RoleListRequest {}, |ch, r| async move { AuthClient::new(ch).role_list(r).await })
            .await?;
        Ok(resp.roles)
    }

    /// A role's permissions.
    ///
    /// # Errors
    /// `Status(NotFound)` when it does not exist.
    pub async fn role_get(&self, name: &str) -> Result<Vec<pb::Permission>> {
        let req = pb::RoleGetRequest { name: name.into() };
        let resp = self.conn.unary(false, req, |ch, r| async move { AuthClient::new(ch).role_get(r).await }).await?;
        Ok(resp.perms)
    }
}

const ZERO: std::time::Duration = std::time::Duration::ZERO;
