//! The connect handshake: a ZooKeeper session is a Conclave session (same replicated table,
//! same leader-driven expiry). Timeout negotiated into [2, 20] ticks (and never below the
//! Conclave minimum, which outlives a leader change); password derived from the session id
//! and the cluster's replicated secret, so any member can check it; re-attach after a
//! reconnect to any member; an unknown, expired or wrongly authenticated session is answered
//! with timeout 0 (the client reports it expired), never silently replaced; a client that has
//! seen a newer zxid than this member applied is refused (the connection is closed, the
//! client tries another member), as ZooKeeper does.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::codec::{ConnectRequest, ConnectResponse};
use super::ZkContext;
use crate::error::{Error, Result};
use crate::log_entry::{Command, Proposal};
use crate::node::Consistency;
use crate::state_machine::response::OutcomeBody;

/// How the handshake ended.
#[derive(Debug)]
pub enum Connected {
    /// Attached to this session (new or re-attached) as owner token `.1` (see
    /// `Command::ZkAttach`: 0 for a new session).
    Attached(ConnectResponse, u64),
    /// Answer with this (timeout 0: expired / bad password) and close.
    Expired(ConnectResponse),
    /// Close without an answer (the client is ahead of this member, or no quorum).
    Refused(String),
}

/// The 16-byte password of `session_id` under `secret` (SipHash-2-4 keyed by the secret).
pub fn password(secret: [u64; 2], session_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for lane in 0u8..2 {
        #[allow(deprecated)] // SipHash-2-4 is specified, so its output is stable across builds.
        let mut h = std::hash::SipHasher::new_with_keys(secret[0], secret[1]);
        h.write_u64(session_id);
        h.write_u8(lane);
        out.extend_from_slice(&h.finish().to_be_bytes());
    }
    out
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// The cluster's secret; proposes a random one (first proposal wins) if none is set yet.
async fn secret(ctx: &ZkContext) -> Result<[u64; 2]> {
    if let Some(s) = ctx.node.view(|sm| sm.znodes().secret())? {
        return Ok(s);
    }
    let proposal = Proposal { request_id: None, command: Command::ZkSecret { secret: [random_u64(), random_u64()] } };
    match ctx.node.propose(proposal, 32).await?.body {
        OutcomeBody::ZkSecret { secret } => Ok(secret),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

fn expired() -> Connected {
    Connected::Expired(ConnectResponse {
        protocol_version: 0,
        timeout_ms: 0,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: false,
    })
}

/// Runs the handshake for `req`.
pub async fn connect(ctx: &ZkContext, req: &ConnectRequest) -> Connected {
    match try_connect(ctx, req).await {
        Ok(c) => c,
        Err(e) => Connected::Refused(e.to_string()),
    }
}

async fn try_connect(ctx: &ZkContext, req: &ConnectRequest) -> Result<Connected> {
    let seen = req.last_zxid_seen.max(0) as u64;
    let wait = Consistency::Serializable { min_revision: seen };
    if tokio::time::timeout(Duration::from_secs(1), ctx.node.read(wait, |_| Ok(()))).await.map_or(true, |r| r.is_err())
    {
        let applied = ctx.node.subscribe_applied().borrow().revision;
        return Ok(Connected::Refused(format!(
            "the client has seen zxid {seen:#x}, this member has applied {applied:#x}: the client must try another member"
        )));
    }
    let secret = secret(ctx).await?;
    if req.session_id == 0 {
        let ttl_ms = ctx.settings.negotiate(req.timeout_ms);
        let proposal = Proposal { request_id: None, command: Command::SessionOpen { ttl_ms } };
        let session_id = match ctx.node.propose(proposal, 16).await?.body {
            OutcomeBody::SessionOpened { session_id } => session_id,
            other => return Err(Error::Internal(format!("unexpected outcome {other:?}"))),
        };
        return Ok(Connected::Attached(
            ConnectResponse {
                protocol_version: 0,
                timeout_ms: ttl_ms as i32,
                session_id: session_id as i64,
                passwd: password(secret, session_id),
                read_only: false,
            },
            0,
        ));
    }
    let id = req.session_id as u64;
    if req.passwd != password(secret, id) {
        return Ok(expired());
    }
    // A member that has not applied the session's creation yet must not call it expired:
    // look again after a read barrier (everything committed before now applied here).
    let mut ttl = ctx.node.view(|sm| sm.sessions().get(id).map(|s| s.ttl_ms))?;
    if ttl.is_none() {
        ttl = ctx.node.read(Consistency::Linearizable, |sm| Ok(sm.sessions().get(id).map(|s| s.ttl_ms))).await?;
    }
    let Some(ttl_ms) = ttl else { return Ok(expired()) };
    let alive = ctx.node.session_times(&[id], true).await?.first().is_some_and(|t| t.alive);
    if !alive {
        return Ok(expired());
    }
    let owner = take_ownership(ctx, id).await?;
    Ok(Connected::Attached(
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: ttl_ms as i32,
            session_id: id as i64,
            passwd: req.passwd.clone(),
            read_only: false,
        },
        owner,
    ))
}

/// Makes this connection the owner of re-attached session `id` (a random non-zero token,
/// `Command::ZkAttach`), and waits until this member applied it, so the connection never
/// takes itself for moved. Any older connection to the session then answers SESSIONMOVED.
async fn take_ownership(ctx: &ZkContext, id: u64) -> Result<u64> {
    let owner = random_u64() | 1;
    let proposal = Proposal { request_id: None, command: Command::ZkAttach { session_id: id, owner } };
    ctx.node.propose(proposal, 32).await?;
    let mut applied = ctx.node.subscribe_applied();
    let owned = async {
        while ctx.node.view(|sm| sm.znodes().owner(id))? != owner {
            if applied.changed().await.is_err() {
                return Err(Error::Internal("shutting down".into()));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(5), owned).await {
        Ok(r) => r.map(|()| owner),
        Err(_) => Err(Error::Internal(format!("session {id:#x}: the re-attach was not applied here within 5 s"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_deterministic_per_secret_and_session() {
        let p = password([1, 2], 7);
        assert_eq!(p.len(), 16);
        assert_eq!(p, password([1, 2], 7), "every member derives the same password");
        assert_ne!(p, password([1, 2], 8));
        assert_ne!(p, password([1, 3], 7));
    }
}
