//! What the ZooKeeper-protocol workloads share: a session on the members' ZooKeeper ports
//! (`--zk-addr`, through the `zookeeper-client` crate, as a ZooKeeper application would
//! connect), znode names, and how ZooKeeper errors map to `fail` / `info`.
//!
//! Each session starts at its worker's home member and moves to the next one in the connect
//! string when that member fails, as ZooKeeper clients do; the client re-attaches the same
//! session there.

use std::time::Duration;

use serde_json::Value;
use zookeeper_client as zk;

use super::{Completion, Ctx};

/// How long one connect attempt (the handshake with some member) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A znode path for `name` under this run's prefix, flat (no parents to create): the prefix's
/// `/` become `-`, e.g. `/jepsen-1-zkreg-7`.
pub fn path(ctx: &Ctx, name: &str) -> String {
    format!("/{}{name}", ctx.prefix.replace('/', "-"))
}

/// The connect string starting at the worker's home member.
pub fn connect_string(ctx: &Ctx, home: usize) -> String {
    let n = ctx.zk_endpoints.len();
    (0..n).map(|i| ctx.zk_endpoints[(home + i) % n].clone()).collect::<Vec<_>>().join(",")
}

/// Opens a session with `timeout` (the server negotiates it; see [`zk::Client::session_timeout`]).
/// A `detached` session is not closed when the client is dropped: it expires on the server.
///
/// # Errors
/// When no member completes the handshake within [`CONNECT_TIMEOUT`] (outcome unknown: the
/// server may have created a session the client never learnt of, which then expires).
pub async fn connect(ctx: &Ctx, home: usize, timeout: Duration, detached: bool) -> Result<zk::Client, String> {
    let mut c = zk::Client::connector().with_session_timeout(timeout).with_connection_timeout(Duration::from_secs(1));
    if detached {
        c = c.with_detached();
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, c.connect(&connect_string(ctx, home))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session within {CONNECT_TIMEOUT:?}")),
    }
}

/// Re-attaches `session` (id + password) on any member: `Ok` when the server still knows it,
/// `Err(true)` when a member answered it expired, `Err(false)` when nobody answered.
pub async fn reattach(ctx: &Ctx, home: usize, session: zk::SessionInfo) -> Result<zk::Client, bool> {
    let c =
        zk::Client::connector().with_session(session).with_detached().with_connection_timeout(Duration::from_secs(1));
    match tokio::time::timeout(CONNECT_TIMEOUT, c.connect(&connect_string(ctx, home))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(zk::Error::SessionExpired)) => Err(true),
        _ => Err(false),
    }
}

/// Maps a ZooKeeper error to a completion. Only a server's answer that the request was refused
/// (`NoNode`, `BadVersion`, `NodeExists`, ...) means a write did not happen; anything else (a
/// lost connection, a time-out, the client's own "no response from connection", the session
/// moved or expired while the request was in flight) leaves it unknown: `info` for a write. A
/// read changes nothing, so a read that did not answer fails.
pub fn classify(err: &zk::Error, write: bool) -> Completion {
    use zk::Error as E;
    let refused = matches!(
        err,
        E::NoNode
            | E::NoAuth
            | E::BadVersion
            | E::NoChildrenForEphemerals
            | E::NodeExists
            | E::NotEmpty
            | E::InvalidAcl
            | E::BadArguments(_)
            | E::Unimplemented
            | E::NotReadOnly
            | E::QuotaExceeded
            | E::Throttled
            | E::ReconfigDisabled
    );
    if write && !refused {
        Completion::Info(format!("indeterminate: {err}"))
    } else {
        Completion::Fail(err.to_string(), Value::Null)
    }
}

/// Runs a ZooKeeper call with the worker's operation deadline (an overrun is `Timeout`).
pub async fn bounded<T>(
    ctx: &Ctx,
    op: impl std::future::Future<Output = Result<T, zk::Error>>,
) -> Result<T, zk::Error> {
    tokio::time::timeout(ctx.settings.op_timeout, op).await.unwrap_or(Err(zk::Error::Timeout))
}

/// The open ACL every znode of the workloads gets.
pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(c: &Completion) -> bool {
        matches!(c, Completion::Info(_))
    }

    #[test]
    fn only_a_refusal_makes_a_write_certainly_not_happen() {
        // Answers that never came, or that the client could not read: the write may have happened.
        for e in [
            zk::Error::ConnectionLoss,
            zk::Error::Timeout,
            zk::Error::SessionExpired,
            zk::Error::UnexpectedErrorCode(-999),
        ] {
            assert!(unknown(&classify(&e, true)), "{e}");
            assert!(matches!(classify(&e, false), Completion::Fail(..)), "a read changes nothing: {e}");
        }
        for e in [zk::Error::NoNode, zk::Error::BadVersion, zk::Error::NodeExists] {
            assert!(matches!(classify(&e, true), Completion::Fail(..)), "{e}");
        }
    }
}
