//! One function per ZooKeeper opcode. Reads are served from this member's applied state at a
//! revision no older than what the connection has seen; writes are proposed as `Command::Zk`
//! and answered once applied here too. A failure is ZooKeeper's own error code in the reply
//! header (an unknown opcode is UNIMPLEMENTED, a malformed body MARSHALLINGERROR); only a
//! cluster that cannot serve the request (no leader, shutting down) closes the connection, which
//! the client sees as a connection loss and retries, possibly on another member.

use conclave_proto::zookeeper::{op, Code};

use super::codec::{open_acl, Acl, CodecError, Reader, Writer};
use super::conn::Conn;
use super::paths::{is_reserved, reserved_node, validate};
use super::watches::WatcherType;
use crate::error::Error;
use crate::log_entry::zk::{ZkAcl, ZkId, ZkOp};
use crate::log_entry::{Command, Proposal};
use crate::node::Consistency;
use crate::state_machine::response::{CommandError, OutcomeBody};
use crate::state_machine::znodes::{failed_results, key_of, path_of, perm, permits, ZStat, ZkOpResult};
use crate::state_machine::StateMachine;

/// Why a request got no ordinary answer.
pub(super) enum Fail {
    /// Answer with this code at the connection's last zxid.
    Code(Code),
    /// The cluster cannot serve it now: close the connection.
    Fatal(Error),
}

impl From<CodecError> for Fail {
    fn from(_: CodecError) -> Self {
        Fail::Code(Code::MarshallingError)
    }
}

impl From<Code> for Fail {
    fn from(c: Code) -> Self {
        Fail::Code(c)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e {
            Error::Command(CommandError::SessionNotFound { .. }) => Fail::Code(Code::SessionExpired),
            Error::RequestTooLarge { .. } | Error::InvalidArgument(_) | Error::LimitExceeded(_) => {
                Fail::Code(Code::BadArguments)
            }
            other => Fail::Fatal(other),
        }
    }
}

/// A reply: the zxid it reflects and its body or error code.
pub(super) type Answer = (u64, Result<Vec<u8>, Code>);

/// A watch to add once the events before the reply are sent.
#[derive(Clone, Copy)]
enum NewWatch {
    Data,
    Child,
    Persistent,
    Recursive,
}

/// What a reader sees of a znode: data (`None`: null), stat, children.
type NodeView = (Option<Vec<u8>>, ZStat, Vec<String>);

/// A znode's data, stat and children as a reader sees them (reserved nodes included), or
/// NOAUTH when `ids` may not read it (`None`: no ACL check).
fn node_view(sm: &StateMachine, path: &str, ids: Option<&[ZkId]>) -> Option<Result<NodeView, Code>> {
    if let Some((children, stat)) = reserved_node(path) {
        return Some(Ok((Some(Vec::new()), stat, children)));
    }
    if ids.is_some_and(|ids| !permits(&acl_of(sm, path), ids, perm::READ)) {
        return sm.zk_stat(path).map(|_| Err(Code::NoAuth));
    }
    let mut stat = sm.zk_stat(path)?;
    let null = sm.znodes().meta(path).is_some_and(|m| m.null_data);
    let data = sm.kv().get(&key_of(path)).map(|kv| kv.value).filter(|_| !null);
    let mut children: Vec<String> =
        sm.znodes().meta(path).map(|m| m.children.iter().cloned().collect()).unwrap_or_default();
    if path == "/" {
        children.insert(0, "zookeeper".into());
        stat.num_children += 1;
    }
    Some(Ok((data, stat, children)))
}

/// A znode's stored ACL (`world:anyone` ALL when none was stored: the root).
fn acl_of(sm: &StateMachine, path: &str) -> Vec<ZkAcl> {
    sm.znodes().meta(path).map(|m| m.acl.clone()).filter(|a| !a.is_empty()).unwrap_or_else(|| vec![open()])
}

fn open() -> ZkAcl {
    let a = open_acl();
    ZkAcl { perms: a.perms, scheme: a.scheme, id: a.id }
}

/// Resolves a request's ACL like ZooKeeper: `auth` entries become the connection's digest
/// identities; `world` must be `anyone`; schemes other than world, digest, ip, auth are refused.
///
/// # Errors
/// INVALIDACL for an empty list, an unknown scheme, or `auth` without a digest identity.
fn resolve_acls(acls: Vec<Acl>, ids: &[ZkId]) -> Result<Vec<ZkAcl>, Code> {
    let mut out = Vec::new();
    for a in acls {
        match a.scheme.as_str() {
            "world" if a.id == "anyone" => out.push(ZkAcl { perms: a.perms, scheme: a.scheme, id: a.id }),
            "digest" | "ip" => out.push(ZkAcl { perms: a.perms, scheme: a.scheme, id: a.id }),
            "auth" => {
                let before = out.len();
                for i in ids.iter().filter(|i| i.scheme == "digest") {
                    out.push(ZkAcl { perms: a.perms, scheme: i.scheme.clone(), id: i.id.clone() });
                }
                if out.len() == before {
                    return Err(Code::InvalidAcl);
                }
            }
            _ => return Err(Code::InvalidAcl),
        }
    }
    if out.is_empty() {
        return Err(Code::InvalidAcl);
    }
    // ZooKeeper (since 3.5) drops duplicate entries.
    let mut unique = Vec::with_capacity(out.len());
    for a in out {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    Ok(unique)
}

fn body(f: impl FnOnce(&mut Writer)) -> Result<Vec<u8>, Code> {
    let mut w = Writer::default();
    f(&mut w);
    Ok(w.into_inner())
}

/// The `ZkOp` of a create record (create, create2, createContainer, createTTL).
fn create_op(opcode: i32, r: &mut Reader<'_>, ids: &[ZkId]) -> Result<ZkOp, Fail> {
    let path = r.string()?;
    let data = r.buffer()?.map(<[u8]>::to_vec);
    let acls = r.acls()?;
    let flags = r.int()?;
    if opcode == op::CREATE_TTL {
        let _ttl = r.long()?;
        return Err(Code::Unimplemented.into());
    }
    let acl = resolve_acls(acls, ids)?;
    let (ephemeral, sequential, container) = match (opcode, flags) {
        (op::CREATE_CONTAINER, 4) => (false, false, true),
        (op::CREATE_CONTAINER, _) | (_, 4) => return Err(Code::BadArguments.into()),
        (_, 0) => (false, false, false),
        (_, 1) => (true, false, false),
        (_, 2) => (false, true, false),
        (_, 3) => (true, true, false),
        (_, 5 | 6) => return Err(Code::Unimplemented.into()),
        _ => return Err(Code::BadArguments.into()),
    };
    validate(&path, sequential)?;
    if is_reserved(&path) || path == "/" {
        return Err(
            if reserved_node(&path).is_some() || path == "/" { Code::NodeExists } else { Code::BadArguments }.into()
        );
    }
    Ok(ZkOp::Create { path, data, ephemeral, sequential, container, acl })
}

/// A path a write may change (not the root, not reserved).
fn writable(path: &str) -> Result<(), Code> {
    validate(path, false)?;
    if path == "/" || is_reserved(path) {
        return Err(Code::BadArguments);
    }
    Ok(())
}

/// The `ZkOp` of a delete, setData or check record.
fn other_op(opcode: i32, r: &mut Reader<'_>) -> Result<ZkOp, Fail> {
    let path = r.string()?;
    let op = match opcode {
        op::DELETE => ZkOp::Delete { version: r.int()?, path },
        op::SET_DATA => ZkOp::SetData { data: r.buffer()?.map(<[u8]>::to_vec), version: r.int()?, path },
        op::CHECK => ZkOp::Check { version: r.int()?, path },
        _ => return Err(Code::BadArguments.into()),
    };
    // SET_ACL is read by `set_acl_op` (it needs the connection's identities).
    match &op {
        ZkOp::Check { path, .. } => validate(path, false)?,
        ZkOp::Delete { path, .. }
        | ZkOp::SetData { path, .. }
        | ZkOp::Create { path, .. }
        | ZkOp::SetAcl { path, .. } => writable(path)?,
    }
    Ok(op)
}

/// One write result as its reply body (for `opcode`), or its error code.
fn result_body(opcode: i32, result: &ZkOpResult, w: &mut Writer) -> Result<(), Code> {
    match result {
        ZkOpResult::Create { path, stat } => {
            w.string(path);
            if opcode != op::CREATE {
                w.stat(stat);
            }
        }
        ZkOpResult::SetData { stat } | ZkOpResult::SetAcl { stat } => {
            w.stat(stat);
        }
        ZkOpResult::Delete | ZkOpResult::Check => {}
        ZkOpResult::Error { code } => return Err(code_of(*code)),
    }
    Ok(())
}

fn code_of(v: i32) -> Code {
    Code::from_value(v).unwrap_or(Code::SystemError)
}

impl Conn {
    /// Handles one request frame; returns false when the connection must end after it.
    pub(super) async fn handle(&mut self, frame: &[u8]) -> std::io::Result<bool> {
        let mut r = Reader::new(frame);
        let (Ok(req_xid), Ok(opcode)) = (r.int(), r.int()) else {
            return Err(std::io::Error::other("malformed request header"));
        };
        let mut watches = Vec::new();
        let answer = match self.dispatch(opcode, &mut r, &mut watches).await {
            Ok(a) => a,
            Err(Fail::Code(c)) => (self.last_zxid, Err(c)),
            Err(Fail::Fatal(e)) => return Err(std::io::Error::other(format!("cannot serve opcode {opcode}: {e}"))),
        };
        let (zxid, result) = answer;
        self.deliver(zxid).await?;
        for (kind, path) in watches {
            let set = match kind {
                NewWatch::Data => &mut self.watches.data,
                NewWatch::Child => &mut self.watches.child,
                NewWatch::Persistent => &mut self.watches.persistent,
                NewWatch::Recursive => &mut self.watches.recursive,
            };
            set.insert(path);
        }
        self.last_zxid = self.last_zxid.max(zxid);
        let mut w = Writer::default();
        let (err, body) = match result {
            Ok(body) => (0, body),
            Err(c) => (c.value(), Vec::new()),
        };
        w.reply_header(req_xid, self.last_zxid as i64, err);
        let mut record = w.into_inner();
        record.extend_from_slice(&body);
        self.send(&record).await?;
        Ok(opcode != op::CLOSE_SESSION)
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
                let (zxid, view) = self.read(|sm| node_view(sm, &path, ids.as_deref())).await?;
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
                    return Err(Code::AuthFailed.into());
                }
                self.auth.push((scheme, super::digest::digest_id(&auth)));
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
            op::RECONFIG => Err(Code::ReconfigDisabled.into()),
            _ => Err(Code::Unimplemented.into()),
        }
    }

    /// The connection's identities: its address, and the digests it added.
    fn ids(&self) -> Vec<ZkId> {
        let mut ids = vec![ZkId { scheme: "ip".into(), id: self.peer.ip().to_string() }];
        ids.extend(self.auth.iter().map(|(scheme, id)| ZkId { scheme: scheme.clone(), id: id.clone() }));
        ids
    }

    /// Runs `f` on this member's state once it has applied what the connection has seen.
    async fn read<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> Result<(u64, T), Fail> {
        let c = Consistency::Serializable { min_revision: self.last_zxid };
        Ok(self.ctx.node.read(c, |sm| Ok((sm.revision(), f(sm)))).await?)
    }

    /// Proposes `ops` for this session and waits until this member applied them.
    async fn write(&self, ops: Vec<ZkOp>) -> Result<(u64, Vec<ZkOpResult>), Fail> {
        let size = 32
            + ops
                .iter()
                .map(|o| match o {
                    ZkOp::Create { path, data, .. } | ZkOp::SetData { path, data, .. } => {
                        path.len() + data.as_ref().map_or(0, Vec::len) + 16
                    }
                    ZkOp::Delete { path, .. } | ZkOp::Check { path, .. } => path.len() + 16,
                    ZkOp::SetAcl { path, acl, .. } => path.len() + acl.iter().map(|a| a.id.len() + 16).sum::<usize>(),
                })
                .sum::<usize>();
        crate::service::validate::request_size(size)?;
        let command = Command::Zk { session: self.session_id, ids: self.ids(), ops };
        let proposal = Proposal { request_id: None, command };
        let outcome = self.ctx.node.propose(proposal, size).await?;
        let applied_here = Consistency::Serializable { min_revision: outcome.revision };
        self.ctx.node.read(applied_here, |_| Ok(())).await?;
        match outcome.body {
            OutcomeBody::Zk { results } => Ok((outcome.revision, results)),
            other => Err(Fail::Fatal(Error::Internal(format!("unexpected outcome {other:?}")))),
        }
    }

    async fn write_one(&self, opcode: i32, zk_op: ZkOp) -> Result<Answer, Fail> {
        let (zxid, results) = self.write(vec![zk_op]).await?;
        let mut w = Writer::default();
        let result = results.first().ok_or(Code::SystemError).and_then(|r| result_body(opcode, r, &mut w));
        Ok((zxid, result.map(|()| w.into_inner())))
    }

    async fn multi(&self, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        let mut ops = Vec::new();
        let mut opcodes = Vec::new();
        let mut invalid = None;
        loop {
            let (opcode, done, _err) = (r.int()?, r.bool()?, r.int()?);
            if done {
                break;
            }
            let parsed = match opcode {
                op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => create_op(opcode, r, &self.ids()),
                op::DELETE | op::SET_DATA | op::CHECK => other_op(opcode, r),
                _ => return Err(Code::Unimplemented.into()),
            };
            match parsed {
                Ok(zk_op) => ops.push(zk_op),
                Err(Fail::Code(c)) => {
                    invalid.get_or_insert((opcodes.len(), c));
                    ops.push(ZkOp::Check { path: "/".into(), version: -1 });
                }
                Err(fatal) => return Err(fatal),
            }
            opcodes.push(opcode);
        }
        let (zxid, results) = match invalid {
            Some((idx, code)) => (self.last_zxid, failed_results(ops.len(), idx, code)),
            None if ops.is_empty() => (self.last_zxid, Vec::new()),
            None => self.write(ops).await?,
        };
        let mut w = Writer::default();
        for (opcode, result) in opcodes.iter().zip(&results) {
            match result {
                ZkOpResult::Error { code } => {
                    w.int(-1).bool(false).int(*code).int(*code);
                }
                ok => {
                    w.int(*opcode).bool(false).int(0);
                    let _ = result_body(*opcode, ok, &mut w);
                }
            }
        }
        w.int(-1).bool(true).int(-1);
        Ok((zxid, Ok(w.into_inner())))
    }

    async fn multi_read(&self, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        let mut reads = Vec::new();
        loop {
            let (opcode, done, _err) = (r.int()?, r.bool()?, r.int()?);
            if done {
                break;
            }
            if !matches!(opcode, op::GET_DATA | op::GET_CHILDREN) {
                return Err(Code::BadArguments.into());
            }
            let path = r.string()?;
            let _watch = r.bool()?;
            reads.push((opcode, path));
        }
        let ids = self.ids();
        let (zxid, views) = self
            .read(|sm| {
                reads
                    .iter()
                    .map(|(_, p)| validate(p, false).ok().and_then(|()| node_view(sm, p, Some(&ids))))
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut w = Writer::default();
        for ((opcode, _), view) in reads.iter().zip(views) {
            let answer = view.unwrap_or(Err(Code::NoNode));
            match answer.and_then(|(data, stat, children)| read_body(*opcode, &data, &stat, &children)) {
                Ok(b) => {
                    w.int(*opcode).bool(false).int(0).raw(&b);
                }
                Err(code) => {
                    w.int(-1).bool(false).int(code.value()).int(code.value());
                }
            }
        }
        w.int(-1).bool(true).int(-1);
        Ok((zxid, Ok(w.into_inner())))
    }

    /// Re-registers a reconnecting client's watches, first firing what changed since
    /// `relativeZxid` (ZooKeeper's `DataTree.setWatches` rules), so no change is missed.
    async fn set_watches(&mut self, opcode: i32, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        use conclave_proto::zookeeper::event;
        let relative = r.long()?.max(0) as u64;
        let (data, exist, child) = (r.strings()?, r.strings()?, r.strings()?);
        let (persistent, recursive) =
            if opcode == op::SET_WATCHES2 { (r.strings()?, r.strings()?) } else { (Vec::new(), Vec::new()) };
        let (zxid, (events, regs)) = self
            .read(|sm| {
                let mut events = Vec::new();
                let mut regs = Vec::new();
                for p in &data {
                    match sm.zk_stat(p) {
                        None => events.push((event::NODE_DELETED, p.clone())),
                        Some(s) if s.mzxid > relative => events.push((event::NODE_DATA_CHANGED, p.clone())),
                        Some(_) => regs.push((NewWatch::Data, p.clone())),
                    }
                }
                for p in &exist {
                    match sm.zk_stat(p) {
                        Some(_) => events.push((event::NODE_CREATED, p.clone())),
                        None => regs.push((NewWatch::Data, p.clone())),
                    }
                }
                for p in &child {
                    match sm.zk_stat(p) {
                        None => events.push((event::NODE_DELETED, p.clone())),
                        Some(s) if s.pzxid > relative => events.push((event::NODE_CHILDREN_CHANGED, p.clone())),
                        Some(_) => regs.push((NewWatch::Child, p.clone())),
                    }
                }
                regs.extend(persistent.iter().map(|p| (NewWatch::Persistent, p.clone())));
                regs.extend(recursive.iter().map(|p| (NewWatch::Recursive, p.clone())));
                (events, regs)
            })
            .await?;
        self.deliver(zxid).await.map_err(|e| Fail::Fatal(Error::Internal(e.to_string())))?;
        for (kind, path) in events {
            self.send_event(zxid, kind, &path).await.map_err(|e| Fail::Fatal(Error::Internal(e.to_string())))?;
        }
        for (kind, path) in regs {
            match kind {
                NewWatch::Data => self.watches.data.insert(path),
                NewWatch::Child => self.watches.child.insert(path),
                NewWatch::Persistent => self.watches.persistent.insert(path),
                NewWatch::Recursive => self.watches.recursive.insert(path),
            };
        }
        Ok((zxid, Ok(Vec::new())))
    }
}

/// The body of a getData / exists / getChildren / getChildren2 reply.
fn read_body(opcode: i32, data: &Option<Vec<u8>>, stat: &ZStat, children: &[String]) -> Result<Vec<u8>, Code> {
    body(|w| {
        match opcode {
            op::GET_DATA => match data {
                Some(d) => w.buffer(d),
                None => w.int(-1),
            }
            .stat(stat),
            op::GET_CHILDREN => w.strings(children),
            op::GET_CHILDREN2 => w.strings(children).stat(stat),
            _ => w.stat(stat),
        };
    })
}
