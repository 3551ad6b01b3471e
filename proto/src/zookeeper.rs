//! ZooKeeper's wire-protocol numbers, defined once here (from ZooKeeper's
//! `KeeperException.Code`, `ZooDefs.OpCode` and `Watcher.Event`): the server's ZooKeeper front
//! end and its state machine both answer with exactly these values.

/// `KeeperException.Code`: the `err` field of a reply header or a multi result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// Everything is OK.
    Ok = 0,
    /// A system (server-side) error.
    SystemError = -1,
    /// A multi operation after the one that failed (the whole multi did nothing).
    RuntimeInconsistency = -2,
    /// A data inconsistency was found.
    DataInconsistency = -3,
    /// Connection to the server has been lost.
    ConnectionLoss = -4,
    /// Error while marshalling or unmarshalling data (a malformed request).
    MarshallingError = -5,
    /// Operation is unimplemented.
    Unimplemented = -6,
    /// Operation timeout.
    OperationTimeout = -7,
    /// Invalid arguments (a bad path, a write to a reserved node).
    BadArguments = -8,
    /// Unknown session (internal to ZooKeeper).
    UnknownSession = -12,
    /// API errors (not used by the server).
    ApiError = -100,
    /// Node does not exist.
    NoNode = -101,
    /// Not authenticated.
    NoAuth = -102,
    /// Version conflict.
    BadVersion = -103,
    /// Ephemeral nodes may not have children.
    NoChildrenForEphemerals = -108,
    /// The node already exists.
    NodeExists = -110,
    /// The node has children.
    NotEmpty = -111,
    /// The session has been expired by the server.
    SessionExpired = -112,
    /// Invalid callback specified.
    InvalidCallback = -113,
    /// Invalid ACL specified.
    InvalidAcl = -114,
    /// Client authentication failed.
    AuthFailed = -115,
    /// Session moved to another server.
    SessionMoved = -118,
    /// State-changing request passed to a read-only server.
    NotReadOnly = -119,
    /// Attempt to create an ephemeral node on a local session.
    EphemeralOnLocalSession = -120,
    /// Attempt to remove a non-existing watcher.
    NoWatcher = -121,
    /// Request not completed within the maximum allowed time.
    RequestTimeout = -122,
    /// Attempt to reconfigure while reconfiguration is disabled.
    ReconfigDisabled = -123,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 27] = [
        Code::Ok,
        Code::SystemError,
        Code::RuntimeInconsistency,
        Code::DataInconsistency,
        Code::ConnectionLoss,
        Code::MarshallingError,
        Code::Unimplemented,
        Code::OperationTimeout,
        Code::BadArguments,
        Code::UnknownSession,
        Code::ApiError,
        Code::NoNode,
        Code::NoAuth,
        Code::BadVersion,
        Code::NoChildrenForEphemerals,
        Code::NodeExists,
        Code::NotEmpty,
        Code::SessionExpired,
        Code::InvalidCallback,
        Code::InvalidAcl,
        Code::AuthFailed,
        Code::SessionMoved,
        Code::NotReadOnly,
        Code::EphemeralOnLocalSession,
        Code::NoWatcher,
        Code::RequestTimeout,
        Code::ReconfigDisabled,
    ];

    /// The wire value.
    pub fn value(self) -> i32 {
        self as i32
    }

    /// The code with this wire value, if it is one.
    pub fn from_value(v: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.value() == v)
    }
}

/// `ZooDefs.OpCode`: the `type` field of a request header.
#[allow(missing_docs)]
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// `Watcher.Event.EventType`: the `type` of a watch notification.
#[allow(missing_docs)]
pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
    /// `KeeperState.SyncConnected`.
    pub const STATE_SYNC_CONNECTED: i32 = 3;
}

/// Special request/reply `xid`s.
#[allow(missing_docs)]
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}
