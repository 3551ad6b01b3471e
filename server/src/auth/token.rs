//! Authentication tokens: `v1.<hex user>.<expiry ms>.<epoch>.<hex HMAC-SHA256>`, signed with the
//! cluster's replicated secret, so every member checks a token without a round trip. The epoch
//! is the user's credential epoch when it was issued (`state_machine::auth::User::epoch`).

use ring::hmac;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub user: String,
    /// Expiry, milliseconds since the Unix epoch (checked against the member's clock).
    pub expires_ms: u64,
    /// The user's credential epoch at issue.
    pub epoch: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this format.
    Malformed,
    /// Not signed with this cluster's secret.
    BadSignature,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// Signs `claims` with `secret`.
pub fn sign(claims: &Claims, secret: &[u8; 32]) -> String {
    let body = format!("v1.{}.{}.{}", hex(claims.user.as_bytes()), claims.expires_ms, claims.epoch);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body.as_bytes());
    format!("{body}.{}", hex(tag.as_ref()))
}

/// Checks the signature (constant time) and decodes the claims; expiry and epoch are the
/// caller's to check.
///
/// # Errors
/// [`TokenError::Malformed`] for anything not in the format, [`TokenError::BadSignature`] for a
/// token signed with another secret or altered.
pub fn verify(token: &str, secret: &[u8; 32]) -> Result<Claims, TokenError> {
    let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = unhex(tag).ok_or(TokenError::Malformed)?;
    let mut parts = body.split('.');
    let (Some("v1"), Some(user), Some(expires), Some(epoch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), body.as_bytes(), &tag)
        .map_err(|_| TokenError::BadSignature)?;
    let user = String::from_utf8(unhex(user).ok_or(TokenError::Malformed)?).map_err(|_| TokenError::Malformed)?;
    let expires_ms = expires.parse().map_err(|_| TokenError::Malformed)?;
    let epoch = epoch.parse().map_err(|_| TokenError::Malformed)?;
    Ok(Claims { user, expires_ms, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_any_change_is_refused() {
        let claims = Claims { user: "a.b:c/ü".into(), expires_ms: 1_700_000_000_000, epoch: 7 };
        let token = sign(&claims, &[3; 32]);
        assert_eq!(verify(&token, &[3; 32]), Ok(claims.clone()));
        assert_eq!(verify(&token, &[4; 32]), Err(TokenError::BadSignature), "another cluster's secret");
        let longer = sign(&Claims { expires_ms: claims.expires_ms + 1, ..claims.clone() }, &[3; 32]);
        let (forged_body, _) = longer.rsplit_once('.').expect("dot");
        let (_, tag) = token.rsplit_once('.').expect("dot");
        assert_eq!(verify(&format!("{forged_body}.{tag}"), &[3; 32]), Err(TokenError::BadSignature));
        for bad in ["", "v1", "v1.x.1.2.zz", "v2.61.1.2.00", "v1.61.1.2.3.00"] {
            assert!(verify(bad, &[3; 32]).is_err(), "{bad:?}");
        }
    }
}
