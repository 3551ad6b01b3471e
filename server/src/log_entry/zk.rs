//! ZooKeeper-protocol writes as they are stored in the log (`Command::Zk`). The front end
//! (`crate::zk`) validates paths and converts a jute request into these; apply
//! (`state_machine::znodes`) decides every outcome.

use serde::{Deserialize, Serialize};

/// One write of a ZooKeeper request (a single request is a list of one).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ZkOp {
    /// create / create2 / createContainer.
    Create {
        /// Absolute, validated path (for a sequential node: the prefix the suffix is added to).
        path: String,
        /// Data.
        #[serde(with = "super::bytes")]
        data: Vec<u8>,
        /// Bound to the request's session (deleted when it ends).
        ephemeral: bool,
        /// Append the parent's 10-digit child counter (its cversion) to the name.
        sequential: bool,
        /// A container: deleted once it had children and has none left.
        container: bool,
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
        /// New data.
        #[serde(with = "super::bytes")]
        data: Vec<u8>,
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
}
