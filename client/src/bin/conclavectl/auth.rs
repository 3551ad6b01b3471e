//! `user add|delete|passwd|grant-role|revoke-role|list|get` and
//! `role add|delete|grant-permission|revoke-permission|list|get` (etcdctl's names), for servers
//! started with `--auth` (root only). Text output: one confirmation or one name per line;
//! json: `{"ok":true}`, `{"users":[..]}`, `{"roles":[..]}`, `{"perms":[{"perm","key","prefix"}]}`.

use std::io::Write;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use conclave_client::proto::PermissionType;
use serde::Serialize;

use crate::output::{json_line, lossy, Format};
use crate::Globals;

/// User subcommands.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds a user; the password is NAME:PASSWORD's part, or --new-password.
    Add {
        /// NAME or NAME:PASSWORD. (Not named `user`: that is the global --user's id.)
        #[arg(value_name = "NAME[:PASSWORD]")]
        name: String,
        /// The new user's password (instead of NAME:PASSWORD).
        #[arg(long, value_name = "PASSWORD")]
        new_password: Option<String>,
    },
    /// Deletes a user (its tokens stop working).
    Delete {
        /// User name.
        name: String,
    },
    /// Changes a user's password (its tokens stop working).
    Passwd {
        /// User name.
        name: String,
        /// The new password.
        #[arg(long, value_name = "PASSWORD")]
        new_password: String,
    },
    /// Grants a role to a user.
    GrantRole {
        /// User name.
        name: String,
        /// Role name.
        role: String,
    },
    /// Revokes a role from a user (its tokens stop working).
    RevokeRole {
        /// User name.
        name: String,
        /// Role name.
        role: String,
    },
    /// Lists users.
    List,
    /// Prints a user's roles.
    Get {
        /// User name.
        name: String,
    },
}

/// Permission kinds on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Perm {
    /// Ranges, watches, counter and lease reads.
    Read,
    /// Puts, deletes, counter changes, lease acquire and release.
    Write,
    /// Both.
    Readwrite,
}

/// Role subcommands.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Adds a role.
    Add {
        /// Role name.
        name: String,
    },
    /// Deletes a role (revoked from every user).
    Delete {
        /// Role name.
        name: String,
    },
    /// Grants a role a permission on KEY, or on every key starting with KEY (--prefix).
    /// Counter and lease names are keys for permissions.
    GrantPermission {
        /// Role name.
        name: String,
        /// read, write or readwrite.
        #[arg(value_enum)]
        perm: Perm,
        /// The key (or prefix).
        key: String,
        /// KEY is a prefix.
        #[arg(long)]
        prefix: bool,
    },
    /// Removes a role's permission on KEY (--prefix: the prefix permission).
    RevokePermission {
        /// Role name.
        name: String,
        /// The key (or prefix).
        key: String,
        /// KEY is a prefix.
        #[arg(long)]
        prefix: bool,
    },
    /// Lists roles.
    List,
    /// Prints a role's permissions.
    Get {
        /// Role name.
        name: String,
    },
}

#[derive(Serialize)]
struct Ok {
    ok: bool,
}

#[derive(Serialize)]
struct Names<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
}

#[derive(Serialize)]
struct PermJson {
    perm: &'static str,
    key: String,
    prefix: bool,
}

fn done(g: &Globals, out: &mut dyn Write, text: String) -> Result<()> {
    match g.format {
        Format::Json => json_line(out, &Ok { ok: true }),
        Format::Text => Ok(writeln!(out, "{text}")?),
    }
}

fn names(g: &Globals, out: &mut dyn Write, list: &[String], users: bool) -> Result<()> {
    match g.format {
        Format::Json if users => json_line(out, &Names { users: Some(list), roles: None }),
        Format::Json => json_line(out, &Names { users: None, roles: Some(list) }),
        Format::Text => {
            for n in list {
                writeln!(out, "{n}")?;
            }
            Ok(())
        }
    }
}

/// Runs a `user` subcommand.
///
/// # Errors
/// Server refusals (not root, no such user or role) and transport failures.
pub async fn user(g: &Globals, out: &mut dyn Write, cmd: UserCommand) -> Result<()> {
    let client = g.client().await?;
    match cmd {
        UserCommand::Add { name, new_password } => {
            let (name, password) = match (name.split_once(':'), new_password) {
                (Some((n, p)), None) => (n.to_owned(), p.to_owned()),
                (None, Some(p)) => (name, p),
                (Some(_), Some(_)) => bail!("give the password either as NAME:PASSWORD or with --new-password"),
                (None, None) => bail!("user add needs a password: NAME:PASSWORD or --new-password PASSWORD"),
            };
            client.user_add(&name, &password).await?;
            done(g, out, format!("User {name} created"))
        }
        UserCommand::Delete { name } => {
            client.user_delete(&name).await?;
            done(g, out, format!("User {name} deleted"))
        }
        UserCommand::Passwd { name, new_password } => {
            client.user_change_password(&name, &new_password).await?;
            done(g, out, format!("Password of user {name} changed"))
        }
        UserCommand::GrantRole { name, role } => {
            client.user_grant_role(&name, &role).await?;
            done(g, out, format!("Role {role} granted to user {name}"))
        }
        UserCommand::RevokeRole { name, role } => {
            client.user_revoke_role(&name, &role).await?;
            done(g, out, format!("Role {role} revoked from user {name}"))
        }
        UserCommand::List => names(g, out, &client.user_list().await?, true),
        UserCommand::Get { name } => names(g, out, &client.user_get(&name).await?, false),
    }
}

fn perm_name(t: i32) -> &'static str {
    match PermissionType::try_from(t) {
        Ok(PermissionType::Read) => "read",
        Ok(PermissionType::Write) => "write",
        Ok(PermissionType::Readwrite) => "readwrite",
        Err(_) => "unknown",
    }
}

/// Runs a `role` subcommand.
///
/// # Errors
/// Server refusals (not root, no such role or permission) and transport failures.
pub async fn role(g: &Globals, out: &mut dyn Write, cmd: RoleCommand) -> Result<()> {
    let client = g.client().await?;
    match cmd {
        RoleCommand::Add { name } => {
            client.role_add(&name).await?;
            done(g, out, format!("Role {name} created"))
        }
        RoleCommand::Delete { name } => {
            client.role_delete(&name).await?;
            done(g, out, format!("Role {name} deleted"))
        }
        RoleCommand::GrantPermission { name, perm, key, prefix } => {
            let t = match perm {
                Perm::Read => PermissionType::Read,
                Perm::Write => PermissionType::Write,
                Perm::Readwrite => PermissionType::Readwrite,
            };
            client.role_grant_permission(&name, t, key.as_bytes(), prefix).await?;
            done(g, out, format!("Role {name} updated"))
        }
        RoleCommand::RevokePermission { name, key, prefix } => {
            client.role_revoke_permission(&name, key.as_bytes(), prefix).await?;
            done(g, out, format!("Permission of key {key} is revoked from role {name}"))
        }
        RoleCommand::List => names(g, out, &client.role_list().await?, false),
        RoleCommand::Get { name } => {
            let perms = client.role_get(&name).await?;
            let perms: Vec<PermJson> = perms
                .iter()
                .map(|p| PermJson { perm: perm_name(p.perm_type), key: lossy(&p.key), prefix: p.prefix })
                .collect();
            match g.format {
                Format::Json => json_line(out, &serde_json::json!({ "perms": perms })),
                Format::Text => {
                    for p in &perms {
                        let scope = if p.prefix { " (prefix)" } else { "" };
                        writeln!(out, "{}\t{}{scope}", p.perm, p.key)?;
                    }
                    Ok(())
                }
            }
        }
    }
}
