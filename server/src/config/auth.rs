//! Authentication flags of `conclave serve` (see `crate::auth`), validated into [`AuthConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::AuthConfig;

/// Authentication flags.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Require an identity (a token from a user name + password) on every public request
    /// except Cluster.Status and health checks, and check the user's roles' key permissions.
    /// Off: anyone who reaches the client port may do anything (as without this flag before).
    /// The peer port is not affected (secure it with --peer-ca).
    #[arg(long, env = "CONCLAVE_AUTH")]
    pub auth: bool,
    /// Lifetime of authentication tokens, in seconds.
    #[arg(long, env = "CONCLAVE_AUTH_TOKEN_TTL", value_name = "SECONDS", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// File holding the `root` user's password, used only while the cluster has no root user:
    /// the member hashes it and creates root (the other members need not have the file). Give
    /// it on the first start; it may be removed afterwards.
    #[arg(long, env = "CONCLAVE_ROOT_PASSWORD_FILE", value_name = "FILE")]
    pub root_password_file: Option<PathBuf>,
}

impl AuthArgs {
    /// The typed settings.
    ///
    /// # Errors
    /// A zero --auth-token-ttl.
    pub fn validate(&self) -> Result<AuthConfig, String> {
        if self.auth_token_ttl == 0 {
            return Err("--auth-token-ttl must be at least 1 second".into());
        }
        Ok(AuthConfig {
            enabled: self.auth,
            token_ttl: Duration::from_secs(self.auth_token_ttl),
            root_password_file: self.root_password_file.clone(),
        })
    }
}
