//! ZooKeeper's namespace on the key space: the replicated part of the ZooKeeper front end.
//!
//! **Mapping (one, documented):** znode `/a/b` is the key `zk/a/b` (the bytes `zk` followed by
//! the path); its data is the key's value, and an ephemeral znode is a key bound to its session
//! (a Conclave session is a ZooKeeper session), so it goes when the session ends, like any
//! native ephemeral key. The root `/` is never stored as a key. `Stat` fields come from the key
//! (czxid = create revision, mzxid = mod revision, version = key version - 1, dataLength,
//! ephemeralOwner = session) and from [`Meta`] kept here per znode (ctime/mtime from the
//! batch's `leader_time_ms`, cversion, pzxid, children, container flag, TTL). zxid = revision.
//! `ephemeralOwner` is ZooKeeper's: the session of an ephemeral node, `0x8000000000000000` for
//! a container, `0xff00000000000000 | ttl` for a TTL node (ZooKeeper's `EphemeralType`).
//! The `zk` key prefix belongs to this front end: native writes under it are refused.
//!
//! Apply is pure: a request's ops are first checked against an overlay (nothing changes when
//! one fails: ZooKeeper's all-or-nothing multi), then applied at one revision. Empty
//! containers and expired TTL nodes are deleted by `Command::ZkReap`, decided by the leader
//! from its clock (`zk_reap`), like ZooKeeper's `ContainerManager`.

use std::collections::{BTreeMap, BTreeSet};

use conclave_proto::zookeeper::Code;
use serde::{Deserialize, Serialize};

use super::response::OutcomeBody;
use super::zk_result::{failed_results, ZStat, ZkOpResult};
use super::StateMachine;
use crate::log_entry::zk::{ZkAcl, ZkId, ZkOp};

/// Key prefix of every znode.
pub const KEY_PREFIX: &[u8] = b"zk";

/// The key holding znode `path`.
pub fn key_of(path: &str) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// The znode path a key holds, if it is a znode key.
pub fn path_of(key: &[u8]) -> Option<&str> {
    key.strip_prefix(KEY_PREFIX).filter(|p| p.starts_with(b"/")).and_then(|p| std::str::from_utf8(p).ok())
}

/// The parent of an absolute path (`None` for the root) and the last name.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    if path == "/" {
        return None;
    }
    Some((if i == 0 { "/" } else { &path[..i] }, &path[i + 1..]))
}

/// Per-znode bookkeeping that is not in the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Creation time (leader ms).
    pub ctime: u64,
    /// Last data change time (leader ms).
    pub mtime: u64,
    /// Number of child creations and deletions.
    pub cversion: i32,
    /// Revision of the last child creation or deletion (the creation revision before any).
    pub pzxid: u64,
    /// A container node.
    pub container: bool,
    /// ACL version.
    pub aversion: i32,
    /// The data was set as null (readers get null, not an empty buffer).
    pub null_data: bool,
    /// ACL (empty: `world:anyone` with every permission, the root's default).
    pub acl: Vec<ZkAcl>,
    /// Child names.
    pub children: BTreeSet<String>,
}

/// The znode table (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Znodes {
    pub(super) nodes: BTreeMap<String, Meta>,
    secret: Option<[u64; 2]>,
    /// TTL nodes: path -> TTL ms (snapshot format 4).
    pub(super) ttls: BTreeMap<String, u64>,
    /// Members' ZooKeeper addresses by node id, for `/zookeeper/config` (snapshot format 4).
    pub(super) zk_addrs: BTreeMap<u64, String>,
    /// The connection token owning each re-attached session (`Command::ZkAttach`); absent: the
    /// connection that opened it, token 0 (snapshot format 4).
    pub(super) owners: BTreeMap<u64, u64>,
}

/// `Stat.ephemeralOwner` of a container (ZooKeeper's `CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_OWNER: u64 = 1 << 63;

/// `Stat.ephemeralOwner` of a TTL node with `ttl_ms` (ZooKeeper's extended type TTL).
pub fn ttl_owner(ttl_ms: u64) -> u64 {
    0xff00_0000_0000_0000 | (ttl_ms & crate::log_entry::zk::MAX_TTL_MS)
}

/// Permission bits.
pub mod perm {
    /// getData, getChildren, check.
    pub const READ: i32 = 1;
    /// setData.
    pub const WRITE: i32 = 2;
    /// create (on the parent).
    pub const CREATE: i32 = 4;
    /// delete (on the parent).
    pub const DELETE: i32 = 8;
    /// setACL.
    pub const ADMIN: i32 = 16;
}

/// The identity scheme of ZooKeeper's super user (`--zk-super-digest`): passes every ACL.
pub const SUPER: &str = "super";

/// Whether `ids` hold permission `perm` under `acl` (empty: open to everyone). `ip` entries
/// match an address or an IPv4 `a.b.c.d/bits` range; other schemes match exactly; a `super`
/// identity holds every permission (ZooKeeper's super user).
pub fn permits(acl: &[ZkAcl], ids: &[ZkId], perm: i32) -> bool {
    acl.is_empty()
        || ids.iter().any(|i| i.scheme == SUPER)
        || acl.iter().any(|a| {
            a.perms & perm != 0
                && ((a.scheme == "world" && a.id == "anyone")
                    || ids
                        .iter()
                        .any(|i| i.scheme == a.scheme && (a.id == i.id || (a.scheme == "ip" && ip_in(&a.id, &i.id)))))
        })
}

fn ip_in(range: &str, ip: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, bits)) = range.split_once('/') else { return false };
    match (parse(net), parse(ip), bits.parse::<u32>()) {
        (Some(net), Some(ip), Ok(bits)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            net & mask == ip & mask
        }
        _ => false,
    }
}

/// What the dry run needs to know of a node.
#[derive(Clone, Debug)]
struct View {
    version: i32,
    aversion: i32,
    ephemeral: bool,
    children: i64,
    cversion: i32,
    acl: Vec<ZkAcl>,
}

impl Znodes {
    /// The cluster's session-password secret, once set.
    pub fn secret(&self) -> Option<[u64; 2]> {
        self.secret
    }

    /// A znode's bookkeeping (the root's always exists).
    pub fn meta(&self, path: &str) -> Option<&Meta> {
        self.nodes.get(path)
    }

    /// The token of the connection that owns `session` (0: the one that opened it).
    pub fn owner(&self, session: u64) -> u64 {
        self.owners.get(&session).copied().unwrap_or(0)
    }

    /// A TTL node's TTL, ms.
    pub fn ttl(&self, path: &str) -> Option<u64> {
        self.ttls.get(path).copied()
    }

    /// Members' ZooKeeper addresses by node id (registered with `Command::RegisterZkAddr`).
    pub fn zk_addrs(&self) -> &BTreeMap<u64, String> {
        &self.zk_addrs
    }

    /// Builds the table from its snapshot-format-3 parts (no TTL nodes, no addresses then).
    pub(super) fn from_v3(nodes: BTreeMap<String, Meta>, secret: Option<[u64; 2]>) -> Self {
        Self { nodes, secret, ..Self::default() }
    }

    /// Every path, in order (for getAllChildrenNumber and getEphemerals).
    pub fn paths_under<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        self.nodes.range(prefix.clone()..).take_while(move |(p, _)| p.starts_with(&prefix)).map(|(p, _)| p)
    }
}

impl StateMachine {
    /// The ZooKeeper namespace bookkeeping.
    pub fn znodes(&self) -> &Znodes {
        &self.znodes
    }

    /// A znode's stat now (the root included), `None` when it does not exist.
    pub fn zk_stat(&self, path: &str) -> Option<ZStat> {
        let kv = self.kv.get(&key_of(path));
        if kv.is_none() && path != "/" {
            return None;
        }
        // Borrowed, never cloned: a parent's meta holds every child name, and this runs for the
        // parent of every create and delete (a clone made each create O(children)).
        let default = Meta::default();
        let m = self.znodes.nodes.get(path).unwrap_or(&default);
        let session = kv.as_ref().map_or(0, |kv| kv.session);
        let owner = match self.znodes.ttls.get(path) {
            Some(ttl) => ttl_owner(*ttl),
            None if m.container => CONTAINER_OWNER,
            None => session,
        };
        Some(ZStat {
            czxid: kv.as_ref().map_or(0, |kv| kv.create_revision),
            mzxid: kv.as_ref().map_or(0, |kv| kv.mod_revision),
            ctime: m.ctime,
            mtime: m.mtime,
            version: kv.as_ref().map_or(0, |kv| (kv.version - 1) as i32),
            cversion: m.cversion,
            aversion: m.aversion,
            ephemeral_owner: owner,
            data_length: kv.as_ref().map_or(0, |kv| kv.value.len() as i32),
            num_children: m.children.len() as i32,
            pzxid: m.pzxid,
        })
    }

    /// Sets the secret unless set.
    pub(super) fn apply_zk_secret(&mut self, secret: [u64; 2]) -> OutcomeBody {
        let secret = *self.znodes.secret.get_or_insert(secret);
        OutcomeBody::ZkSecret { secret }
    }

    /// Applies one ZooKeeper request's writes at revision `next` (see the module docs);
    /// returns whether anything changed and one result per op.
    pub(super) fn apply_zk(
        &mut self,
        session: u64,
        ids: &[ZkId],
        ops: &[ZkOp],
        time_ms: u64,
        next: u64,
    ) -> (bool, Vec<ZkOpResult>) {
        if self.sessions.get(session).is_none() {
            let results = vec![ZkOpResult::Error { code: Code::SessionExpired.value() }; ops.len().max(1)];
            return (false, results);
        }
        let paths = match self.zk_dry_run(session, ops, ids) {
            Ok(paths) => paths,
            Err((failed, code)) => return (false, failed_results(ops.len(), failed, code)),
        };
        let mut results = Vec::with_capacity(ops.len());
        for (op, path) in ops.iter().zip(paths) {
            results.push(match op {
                ZkOp::CreateTtl { data, acl, ttl_ms, .. } => {
                    self.znodes.ttls.insert(path.clone(), *ttl_ms);
                    self.create_znode(path, data, 0, false, acl, time_ms, next)
                }
                ZkOp::Create { data, ephemeral, container, acl, .. } => {
                    let owner = if *ephemeral { session } else { 0 };
                    self.create_znode(path, data, owner, *container, acl, time_ms, next)
                }
                ZkOp::Delete { .. } => {
                    self.write_key(&key_of(&path), None, next);
                    self.znode_removed(&path, next);
                    ZkOpResult::Delete
                }
                ZkOp::SetData { data, .. } => {
                    let key = key_of(&path);
                    let owner = self.kv.get(&key).map_or(0, |kv| kv.session);
                    self.write_key(&key, Some((data.clone().unwrap_or_default(), owner)), next);
                    if let Some(m) = self.znodes.nodes.get_mut(&path) {
                        m.mtime = time_ms;
                        m.null_data = data.is_none();
                    }
                    ZkOpResult::SetData { stat: self.zk_stat(&path).unwrap_or_default() }
                }
                ZkOp::Check { .. } | ZkOp::Owner { .. } => ZkOpResult::Check,
                ZkOp::SetAcl { acl, .. } => {
                    let m = self.znodes.nodes.entry(path.clone()).or_default();
                    m.acl = acl.clone();
                    m.aversion += 1;
                    ZkOpResult::SetAcl { stat: self.zk_stat(&path).unwrap_or_default() }
                }
            });
        }
        let changed = ops.iter().any(|op| !matches!(op, ZkOp::Check { .. } | ZkOp::Owner { .. }));
        (changed, results)
    }

    /// Applies pipelined requests in order, each at its own revision exactly as
    /// [`Self::apply_zk`] would one by one.
    pub(super) fn apply_zk_batch(
        &mut self,
        session: u64,
        ids: &[ZkId],
        requests: &[Vec<ZkOp>],
        time_ms: u64,
    ) -> OutcomeBody {
        let mut results = Vec::with_capacity(requests.len());
        for ops in requests {
            let next = self.revision + 1;
            let (changed, r) = self.apply_zk(session, ids, ops, time_ms, next);
            if changed {
                self.revision = next;
            }
            results.push((self.revision, r));
        }
        OutcomeBody::ZkBatch { results }
    }

    /// Writes a new znode's key and bookkeeping at `next` and answers its creation.
    #[allow(clippy::too_many_arguments)]
    fn create_znode(
        &mut self,
        path: String,
        data: &Option<Vec<u8>>,
        owner: u64,
        container: bool,
        acl: &[ZkAcl],
        time_ms: u64,
        next: u64,
    ) -> ZkOpResult {
        self.write_key(&key_of(&path), Some((data.clone().unwrap_or_default(), owner)), next);
        let meta = Meta {
            null_data: data.is_none(),
            ctime: time_ms,
            mtime: time_ms,
            pzxid: next,
            container,
            acl: acl.to_vec(),
            ..Meta::default()
        };
        self.znodes.nodes.insert(path.clone(), meta);
        self.child_changed(&path, true, next);
        let stat = self.zk_stat(&path).unwrap_or_default();
        ZkOpResult::Create { path, stat }
    }

    /// Bookkeeping after znode `path`'s key was deleted (by a delete, a reap or its session's
    /// end): forgets it and updates its parent.
    pub(super) fn znode_removed(&mut self, path: &str, revision: u64) {
        self.znodes.nodes.remove(path);
        self.znodes.ttls.remove(path);
        self.child_changed(path, false, revision);
    }

    /// Adds or removes `path` in its parent's children.
    fn child_changed(&mut self, path: &str, added: bool, revision: u64) {
        let Some((parent, name)) = split_parent(path) else { return };
        let m = self.znodes.nodes.entry(parent.to_string()).or_default();
        if added {
            m.children.insert(name.to_string());
        } else {
            m.children.remove(name);
        }
        m.cversion += 1;
        m.pzxid = revision;
    }

    fn zk_view(&self, path: &str) -> Option<View> {
        let stat = self.zk_stat(path)?;
        Some(View {
            version: stat.version,
            aversion: stat.aversion,
            ephemeral: self.kv.get(&key_of(path)).is_some_and(|kv| kv.session != 0),
            children: i64::from(stat.num_children),
            cversion: stat.cversion,
            acl: self.znodes.nodes.get(path).map(|m| m.acl.clone()).unwrap_or_default(),
        })
    }

    /// Checks every op against the state as the earlier ops would leave it (in ZooKeeper's
    /// order: existence, permission, version, children); returns each op's final path, or the
    /// first failing op and its code.
    fn zk_dry_run(&self, session: u64, ops: &[ZkOp], ids: &[ZkId]) -> Result<Vec<String>, (usize, Code)> {
        let mut overlay: BTreeMap<String, Option<View>> = BTreeMap::new();
        let view = |overlay: &BTreeMap<String, Option<View>>, p: &str| match overlay.get(p) {
            Some(v) => v.clone(),
            None => self.zk_view(p),
        };
        let mut paths = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let fail = |code| (i, code);
            let allow = |v: &View, p| if permits(&v.acl, ids, p) { Ok(()) } else { Err(fail(Code::NoAuth)) };
            let versioned = |expected: i32, actual: i32| {
                if expected != -1 && expected != actual {
                    Err(fail(Code::BadVersion))
                } else {
                    Ok(())
                }
            };
            let create = |overlay: &mut BTreeMap<String, Option<View>>,
                          path: &String,
                          ephemeral: bool,
                          sequential: bool,
                          acl: &Vec<ZkAcl>| {
                let (parent, _) = split_parent(path).ok_or(fail(Code::NodeExists))?;
                let mut pv = view(overlay, parent).ok_or(fail(Code::NoNode))?;
                allow(&pv, perm::CREATE)?;
                if pv.ephemeral {
                    return Err(fail(Code::NoChildrenForEphemerals));
                }
                let path = if sequential { format!("{path}{:010}", pv.cversion) } else { path.clone() };
                if view(overlay, &path).is_some() {
                    return Err(fail(Code::NodeExists));
                }
                pv.children += 1;
                pv.cversion += 1;
                overlay.insert(parent.to_string(), Some(pv));
                let v = View { version: 0, aversion: 0, ephemeral, children: 0, cversion: 0, acl: acl.clone() };
                overlay.insert(path.clone(), Some(v));
                Ok(path)
            };
            let path = match op {
                ZkOp::Create { path, ephemeral, sequential, acl, .. } => {
                    create(&mut overlay, path, *ephemeral, *sequential, acl)?
                }
                ZkOp::CreateTtl { path, sequential, acl, .. } => create(&mut overlay, path, false, *sequential, acl)?,
                ZkOp::Owner { token } => {
                    if self.znodes.owner(session) != *token {
                        return Err(fail(Code::SessionMoved));
                    }
                    String::new()
                }
                ZkOp::Delete { path, version } => {
                    let (parent, _) = split_parent(path).ok_or(fail(Code::BadArguments))?;
                    let mut pv = view(&overlay, parent).ok_or(fail(Code::NoNode))?;
                    let v = view(&overlay, path).ok_or(fail(Code::NoNode))?;
                    allow(&pv, perm::DELETE)?;
                    versioned(*version, v.version)?;
                    if v.children > 0 {
                        return Err(fail(Code::NotEmpty));
                    }
                    pv.children -= 1;
                    pv.cversion += 1;
                    overlay.insert(parent.to_string(), Some(pv));
                    overlay.insert(path.clone(), None);
                    path.clone()
                }
                ZkOp::SetData { path, version, .. } => {
                    let mut v = view(&overlay, path).ok_or(fail(Code::NoNode))?;
                    allow(&v, perm::WRITE)?;
                    versioned(*version, v.version)?;
                    v.version += 1;
                    overlay.insert(path.clone(), Some(v));
                    path.clone()
                }
                ZkOp::Check { path, version } => {
                    let v = view(&overlay, path).ok_or(fail(Code::NoNode))?;
                    allow(&v, perm::READ)?;
                    versioned(*version, v.version)?;
                    path.clone()
                }
                ZkOp::SetAcl { path, acl, version } => {
                    let mut v = view(&overlay, path).ok_or(fail(Code::NoNode))?;
                    allow(&v, perm::ADMIN)?;
                    versioned(*version, v.aversion)?;
                    v.aversion += 1;
                    v.acl = acl.clone();
                    overlay.insert(path.clone(), Some(v));
                    path.clone()
                }
            };
            paths.push(path);
        }
        Ok(paths)
    }
}
