//! ZooKeeper-protocol writes as they are stored in the log (`Command::Zk`). The front end
//! (`crate::zk`) validates paths and converts a jute request into these; apply
//! (`state_machine::znodes`) decides every outcome.

use serde::{Deserialize, Serialize};

/// One ACL entry of a znode (ZooKeeper's `ACL` record), already resolved by the front end
/// (`auth` entries replaced by the creator's identities).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZkAcl {
    /// Permission bits: READ 1, WRITE 2, CREATE 4, DELETE 8, ADMIN 16.
    pub perms: i32,
    /// `world`, `digest` or `ip`.
    pub scheme: String,
    /// `anyone`, `user:base64(sha1(user:password))` or an address (`a.b.c.d[/bits]`).
    pub id: String,
}

/// An identity a connection holds (`ip` always, `digest` after `addAuth`), checked by apply
/// against the ACLs (so every replica decides the same).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZkId {
    /// Scheme.
    pub scheme: String,
    /// Identity.
    pub id: String,
}

/// One write of a ZooKeeper request (a single request is a list of one).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ZkOp {
    /// create / create2 / createContainer.
    Create {
        /// Absolute, validated path (for a sequential node: the prefix the suffix is added to).
        path: String,
        /// Data (`None`: null, which readers get back as null).
        data: Option<Vec<u8>>,
        /// Bound to the request's session (deleted when it ends).
        ephemeral: bool,
        /// Append the parent's 10-digit child counter (its cversion) to the name.
        sequential: bool,
        /// A container: deleted once it had children and has none left.
        container: bool,
        /// Its ACL (non-empty).
        acl: Vec<ZkAcl>,
    },
    /// delete, versioned (-1: any version).
    Delete {
        /// Path.
        path: String,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// setData, versioned (-1: any version).
    SetData {
        /// Path.
        path: String,
        /// New data (`None`: null).
        data: Option<Vec<u8>>,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// check (inside multi): the node exists with this version (-1: any).
    Check {
        /// Path.
        path: String,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// setACL, versioned on the ACL version (-1: any).
    SetAcl {
        /// Path.
        path: String,
        /// The new ACL (non-empty).
        acl: Vec<ZkAcl>,
        /// Expected ACL version, -1 for any.
        version: i32,
    },
    // New variants go last: bincode numbers variants by position (log format V1).
    /// createTTL (opcode 21): a persistent node, optionally sequential, that the leader deletes
    /// (`Command::ZkReap`) once it has had no children and no data change for `ttl_ms`.
    CreateTtl {
        /// Absolute, validated path (for a sequential node: the prefix the suffix is added to).
        path: String,
        /// Data (`None`: null).
        data: Option<Vec<u8>>,
        /// Append the parent's 10-digit child counter to the name.
        sequential: bool,
        /// Its ACL (non-empty).
        acl: Vec<ZkAcl>,
        /// Time to live, ms, in `1..=MAX_TTL_MS` (checked by the front end).
        ttl_ms: u64,
    },
    /// Fails the request with SESSIONMOVED unless the connection sending it (token `token`)
    /// still owns the session (`Command::ZkAttach`): the front end puts it first in every write
    /// request, so a stale connection's write is refused by every replica alike.
    Owner {
        /// The sending connection's owner token.
        token: u64,
    },
}

/// Longest TTL ZooKeeper can encode in `Stat.ephemeralOwner` (40 bits of milliseconds).
pub const MAX_TTL_MS: u64 = 0xff_ffff_ffff;

/// A znode the leader found due for deletion (a TTL node past its TTL, an empty container),
/// as it saw it: apply deletes it only if it is still unchanged and childless.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZkReapTarget {
    /// Path.
    pub path: String,
    /// Its mzxid when the leader decided (a data change since keeps it).
    pub mzxid: u64,
    /// Its cversion when the leader decided (a child created since keeps it).
    pub cversion: i32,
}
