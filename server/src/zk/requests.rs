//! Decoding ZooKeeper requests into log ops (paths, create modes, ACLs) and encoding replies:
//! the pure parts of request handling, shared by the single-op, multi and read handlers.

use conclave_proto::zookeeper::{op, Code};

use super::codec::{open_acl, Acl, CodecError, Reader, Writer};
use super::paths::{is_reserved, reserved_node, validate};
use crate::error::Error;
use crate::log_entry::zk::{ZkAcl, ZkId, ZkOp, MAX_TTL_MS};
use crate::state_machine::response::CommandError;
use crate::state_machine::zk_result::{ZStat, ZkOpResult};
use crate::state_machine::znodes::{key_of, perm, permits};
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

/// What a reader sees of a znode: data (`None`: null), stat, children.
pub(super) type NodeView = (Option<Vec<u8>>, ZStat, Vec<String>);

/// A znode's data, stat and children as a reader sees them (reserved nodes included), or
/// NOAUTH when `ids` may not read it (`None`: no ACL check).
pub(super) fn node_view(sm: &StateMachine, path: &str, ids: Option<&[ZkId]>) -> Option<Result<NodeView, Code>> {
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
pub(super) fn acl_of(sm: &StateMachine, path: &str) -> Vec<ZkAcl> {
    sm.znodes().meta(path).map(|m| m.acl.clone()).filter(|a| !a.is_empty()).unwrap_or_else(|| vec![open()])
}

pub(super) fn open() -> ZkAcl {
    let a = open_acl();
    ZkAcl { perms: a.perms, scheme: a.scheme, id: a.id }
}

/// Resolves a request's ACL like ZooKeeper: `auth` entries become the connection's digest
/// identities; `world` must be `anyone`; schemes other than world, digest, ip, auth are refused.
///
/// # Errors
/// INVALIDACL for an empty list, an unknown scheme, or `auth` without a digest identity.
pub(super) fn resolve_acls(acls: Vec<Acl>, ids: &[ZkId]) -> Result<Vec<ZkAcl>, Code> {
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

pub(super) fn body(f: impl FnOnce(&mut Writer)) -> Result<Vec<u8>, Code> {
    let mut w = Writer::default();
    f(&mut w);
    Ok(w.into_inner())
}

/// The `ZkOp` of a create record (create, create2, createContainer, createTTL).
pub(super) fn create_op(opcode: i32, r: &mut Reader<'_>, ids: &[ZkId]) -> Result<ZkOp, Fail> {
    let path = r.string()?;
    let data = r.buffer()?.map(<[u8]>::to_vec);
    let acls = r.acls()?;
    let flags = r.int()?;
    let ttl = if opcode == op::CREATE_TTL { r.long()? } else { -1 };
    let acl = resolve_acls(acls, ids)?;
    // ZooKeeper's `EphemeralType.validateTTL`: a TTL mode needs a TTL in 1..=MAX_TTL_MS, any
    // other mode must come without one.
    let ttl_mode = matches!(flags, 5 | 6);
    if ttl_mode && !(1..=MAX_TTL_MS as i64).contains(&ttl) || !ttl_mode && ttl >= 0 {
        return Err(Code::BadArguments.into());
    }
    let (ephemeral, sequential, container) = match (opcode, flags) {
        (op::CREATE_CONTAINER, 4) => (false, false, true),
        (op::CREATE_CONTAINER, _) | (_, 4) => return Err(Code::BadArguments.into()),
        (_, 0) => (false, false, false),
        (_, 1) => (true, false, false),
        (_, 2 | 6) => (false, true, false),
        (_, 3) => (true, true, false),
        (_, 5) => (false, false, false),
        _ => return Err(Code::BadArguments.into()),
    };
    validate(&path, sequential)?;
    if is_reserved(&path) || path == "/" {
        return Err(
            if reserved_node(&path).is_some() || path == "/" { Code::NodeExists } else { Code::BadArguments }.into()
        );
    }
    if ttl_mode {
        return Ok(ZkOp::CreateTtl { path, data, sequential, acl, ttl_ms: ttl as u64 });
    }
    Ok(ZkOp::Create { path, data, ephemeral, sequential, container, acl })
}

/// A path a write may change (not the root, not reserved).
pub(super) fn writable(path: &str) -> Result<(), Code> {
    validate(path, false)?;
    if path == "/" || is_reserved(path) {
        return Err(Code::BadArguments);
    }
    Ok(())
}

/// The `ZkOp` of a delete, setData or check record.
pub(super) fn other_op(opcode: i32, r: &mut Reader<'_>) -> Result<ZkOp, Fail> {
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
        ZkOp::Owner { .. } => {}
        ZkOp::Delete { path, .. }
        | ZkOp::SetData { path, .. }
        | ZkOp::Create { path, .. }
        | ZkOp::CreateTtl { path, .. }
        | ZkOp::SetAcl { path, .. } => writable(path)?,
    }
    Ok(op)
}

/// One write result as its reply body (for `opcode`), or its error code.
pub(super) fn result_body(opcode: i32, result: &ZkOpResult, w: &mut Writer) -> Result<(), Code> {
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

pub(super) fn code_of(v: i32) -> Code {
    Code::from_value(v).unwrap_or(Code::SystemError)
}

/// The body of a getData / exists / getChildren / getChildren2 reply.
pub(super) fn read_body(
    opcode: i32,
    data: &Option<Vec<u8>>,
    stat: &ZStat,
    children: &[String],
) -> Result<Vec<u8>, Code> {
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
