//! What a ZooKeeper write reports: each op's result and the `Stat` of the znodes it touched
//! (part of an applied command's outcome, [`super::response::OutcomeBody`]).

use conclave_proto::zookeeper::Code;
use serde::{Deserialize, Serialize};

/// ZooKeeper's `Stat` of one znode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZStat {
    /// Revision that created it.
    pub czxid: u64,
    /// Revision of the last data change.
    pub mzxid: u64,
    /// Creation time, ms.
    pub ctime: u64,
    /// Last data change time, ms.
    pub mtime: u64,
    /// Data version (0 after creation).
    pub version: i32,
    /// Children version.
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Owning session of an ephemeral node, else 0.
    pub ephemeral_owner: u64,
    /// Data length.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Revision of the last child change.
    pub pzxid: u64,
}

/// The result of one ZooKeeper write op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkOpResult {
    /// Created at this path (sequential suffix included).
    Create {
        /// Final path.
        path: String,
        /// Its stat.
        stat: ZStat,
    },
    /// Deleted.
    Delete,
    /// Data set.
    SetData {
        /// Stat after.
        stat: ZStat,
    },
    /// Check passed.
    Check,
    /// ACL set.
    SetAcl {
        /// Stat after.
        stat: ZStat,
    },
    /// Failed (or, in a failed multi, OK before the failure / RUNTIMEINCONSISTENCY after it).
    Error {
        /// ZooKeeper's error code.
        code: i32,
    },
}

/// The results of a request whose op `failed` failed with `code`, as ZooKeeper reports a failed
/// multi: OK (rolled back) before it, `code` for it, RUNTIMEINCONSISTENCY after it.
pub fn failed_results(len: usize, failed: usize, code: Code) -> Vec<ZkOpResult> {
    (0..len.max(1))
        .map(|i| {
            let code = match i.cmp(&failed) {
                std::cmp::Ordering::Less => Code::Ok,
                std::cmp::Ordering::Equal => code,
                std::cmp::Ordering::Greater => Code::RuntimeInconsistency,
            };
            ZkOpResult::Error { code: code.value() }
        })
        .collect()
}
