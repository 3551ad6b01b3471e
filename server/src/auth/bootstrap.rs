//! Creating `root` the first time (`--root-password-file`): every member started with the file
//! proposes `BootstrapRoot` (hashed here, before proposing) until it sees a root user; apply
//! creates root only while none exists, so racing members and restarts change nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{password, Authorizer};
use crate::log_entry::auth::AuthCommand;
use crate::state_machine::auth::ROOT;

/// Attempts before giving up (about five minutes at [`RETRY`]).
const ATTEMPTS: u32 = 600;
/// Pause between attempts while no leader accepts the proposal.
const RETRY: Duration = Duration::from_millis(500);

/// Reads the root password from `file` (one line; surrounding whitespace is trimmed).
///
/// # Errors
/// A message naming the file when it cannot be read or holds no password.
pub fn read_password_file(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--root-password-file {}: cannot read it: {e}", file.display()))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(format!("--root-password-file {}: the file is empty; put the root password in it", file.display()));
    }
    Ok(password.to_owned())
}

/// Creates root with `password` unless a root user exists; retries (bounded) while the cluster
/// has no leader. Logs the outcome.
pub async fn create_root(auth: Arc<Authorizer>, password: String) {
    let hash = match password::hash_off_runtime(password).await {
        Ok(h) => h,
        Err(e) => return tracing::error!("--root-password-file: {e}"),
    };
    for _ in 0..ATTEMPTS {
        if auth.read(|a| a.user(ROOT).is_some()).unwrap_or(false) {
            return tracing::info!("auth: the root user exists");
        }
        match auth.propose(AuthCommand::BootstrapRoot { password: hash.clone() }).await {
            Ok(_) => continue,
            Err(e) => tracing::debug!("auth: creating root: {e}; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
    tracing::error!("auth: could not create the root user in {:?}: no leader accepted it", RETRY * ATTEMPTS);
}
