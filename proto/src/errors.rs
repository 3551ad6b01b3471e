//! The error contract shared by the server and every client: a machine-readable **reason** and
//! the **outcome** of the request, carried in the metadata (trailers) of every error status.
//!
//! The gRPC code says what kind of failure it is; the reason names it exactly; the outcome tells
//! a writer whether the request took effect. Clients decide from these two values only, never
//! from the message text (which is for people and may change).
//!
//! | metadata key | values |
//! |---|---|
//! | [`REASON_METADATA`] `x-conclave-reason` | [`Reason::as_str`], e.g. `NOT_LEADER`, `RETRY_TOO_OLD` |
//! | [`OUTCOME_METADATA`] `x-conclave-outcome` | `NOT_APPLIED`, `UNKNOWN`, `APPLIED` ([`Outcome`]) |
//!
//! A status without these keys did not come from a Conclave server's request handling (a proxy,
//! the transport, a deadline): treat a write's outcome as unknown unless the code says the request
//! was rejected before it was processed (see [`outcome_of`]).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key of the machine-readable reason.
pub const REASON_METADATA: &str = "x-conclave-reason";
/// Metadata key of the outcome.
pub const OUTCOME_METADATA: &str = "x-conclave-outcome";

/// Whether a failed request took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Nothing was applied: the request can be sent anywhere again (a write keeps its request id).
    NotApplied,
    /// The write may or may not have been applied. Retry with the same request id (the server
    /// deduplicates and answers the original result), or read the state to find out.
    Unknown,
    /// The request went through the replicated log and this is its final answer (a counter
    /// overflow, a release with a stale token): retrying gives the same answer.
    Applied,
}

impl Outcome {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotApplied => "NOT_APPLIED",
            Outcome::Unknown => "UNKNOWN",
            Outcome::Applied => "APPLIED",
        }
    }

    /// Parses a metadata value.
    pub fn parse(s: &str) -> Option<Self> {
        [Outcome::NotApplied, Outcome::Unknown, Outcome::Applied].into_iter().find(|o| o.as_str() == s)
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        /// Why a request failed: one value per distinct failure a client may act on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The metadata value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $text,)*
                }
            }
        }
    };
}

reasons! {
    /// Malformed request (empty or oversized key or value, bad range, too many operations).
    InvalidArgument = "INVALID_ARGUMENT",
    /// The encoded request is over the size limit.
    RequestTooLarge = "REQUEST_TOO_LARGE",
    /// A server-side resource limit (watches per stream, sessions per keep-alive).
    LimitExceeded = "LIMIT_EXCEEDED",
    /// A read at a revision older than the compaction point.
    Compacted = "COMPACTED",
    /// A read at a revision that has not happened yet.
    FutureRevision = "FUTURE_REVISION",
    /// The session does not exist (never opened, expired or closed).
    SessionNotFound = "SESSION_NOT_FOUND",
    /// A counter addition would overflow.
    CounterOverflow = "COUNTER_OVERFLOW",
    /// A lease release with a token that is not the current one.
    LeaseNotHeld = "LEASE_NOT_HELD",
    /// A retry whose stored result was forgotten: its outcome is unknown (never applied twice).
    RetryTooOld = "RETRY_TOO_OLD",
    /// The contacted member is not the leader (leader hint in [`crate::LEADER_ID_METADATA`] /
    /// [`crate::LEADER_HINT_METADATA`] when known).
    NotLeader = "NOT_LEADER",
    /// No leader is known (election in progress, no quorum).
    NoLeader = "NO_LEADER",
    /// The leader changed while the request was in flight.
    LeaderChanged = "LEADER_CHANGED",
    /// The member has not applied the requested `min_revision` in time (it is behind or cut off).
    Behind = "BEHIND",
    /// The member is stopping.
    ShuttingDown = "SHUTTING_DOWN",
    /// The member lost contact with the leader or a peer; retry elsewhere.
    Unavailable = "UNAVAILABLE",
    /// The member is rejoining after losing its data and does not serve this yet.
    Rejoining = "REJOINING",
    /// A membership change names an id that is already a member.
    MemberExists = "MEMBER_EXISTS",
    /// A membership change names an id that is not a member (or not a learner, for a promotion).
    MemberNotFound = "MEMBER_NOT_FOUND",
    /// A learner is not caught up enough to be promoted.
    LearnerNotReady = "LEARNER_NOT_READY",
    /// The removal would leave the voters without a quorum of live members.
    QuorumAtRisk = "QUORUM_AT_RISK",
    /// A leadership transfer did not complete (the target is behind, cut off, or no longer
    /// follows the leader); the message says which. Leadership stays or an election follows.
    TransferFailed = "TRANSFER_FAILED",
    /// A peer belongs to another cluster (its data dir records another cluster id).
    ClusterIdMismatch = "CLUSTER_ID_MISMATCH",
    /// A bug or a storage fault on the server.
    Internal = "INTERNAL",
    /// Authentication is on and the request carries no identity (no token, no client
    /// certificate): authenticate first (`Auth.Authenticate`).
    AuthRequired = "AUTH_REQUIRED",
    /// Wrong user name or password, or no root user exists yet: fix the credentials (retrying
    /// the same ones fails the same way).
    AuthFailed = "AUTH_FAILED",
    /// The token is malformed, signed by another cluster, or its user no longer exists:
    /// authenticate again.
    TokenInvalid = "TOKEN_INVALID",
    /// The token expired, or its user's credentials or roles changed since it was issued:
    /// authenticate again with the same credentials (clients do this transparently).
    TokenExpired = "TOKEN_EXPIRED",
    /// The user lacks the permission the request needs (the message names user, key and
    /// permission), or names a session another user opened (the message names the session).
    PermissionDenied = "PERMISSION_DENIED",
    /// A user or role administration request names a user or role that exists already.
    AuthExists = "AUTH_EXISTS",
    /// A user or role administration request names a user, role or permission that does not exist.
    AuthNotFound = "AUTH_NOT_FOUND",
}

impl Reason {
    /// Parses a metadata value.
    pub fn parse(s: &str) -> Option<Self> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// A status with `code`, `message`, and the reason and outcome set in its metadata. The one
/// constructor of Conclave error statuses (the server's error type and the client's transport
/// both go through it).
pub fn status(code: Code, message: impl Into<String>, reason: Reason, outcome: Outcome) -> Status {
    let mut status = Status::new(code, message);
    let md = status.metadata_mut();
    md.insert(REASON_METADATA, MetadataValue::from_static(reason.as_str()));
    md.insert(OUTCOME_METADATA, MetadataValue::from_static(outcome.as_str()));
    status
}

/// The reason a status carries, if it came from Conclave.
pub fn reason_of(status: &Status) -> Option<Reason> {
    status.metadata().get(REASON_METADATA).and_then(|v| v.to_str().ok()).and_then(Reason::parse)
}

/// The outcome of the request a status answers. Without Conclave's metadata: `NotApplied` for
/// codes that mean the request was refused before processing (bad argument, too large, ...),
/// `Unknown` for the rest (a deadline, a reset stream, a proxy's UNAVAILABLE: the write may have
/// reached the leader).
pub fn outcome_of(status: &Status) -> Outcome {
    if let Some(o) = status.metadata().get(OUTCOME_METADATA).and_then(|v| v.to_str().ok()).and_then(Outcome::parse) {
        return o;
    }
    match status.code() {
        Code::InvalidArgument
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::FailedPrecondition
        | Code::AlreadyExists => Outcome::NotApplied,
        _ => Outcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_outcomes_round_trip_through_metadata() {
        for r in Reason::ALL {
            for o in [Outcome::NotApplied, Outcome::Unknown, Outcome::Applied] {
                let s = status(Code::Unavailable, "m", *r, o);
                assert_eq!(reason_of(&s), Some(*r));
                assert_eq!(outcome_of(&s), o);
            }
        }
    }

    #[test]
    fn statuses_without_metadata_are_unknown_unless_refused_up_front() {
        assert_eq!(outcome_of(&Status::unavailable("proxy: upstream connect error")), Outcome::Unknown);
        assert_eq!(outcome_of(&Status::deadline_exceeded("late")), Outcome::Unknown);
        assert_eq!(outcome_of(&Status::invalid_argument("bad")), Outcome::NotApplied);
        assert_eq!(reason_of(&Status::unavailable("not the leader")), None, "text is never parsed");
    }
}
