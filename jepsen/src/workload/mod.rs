//! Workloads: what the client processes do, and how their operations are recorded.
//!
//! A *worker* is a long-lived task; it runs one logical *process* at a time, with its own
//! `Client` (own client id). After an operation with an unknown outcome the process is retired
//! and the worker continues as a new process with a new client, as in Jepsen.

pub mod counter;
pub mod election;
pub mod register;
pub mod session;
pub mod set;
pub mod watch;
pub mod zk;
pub mod zk_register;
pub mod zk_session;

mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use worker::{classify, retry_final, served_by, Completion, Ctx, Settings, Worker};

use crate::checker::{self, CheckResult};
use crate::history::{self, Event};

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Per-key read / write / compare-and-set, checked for linearizability.
    Register,
    /// `get_and_add(1)`: unique, ordered, nothing lost.
    Counter,
    /// Adds, then final reads: nothing lost.
    Set,
    /// Lease-based leader election with fenced writes.
    Election,
    /// Sessions with ephemeral keys and keep-alives.
    Session,
    /// Watches of written keys.
    Watch,
    /// `register` through the members' ZooKeeper ports (setData, versioned setData, sync + getData).
    ZkRegister,
    /// `session` through the members' ZooKeeper ports (ZooKeeper sessions, ephemeral znodes).
    ZkSession,
}

impl Kind {
    /// Every workload, in `test-all` order.
    pub const ALL: [Kind; 8] = [
        Kind::Register,
        Kind::Counter,
        Kind::Set,
        Kind::Election,
        Kind::Session,
        Kind::Watch,
        Kind::ZkRegister,
        Kind::ZkSession,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Counter => "counter",
            Kind::Set => "set",
            Kind::Election => "election",
            Kind::Session => "session",
            Kind::Watch => "watch",
            Kind::ZkRegister => "zk-register",
            Kind::ZkSession => "zk-session",
        }
    }

    /// Whether the members must serve ZooKeeper's protocol (`--zk-addr`).
    pub fn speaks_zookeeper(self) -> bool {
        matches!(self, Kind::ZkRegister | Kind::ZkSession)
    }

    /// Guesses the workload of a saved history from its operations (a ZooKeeper-protocol
    /// history is checked like its native counterpart, by the same checker).
    pub fn infer(events: &[Event]) -> Option<Kind> {
        let has = |f: &str| events.iter().any(|e| e.f == f);
        if has("fenced-write") || has("acquire") {
            Some(Kind::Election)
        } else if has("keep-alive") || has("put-ephemeral") {
            Some(Kind::Session)
        } else if has("watch") {
            Some(Kind::Watch)
        } else if has("cas") || has("read") && has("write") {
            Some(Kind::Register)
        } else if has("add") && events.iter().any(|e| e.f == "add" && e.key.is_none()) {
            Some(Kind::Counter)
        } else if has("add") {
            Some(Kind::Set)
        } else {
            None
        }
    }
}

/// Runs the workload's checkers on a history (`budget` bounds the linearizability search).
pub fn check(kind: Kind, events: &[Event], budget: Duration) -> Vec<CheckResult> {
    let ops = match history::pair(events) {
        Ok(ops) => ops,
        Err(e) => {
            return vec![CheckResult::new("history", checker::Verdict::Unknown, format!("malformed history: {e}"))]
        }
    };
    vec![match kind {
        Kind::Register | Kind::ZkRegister => checker::register::check(&ops, budget),
        Kind::Counter => checker::counter::check(&ops),
        Kind::Set => checker::set::check(&ops),
        Kind::Election => checker::election::check(&ops),
        Kind::Session | Kind::ZkSession => checker::session::check(&ops, &history::fault_intervals(events)),
        Kind::Watch => checker::watch::check(&ops),
    }]
}

/// Runs one worker of `kind` until the phase ends.
pub async fn run_worker(kind: Kind, ctx: Arc<Ctx>, index: usize) {
    match kind {
        Kind::Register => register::run(ctx, index).await,
        Kind::Counter => counter::run(ctx, index).await,
        Kind::Set => set::run(ctx, index).await,
        Kind::Election => election::run(ctx, index).await,
        Kind::Session => session::run(ctx, index).await,
        Kind::Watch => watch::run(ctx, index).await,
        Kind::ZkRegister => zk_register::run(ctx, index).await,
        Kind::ZkSession => zk_session::run(ctx, index).await,
    }
}

/// The workload's final phase (after every fault healed): final reads and the like.
pub async fn final_phase(kind: Kind, ctx: Arc<Ctx>) {
    match kind {
        Kind::Counter => counter::final_reads(ctx).await,
        Kind::Set => set::final_reads(ctx).await,
        Kind::Session => session::final_phase(ctx).await,
        Kind::ZkSession => zk_session::final_phase(ctx).await,
        Kind::Register | Kind::Election | Kind::Watch | Kind::ZkRegister => {}
    }
}
