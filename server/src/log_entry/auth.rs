//! Authentication and authorization changes as they are stored in the log (`Command::Auth`).
//! The service layer validates names, hashes passwords (salted PBKDF2, `crate::auth::password`)
//! and draws the token secret before proposing; apply (`state_machine::auth`) only stores.

use serde::{Deserialize, Serialize};

/// A salted password hash, computed before proposing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordHash {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2-HMAC-SHA256 output.
    pub hash: Vec<u8>,
}

/// What a permission allows.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermType {
    /// Ranges, watches, counter and lease reads, compares.
    Read,
    /// Puts, deletes, counter changes, lease acquire / release.
    Write,
    /// Both.
    ReadWrite,
}

impl PermType {
    /// Whether a permission of this type covers `needed` (`Read` or `Write`).
    pub fn covers(self, needed: PermType) -> bool {
        self == PermType::ReadWrite || self == needed
    }

    /// `read`, `write` or `readwrite`.
    pub fn name(self) -> &'static str {
        match self {
            PermType::Read => "read",
            PermType::Write => "write",
            PermType::ReadWrite => "readwrite",
        }
    }
}

/// A permission on one key, or on every key starting with `key` (`prefix`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// What it allows.
    pub perm: PermType,
    /// The key, or the prefix.
    pub key: Vec<u8>,
    /// `key` is a prefix.
    pub prefix: bool,
}

/// One change of the authentication state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum AuthCommand {
    /// Sets the token-signing secret; applies only while unset (the first proposal wins).
    SetSecret {
        /// Random bytes drawn by the proposing member.
        secret: [u8; 32],
    },
    /// Creates `root` with every permission, only while no `root` user exists (start-up with
    /// `--root-password-file`; a racing second proposal changes nothing).
    BootstrapRoot {
        /// Its password hash.
        password: PasswordHash,
    },
    /// Adds a user (fails if it exists).
    UserAdd {
        /// Name.
        name: String,
        /// Password hash.
        password: PasswordHash,
    },
    /// Deletes a user (its tokens stop working).
    UserDelete {
        /// Name.
        name: String,
    },
    /// Changes a user's password (its tokens stop working).
    UserChangePassword {
        /// Name.
        name: String,
        /// New password hash.
        password: PasswordHash,
    },
    /// Grants a role (which must exist) to a user.
    UserGrantRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// Revokes a role from a user (its tokens stop working).
    UserRevokeRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// Adds a role (fails if it exists).
    RoleAdd {
        /// Name.
        name: String,
    },
    /// Deletes a role and revokes it from every user.
    RoleDelete {
        /// Name.
        name: String,
    },
    /// Adds a permission to a role (replacing one on the same key / prefix).
    RoleGrantPermission {
        /// Role.
        role: String,
        /// Permission.
        perm: Permission,
    },
    /// Removes the permission on `key` (`prefix`) from a role.
    RoleRevokePermission {
        /// Role.
        role: String,
        /// Key or prefix.
        key: Vec<u8>,
        /// Whether it is the prefix permission.
        prefix: bool,
    },
}
