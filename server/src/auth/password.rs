//! Password hashing: PBKDF2-HMAC-SHA256 with a random 16-byte salt, computed by the member that
//! receives the request, before proposing (apply only stores the hash). Slow on purpose: call
//! off the runtime (`tokio::task::spawn_blocking`).

use std::num::NonZeroU32;

use ring::pbkdf2;

use crate::log_entry::auth::PasswordHash;

/// PBKDF2 iterations for new hashes (stored with each hash, so it can change).
pub const ITERATIONS: u32 = 100_000;

/// Hashes `password` with a fresh random salt.
///
/// # Errors
/// `Internal` when no random salt can be drawn.
pub fn hash(password: &str) -> crate::error::Result<PasswordHash> {
    let salt = super::random_bytes::<16>()?.to_vec();
    let mut out = vec![0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut out);
    Ok(PasswordHash { iterations: ITERATIONS, salt, hash: out })
}

/// Whether `password` matches `stored` (constant-time comparison).
pub fn verify(password: &str, stored: &PasswordHash) -> bool {
    let Some(iterations) = NonZeroU32::new(stored.iterations) else { return false };
    pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &stored.salt, password.as_bytes(), &stored.hash).is_ok()
}

/// [`hash`] on the blocking pool (it takes tens of milliseconds).
///
/// # Errors
/// As [`hash`].
pub async fn hash_off_runtime(password: String) -> crate::error::Result<PasswordHash> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| crate::error::Error::Internal(format!("password hashing: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify_only_the_password() {
        let (a, b) = (hash("secret").expect("hash"), hash("secret").expect("hash"));
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
        assert!(verify("secret", &a));
        assert!(!verify("secret!", &a));
        assert!(!verify("secret", &PasswordHash { iterations: 0, ..a }));
    }
}
