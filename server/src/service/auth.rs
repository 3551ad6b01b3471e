//! The `Auth` service: authenticate (user + password → token), and user / role administration
//! (root only under `--auth`; open to anyone without it, so a cluster can be prepared before
//! members restart with `--auth`). Passwords are hashed here, before proposing.

use conclave_proto::v1 as pb;
use conclave_proto::v1::auth_server::Auth;
use tonic::{Request, Response, Status};

use super::Api;
use crate::auth::password;
use crate::error::{Error, Result};
use crate::log_entry::auth::{AuthCommand, PermType, Permission};
use crate::state_machine::auth::ROOT;

/// Longest user or role name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest password, in bytes.
const MAX_PASSWORD_BYTES: usize = 1024;

fn name(what: &str, n: &str) -> Result<String> {
    if n.is_empty() || n.len() > MAX_NAME_BYTES || n.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} name {n:?} must be 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(n.to_owned())
}

fn password_of(p: &str) -> Result<String> {
    if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidArgument(format!("the password must be 1 to {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(p.to_owned())
}

fn perm_type(t: i32) -> Result<PermType> {
    match pb::PermissionType::try_from(t) {
        Ok(pb::PermissionType::Read) => Ok(PermType::Read),
        Ok(pb::PermissionType::Write) => Ok(PermType::Write),
        Ok(pb::PermissionType::Readwrite) => Ok(PermType::ReadWrite),
        Err(_) => Err(Error::InvalidArgument(format!("permission type {t} is not READ, WRITE or READWRITE"))),
    }
}

fn key_of(key: &[u8], prefix: bool) -> Result<Vec<u8>> {
    if key.is_empty() && !prefix {
        return Err(Error::InvalidArgument("a permission's key must not be empty (an empty prefix: every key)".into()));
    }
    if key.len() > crate::limits::MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge { size: key.len(), limit: crate::limits::MAX_KEY_BYTES });
    }
    Ok(key.to_vec())
}

impl Api {
    /// Checks root (under `--auth`), proposes `command`, answers with the header.
    async fn admin<T>(&self, req: &Request<T>, command: AuthCommand) -> Result<Response<pb::AuthAdminResponse>> {
        self.root(req, "user and role administration").await?;
        self.auth.propose(command).await?;
        Ok(Response::new(pb::AuthAdminResponse { header: Some(self.header(self.applied_revision())) }))
    }
}

#[tonic::async_trait]
impl Auth for Api {
    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        let (token, ttl) = self.auth.authenticate(&name("user", &r.name)?, &r.password).await?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: Some(self.header(self.applied_revision())),
            token,
            ttl_ms: ttl.as_millis() as u64,
        }))
    }

    async fn user_add(&self, req: Request<pb::UserAddRequest>) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let (n, p) = (name("user", &req.get_ref().name)?, password_of(&req.get_ref().password)?);
        self.root(&req, "user and role administration").await?;
        let password = password::hash_off_runtime(p).await?;
        Ok(self.admin(&req, AuthCommand::UserAdd { name: n, password }).await?)
    }

    async fn user_delete(
        &self,
        req: Request<pb::UserDeleteRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let n = name("user", &req.get_ref().name)?;
        if n == ROOT {
            return Err(
                Error::InvalidArgument("the root user cannot be deleted (change its password instead)".into()).into()
            );
        }
        Ok(self.admin(&req, AuthCommand::UserDelete { name: n }).await?)
    }

    async fn user_change_password(
        &self,
        req: Request<pb::UserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let (n, p) = (name("user", &req.get_ref().name)?, password_of(&req.get_ref().password)?);
        self.root(&req, "user and role administration").await?;
        let password = password::hash_off_runtime(p).await?;
        Ok(self.admin(&req, AuthCommand::UserChangePassword { name: n, password }).await?)
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::UserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let (user, role) = (name("user", &req.get_ref().user)?, name("role", &req.get_ref().role)?);
        Ok(self.admin(&req, AuthCommand::UserGrantRole { user, role }).await?)
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::UserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let (user, role) = (name("user", &req.get_ref().user)?, name("role", &req.get_ref().role)?);
        Ok(self.admin(&req, AuthCommand::UserRevokeRole { user, role }).await?)
    }

    async fn user_list(&self, req: Request<pb::UserListRequest>) -> Result<Response<pb::UserListResponse>, Status> {
        self.root(&req, "user and role administration").await?;
        let users = self.auth.read(|a| a.user_names())?;
        Ok(Response::new(pb::UserListResponse { header: Some(self.header(self.applied_revision())), users }))
    }

    async fn user_get(&self, req: Request<pb::UserGetRequest>) -> Result<Response<pb::UserGetResponse>, Status> {
        self.root(&req, "user and role administration").await?;
        let n = name("user", &req.get_ref().name)?;
        let roles = self
            .auth
            .read(|a| a.user(&n).map(|u| u.roles.iter().cloned().collect()))?
            .ok_or_else(|| not_found(format!("user {n:?} does not exist")))?;
        Ok(Response::new(pb::UserGetResponse { header: Some(self.header(self.applied_revision())), roles }))
    }

    async fn role_add(&self, req: Request<pb::RoleAddRequest>) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let n = name("role", &req.get_ref().name)?;
        Ok(self.admin(&req, AuthCommand::RoleAdd { name: n }).await?)
    }

    async fn role_delete(
        &self,
        req: Request<pb::RoleDeleteRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let n = name("role", &req.get_ref().name)?;
        Ok(self.admin(&req, AuthCommand::RoleDelete { name: n }).await?)
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::RoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let r = req.get_ref();
        let role = name("role", &r.role)?;
        let p = r.perm.as_ref().ok_or_else(|| Error::InvalidArgument("perm is required".into()))?;
        let perm = Permission { perm: perm_type(p.perm_type)?, key: key_of(&p.key, p.prefix)?, prefix: p.prefix };
        Ok(self.admin(&req, AuthCommand::RoleGrantPermission { role, perm }).await?)
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::RoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthAdminResponse>, Status> {
        let r = req.get_ref();
        let (role, key, prefix) = (name("role", &r.role)?, key_of(&r.key, r.prefix)?, r.prefix);
        Ok(self.admin(&req, AuthCommand::RoleRevokePermission { role, key, prefix }).await?)
    }

    async fn role_list(&self, req: Request<pb::RoleListRequest>) -> Result<Response<pb::RoleListResponse>, Status> {
        self.root(&req, "user and role administration").await?;
        let roles = self.auth.read(|a| a.role_names())?;
        Ok(Response::new(pb::RoleListResponse { header: Some(self.header(self.applied_revision())), roles }))
    }

    async fn role_get(&self, req: Request<pb::RoleGetRequest>) -> Result<Response<pb::RoleGetResponse>, Status> {
        self.root(&req, "user and role administration").await?;
        let n = name("role", &req.get_ref().name)?;
        let perms = self
            .auth
            .read(|a| a.role(&n).map(|r| r.perms.clone()))?
            .ok_or_else(|| not_found(format!("role {n:?} does not exist")))?;
        let perms = perms
            .into_iter()
            .map(|p| pb::Permission {
                perm_type: match p.perm {
                    PermType::Read => pb::PermissionType::Read,
                    PermType::Write => pb::PermissionType::Write,
                    PermType::ReadWrite => pb::PermissionType::Readwrite,
                } as i32,
                key: p.key,
                prefix: p.prefix,
            })
            .collect();
        Ok(Response::new(pb::RoleGetResponse { header: Some(self.header(self.applied_revision())), perms }))
    }
}

fn not_found(message: String) -> Error {
    Error::Command(crate::state_machine::response::CommandError::Auth {
        refusal: crate::state_machine::response::AuthRefusal::NotFound,
        message,
    })
}
