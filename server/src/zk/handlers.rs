//! One function per ZooKeeper opcode. Reads are served from this member's applied state at a
//! revision no older than what the connection has seen; writes are proposed as `Command::Zk`
//! and answered once applied here too. A failure is ZooKeeper's own error code in the reply
//! header (an unknown opcode is UNIMPLEMENTED, a malformed body MARSHALLINGERROR); only a
//! cluster that cannot serve the request (no leader, shutting down) closes the connection, which
//! the client sees as a connection loss and retries, possibly on another member.

use conclave_proto::zookeeper::{op, Code};

use super::codec::{Acl, Reader, Writer};
use super::config_node::{config_data, config_stat};
use super::conn::Conn;
use super::paths::{is_reserved, reserved_node, validate, CONFIG_NODE};
use super::requests::{
    acl_of, body, create_op, node_view, other_op, read_body, resolve_acls, result_body, writable, Answer, Fail,
};
use super::watches::{NewWatch, WatcherType};
use crate::error::Error;
use crate::log_entry::zk::{ZkId, ZkOp};
use crate::log_entry::{Command, Proposal};
use crate::node::Consistency;
use crate::state_machine::response::{CommandError, OutcomeBody};
use crate::state_machine::zk_result::ZkOpResult;
use crate::state_machine::znodes::{path_of, perm, permits, SUPER};
use crate::state_machine::StateMachine;

impl Conn {
    /// Handles one request frame; returns false when the connection must end after it.
    pub(super) async fn handle(&mut self, frame: &[u8]) -> std::io::Result<bool> {
        let mut r = Reader::new(frame);
        let (Ok(req_xid), Ok(opcode)) = (r.int(), r.int()) else {
            return Err(std::io::Error::other("malformed request header"));
        };
        if self.moved() {
            // ZooKeeper's rule: the client re-attached elsewhere; this connection is stale.
            self.reply(req_xid, self.last_zxid, Err(Code::SessionMoved)).await?;
            return Ok(false);
        }
        let mut watches = Vec::new();
        let answer = match self.dispatch(opcode, &mut r, &mut watches).await {
            Ok(a) => a,
            Err(Fail::Code(c)) => (self.last_zxid, Err(c)),
            Err(Fail::Fatal(e)) => return Err(std::io::Error::other(format!("cannot serve opcode {opcode}: {e}"))),
        };
        let (zxid, result) = answer;
        self.deliver(zxid).await?;
        for (kind, path) in watches {
            self.watches.add(kind, path);
        }
        self.reply(req_xid, zxid, result).await?;
        Ok(opcode != op::CLOSE_SESSION)
    }

    /// Writes the reply to request `xid` at `zxid` (its events must already be sent).
    async fn reply(&mut self, xid: i32, zxid: u64, result: Result<Vec<u8>, Code>) -> std::io::Result<()> {
        self.last_zxid = self.last_zxid.max(zxid);
        let mut w = Writer::default();
        let (err, body) = match result {
            Ok(body) => (0, body),
            Err(c) => (c.value(), Vec::new()),
        };
        w.reply_header(xid, self.last_zxid as i64, err);
        let mut record = w.into_inner();
        if record.len() + body.len() > self.ctx.settings.max_response_bytes {
            // The client would drop the connection on a frame over its jute.maxbuffer and
            // retry forever: answer MARSHALLINGERROR instead (see README, ZooKeeper section).
            tracing::info!(
                peer = %self.peer,
                "ZooKeeper reply of {} bytes exceeds --zk-max-response-bytes {}: answered MARSHALLINGERROR",
                record.len() + body.len(),
                self.ctx.settings.max_response_bytes
            );
            let mut w = Writer::default();
            w.reply_header(xid, self.last_zxid as i64, Code::MarshallingError.value());
            return self.send(&w.into_inner()).await;
        }
        record.extend_from_slice(&body);
        self.send(&record).await
    }

    /// Answers consecutive pipelined write frames (each [`super::codec::batchable`]) with one proposal
    /// (`Command::ZkBatch`), in order, each exactly as [`Conn::handle`] would. If any frame does
    /// not decode, they are handled one by one instead (same answers).
    pub(super) async fn handle_writes(&mut self, frames: &[Vec<u8>]) -> std::io::Result<()> {
        let ids = self.ids();
        let mut heads = Vec::with_capacity(frames.len());
        let mut requests = Vec::with_capacity(frames.len());
        for frame in frames {
            let mut r = Reader::new(frame);
            let (Ok(xid), Ok(opcode)) = (r.int(), r.int()) else { return self.handle_each(frames).await };
            let decoded = match opcode {
                op::DELETE | op::SET_DATA => other_op(opcode, &mut r),
                _ => create_op(opcode, &mut r, &ids),
            };
            let Ok(zk_op) = decoded else { return self.handle_each(frames).await };
            heads.push((xid, opcode));
            requests.push(vec![zk_op]);
        }
        let results = match self.write_batch(requests).await {
            Ok(results) => results,
            Err(Fail::Code(c)) => {
                heads.iter().map(|_| (self.last_zxid, vec![ZkOpResult::Error { code: c.value() }])).collect()
            }
            Err(Fail::Fatal(e)) => return Err(std::io::Error::other(format!("cannot serve pipelined writes: {e}"))),
        };
        for ((xid, opcode), (zxid, result)) in heads.into_iter().zip(results) {
            self.deliver(zxid).await?;
            let mut w = Writer::default();
            let answer = result.first().ok_or(Code::SystemError).and_then(|r| result_body(opcode, r, &mut w));
            self.reply(xid, zxid, answer.map(|()| w.into_inner())).await?;
        }
        Ok(())
    }

    async fn handle_each(&mut self, frames: &[Vec<u8>]) -> std::io::Result<()> {
        for frame in frames {
            self.handle(frame).await?;
        }
        Ok(())
    }

    async fn dispatch(
        &mut self,
        opcode: i32,
        r: &mut Reader<'_>,
        watches: &mut Vec<(NewWatch, String)>,
    ) -> Result<Answer, Fail> {
        match opcode {
            op::PING => Ok((self.ctx.node.subscribe_applied().borrow().revision, Ok(Vec::new()))),
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let zk_op = create_op(opcode, r, &self.ids())?;
                self.write_one(opcode, zk_op).await
            }
            op::DELETE | op::SET_DATA | op::CHECK => {
                let zk_op = other_op(opcode, r)?;
                self.write_one(opcode, zk_op).await
            }
            op::SET_ACL => {
                let path = r.string()?;
                let acl = resolve_acls(r.acls()?, &self.ids())?;
                let version = r.int()?;
                writable(&path)?;
                self.write_one(opcode, ZkOp::SetAcl { path, acl, version }).await
            }
            op::MULTI => self.multi(r).await,
            op::MULTI_READ => self.multi_read(r).await,
            op::EXISTS | op::GET_DATA | op::GET_CHILDREN | op::GET_CHILDREN2 => {
                let path = r.string()?;
                let watch = r.bool()?;
                validate(&path, false)?;
                // exists is not ACL-checked (as in ZooKeeper); the others need READ.
                let ids = (opcode != op::EXISTS).then(|| self.ids());
                let (zxid, mut view) = self.read(|sm| node_view(sm, &path, ids.as_deref())).await?;
                if path == CONFIG_NODE {
                    let (data, stat) = self.config_node()?;
                    if watch && opcode != op::GET_CHILDREN && opcode != op::GET_CHILDREN2 {
                        watches.push((NewWatch::Config(data.clone()), path.clone()));
                    }
                    view = Some(Ok((Some(data), stat, Vec::new())));
                }
                let view = match view {
                    Some(Err(code)) => return Ok((zxid, Err(code))),
                    Some(Ok(v)) => Some(v),
                    None => None,
                };
                let new_watch = if matches!(opcode, op::GET_CHILDREN | op::GET_CHILDREN2) {
                    NewWatch::Child
                } else {
                    NewWatch::Data
                };
                if watch && (view.is_some() || opcode == op::EXISTS) && !is_reserved(&path) {
                    watches.push((new_watch, path));
                }
                let Some((data, stat, children)) = view else { return Ok((zxid, Err(Code::NoNode))) };
                Ok((zxid, read_body(opcode, &data, &stat, &children)))
            }
            op::SYNC => {
                let path = r.string()?;
                let zxid = self.ctx.node.read(Consistency::Linearizable, |sm| Ok(sm.revision())).await?;
                Ok((
                    zxid,
                    body(|w| {
                        w.string(&path);
                    }),
                ))
            }
            op::GET_ACL => {
                let path = r.string()?;
                validate(&path, false)?;
                let ids = self.ids();
                let (zxid, found) = self
                    .read(|sm| {
                        let acl = acl_of(sm, &path);
                        let allowed = permits(&acl, &ids, perm::READ | perm::ADMIN);
                        sm.zk_stat(&path).or_else(|| reserved_node(&path).map(|n| n.1)).map(|st| (acl, st, allowed))
                    })
                    .await?;
                let Some((acl, stat, allowed)) = found else { return Ok((zxid, Err(Code::NoNode))) };
                if !allowed {
                    return Ok((zxid, Err(Code::NoAuth)));
                }
                let acl: Vec<Acl> =
                    acl.into_iter().map(|a| Acl { perms: a.perms, scheme: a.scheme, id: a.id }).collect();
                Ok((
                    zxid,
                    body(|w| {
                        w.acls(&acl).stat(&stat);
                    }),
                ))
            }
            op::SET_WATCHES | op::SET_WATCHES2 => self.set_watches(opcode, r).await,
            op::ADD_WATCH => {
                let path = r.string()?;
                let mode = r.int()?;
                validate(&path, false)?;
                let kind = match mode {
                    0 => NewWatch::Persistent,
                    1 => NewWatch::Recursive,
                    _ => return Err(Code::BadArguments.into()),
                };
                watches.push((kind, path));
                // The Java client reads an ErrorResponse { int err } here.
                Ok((
                    self.last_zxid,
                    body(|w| {
                        w.int(0);
                    }),
                ))
            }
            op::REMOVE_WATCHES | op::CHECK_WATCHES => {
                let path = r.string()?;
                let kind = WatcherType::from_wire(r.int()?).ok_or(Code::BadArguments)?;
                let found = self.watches.remove(&path, kind, opcode == op::CHECK_WATCHES);
                Ok((self.last_zxid, if found { Ok(Vec::new()) } else { Err(Code::NoWatcher) }))
            }
            op::AUTH => {
                let _type = r.int()?;
                let scheme = r.string()?;
                let auth = String::from_utf8_lossy(r.buffer()?.unwrap_or_default()).to_string();
                if scheme != "digest" {
                    tracing::info!(peer = %self.peer, "ZooKeeper auth scheme {scheme:?} refused (AUTHFAILED): only digest is offered");
                    return Err(Code::AuthFailed.into());
                }
                let id = super::digest::digest_id(&auth);
                if self.ctx.settings.super_digest.as_deref() == Some(id.as_str()) {
                    // ZooKeeper's DigestAuthenticationProvider: the super digest also adds
                    // `super:`, which every ACL check lets through.
                    self.auth.push((SUPER.to_string(), String::new()));
                }
                self.auth.push((scheme, id));
                Ok((self.last_zxid, Ok(Vec::new())))
            }
            op::WHO_AM_I => {
                let mut ids = vec![("ip".to_string(), self.peer.ip().to_string())];
                ids.extend(self.auth.iter().cloned());
                Ok((
                    self.last_zxid,
                    body(|w| {
                        w.int(ids.len() as i32);
                        for (scheme, user) in &ids {
                            w.string(scheme).string(user);
                        }
                    }),
                ))
            }
            op::GET_EPHEMERALS => {
                let prefix = r.string()?;
                let session = self.session_id;
                let (zxid, paths) = self
                    .read(|sm| {
                        let keys = sm.sessions().get(session).map(|s| s.keys.clone()).unwrap_or_default();
                        keys.iter()
                            .filter_map(|k| path_of(k))
                            .filter(|p| p.starts_with(&prefix))
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .await?;
                Ok((
                    zxid,
                    body(|w| {
                        w.strings(&paths);
                    }),
                ))
            }
            op::GET_ALL_CHILDREN_NUMBER => {
                let path = r.string()?;
                validate(&path, false)?;
                let (zxid, count) =
                    self.read(|sm| sm.zk_stat(&path).map(|_| sm.znodes().paths_under(&path).count())).await?;
                let Some(count) = count else { return Ok((zxid, Err(Code::NoNode))) };
                Ok((
                    zxid,
                    body(|w| {
                        w.int(count as i32);
                    }),
                ))
            }
            op::CLOSE_SESSION => {
                let proposal =
                    Proposal { request_id: None, command: Command::SessionClose { session_id: self.session_id } };
                let zxid = match self.ctx.node.propose(proposal, 16).await {
                    Ok(outcome) => outcome.revision,
                    Err(Error::Command(CommandError::SessionNotFound { .. })) => self.last_zxid,
                    Err(e) => return Err(Fail::Fatal(e)),
                };
                Ok((zxid, Ok(Vec::new())))
            }
            op::SASL => {
                tracing::info!(
                    peer = %self.peer,
                    session = format_args!("{:#x}", self.session_id),
                    "ZooKeeper SASL authentication refused (AUTHFAILED): not offered; use digest auth (addauth digest user:password)"
                );
                Err(Code::AuthFailed.into())
            }
            op::RECONFIG => Err(Code::ReconfigDisabled.into()),
            _ => Err(Code::Unimplemented.into()),
        }
    }

    /// `/zookeeper/config`'s data and stat now (`config_node`).
    pub(super) fn config_node(&self) -> Result<(Vec<u8>, crate::state_machine::zk_result::ZStat), Fail> {
        let node = &self.ctx.node;
        let version = node.membership_index();
        let data = node.view(|sm| config_data(&node.members(), sm.znodes().zk_addrs(), version))?;
        let stat = config_stat(&data, version);
        Ok((data, stat))
    }

    /// Whether the session was re-attached on another connection since this one attached.
    pub(super) fn moved(&self) -> bool {
        self.ctx.node.view(|sm| sm.znodes().owner(self.session_id)).is_ok_and(|owner| owner != self.owner)
    }

    /// The connection's identities: its address, and the digests it added.
    pub(super) fn ids(&self) -> Vec<ZkId> {
        let mut ids = vec![ZkId { scheme: "ip".into(), id: self.peer.ip().to_string() }];
        ids.extend(self.auth.iter().map(|(scheme, id)| ZkId { scheme: scheme.clone(), id: id.clone() }));
        ids
    }

    /// Runs `f` on this member's state once it has applied what the connection has seen.
    pub(super) async fn read<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> Result<(u64, T), Fail> {
        let c = Consistency::Serializable { min_revision: self.last_zxid };
        Ok(self.ctx.node.read(c, |sm| Ok((sm.revision(), f(sm)))).await?)
    }

    /// Proposes `ops` for this session and waits until this member applied them.
    /// A stale connection (the session re-attached elsewhere) gets SESSIONMOVED from apply.
    pub(super) async fn write(&self, ops: Vec<ZkOp>) -> Result<(u64, Vec<ZkOpResult>), Fail> {
        let ops = self.owned(ops);
        let size = ops_size(&ops);
        let command = Command::Zk { session: self.session_id, ids: self.ids(), ops };
        let (revision, body) = self.propose_here(command, size).await?;
        match body {
            OutcomeBody::Zk { results } => Ok((revision, unowned(results)?)),
            other => Err(Fail::Fatal(Error::Internal(format!("unexpected outcome {other:?}")))),
        }
    }

    /// `ops` behind this connection's ownership check ([`ZkOp::Owner`]).
    fn owned(&self, ops: Vec<ZkOp>) -> Vec<ZkOp> {
        let mut all = Vec::with_capacity(ops.len() + 1);
        all.push(ZkOp::Owner { token: self.owner });
        all.extend(ops);
        all
    }

    /// Proposes pipelined requests in one entry; returns each one's revision and results.
    async fn write_batch(&self, requests: Vec<Vec<ZkOp>>) -> Result<Vec<(u64, Vec<ZkOpResult>)>, Fail> {
        let requests: Vec<Vec<ZkOp>> = requests.into_iter().map(|ops| self.owned(ops)).collect();
        let size = requests.iter().map(|ops| ops_size(ops)).sum();
        let command = Command::ZkBatch { session: self.session_id, ids: self.ids(), requests };
        match self.propose_here(command, size).await?.1 {
            OutcomeBody::ZkBatch { results } => Ok(results
                .into_iter()
                .map(|(rev, r)| {
                    (rev, unowned(r).unwrap_or_else(|_| vec![ZkOpResult::Error { code: Code::SessionMoved.value() }]))
                })
                .collect()),
            other => Err(Fail::Fatal(Error::Internal(format!("unexpected outcome {other:?}")))),
        }
    }

    /// Proposes `command` and waits until this member applied it (later reads see it here).
    async fn propose_here(&self, command: Command, size: usize) -> Result<(u64, OutcomeBody), Fail> {
        crate::service::validate::request_size(size)?;
        let outcome = self.ctx.node.propose(Proposal { request_id: None, command }, size).await?;
        let applied_here = Consistency::Serializable { min_revision: outcome.revision };
        self.ctx.node.read(applied_here, |_| Ok(())).await?;
        Ok((outcome.revision, outcome.body))
    }

    pub(super) async fn write_one(&self, opcode: i32, zk_op: ZkOp) -> Result<Answer, Fail> {
        let (zxid, results) = self.write(vec![zk_op]).await?;
        let mut w = Writer::default();
        let result = results.first().ok_or(Code::SystemError).and_then(|r| result_body(opcode, r, &mut w));
        Ok((zxid, result.map(|()| w.into_inner())))
    }
}

/// A request's results without its ownership check's; SESSIONMOVED when that check failed.
fn unowned(mut results: Vec<ZkOpResult>) -> Result<Vec<ZkOpResult>, Fail> {
    if results.first() == Some(&ZkOpResult::Error { code: Code::SessionMoved.value() }) {
        return Err(Fail::Code(Code::SessionMoved));
    }
    if !results.is_empty() {
        results.remove(0);
    }
    Ok(results)
}

/// The encoded size of a request's ops, for the proposal size limit.
fn ops_size(ops: &[ZkOp]) -> usize {
    32 + ops
        .iter()
        .map(|o| match o {
            ZkOp::Create { path, data, .. } | ZkOp::SetData { path, data, .. } | ZkOp::CreateTtl { path, data, .. } => {
                path.len() + data.as_ref().map_or(0, Vec::len) + 16
            }
            ZkOp::Delete { path, .. } | ZkOp::Check { path, .. } => path.len() + 16,
            ZkOp::Owner { .. } => 16,
            ZkOp::SetAcl { path, acl, .. } => path.len() + acl.iter().map(|a| a.id.len() + 16).sum::<usize>(),
        })
        .sum::<usize>()
}
