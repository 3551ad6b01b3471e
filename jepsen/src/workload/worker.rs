//! The machinery every workload shares: the run context, workers and their logical processes,
//! how an operation is recorded, and how client errors map to `fail` (certainly not applied)
//! or `info` (unknown).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conclave_client::{Client, ClientConfig, Error};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tokio::sync::watch as signal;

use crate::history::{Event, EventType, Recorder};

/// Settings shared by every workload.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Number of workers.
    pub concurrency: usize,
    /// Target operations per second over all workers.
    pub rate: f64,
    /// Deadline of one client call (retries included).
    pub op_timeout: Duration,
    /// Register workload: operations per key before moving on to a new key.
    pub ops_per_key: u64,
    /// Seed of the operation generators.
    pub seed: u64,
    /// Positive control: the register workload reads with `serializable: true` (the contacted
    /// node's local state, allowed to be stale), which the linearizability checker must flag.
    pub serializable_reads: bool,
    /// Clients connect over TLS with this (set by the runner for `--tls`).
    pub tls: Option<conclave_client::ClientTls>,
}

/// What every worker shares.
pub struct Ctx {
    /// The history.
    pub recorder: Arc<Recorder>,
    /// Every node's client address.
    pub endpoints: Vec<String>,
    /// Every node's ZooKeeper address (`--zk-addr`), for the ZooKeeper-protocol workloads
    /// (empty otherwise).
    pub zk_endpoints: Vec<String>,
    /// Settings.
    pub settings: Settings,
    /// Turns true when the workload phase ends.
    pub stop: signal::Receiver<bool>,
    /// Prefix of every key this run writes.
    pub prefix: String,
    next_process: AtomicI64,
    /// A shared sequence (register key rotation, set elements, unique values).
    pub sequence: AtomicU64,
    /// Keys the workload's processes created, for others to read (session workload).
    pub registry: std::sync::Mutex<Vec<String>>,
}

impl Ctx {
    /// Shared state for a run.
    pub fn new(
        recorder: Arc<Recorder>,
        endpoints: Vec<String>,
        settings: Settings,
        stop: signal::Receiver<bool>,
        prefix: String,
    ) -> Self {
        Self {
            recorder,
            endpoints,
            zk_endpoints: Vec::new(),
            settings,
            stop,
            prefix,
            next_process: AtomicI64::new(0),
            sequence: AtomicU64::new(0),
            registry: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A fresh process id.
    pub fn new_process(&self) -> i64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the workload phase is over.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A client whose first endpoint is `home` (it discovers the rest and follows the leader).
    pub async fn client(&self, home: usize) -> Client {
        let n = self.endpoints.len();
        let endpoints: Vec<String> = (0..n).map(|i| self.endpoints[(home + i) % n].clone()).collect();
        let mut config = ClientConfig::new(endpoints);
        // Each client process connects from its own loopback address (127.0.0.101, .102, ...).
        config.local_address = Some(std::net::IpAddr::from([127, 0, 0, 101 + (home % 100) as u8]));
        config.call_timeout = self.settings.op_timeout;
        config.attempt_timeout = self.settings.op_timeout.min(Duration::from_secs(1));
        config.connect_timeout = Duration::from_millis(300);
        config.tls = self.settings.tls.clone();
        // Connecting never waits for the cluster (member discovery runs in the background).
        match Client::with_config(config).await {
            Ok(c) => c,
            Err(e) => panic!("client for {:?}: {e}", self.endpoints),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug)]
pub enum Completion {
    /// Happened, with this result; served by this node if known.
    Ok(Value, Option<u64>),
    /// Certainly did not happen; optional detail value.
    Fail(String, Value),
    /// Unknown outcome.
    Info(String),
}

/// Maps a client error to a completion. Reads never change anything, so an unknown read fails.
pub fn classify(err: &Error, write: bool) -> Completion {
    match err {
        Error::Unavailable(m) => Completion::Fail(format!("unavailable: {m}"), Value::Null),
        Error::InvalidArgument(m) => Completion::Fail(format!("invalid argument: {m}"), Value::Null),
        Error::Indeterminate(m) if write => Completion::Info(format!("indeterminate: {m}")),
        Error::Status { code, message, .. } if write && !definite(*code) => {
            Completion::Info(format!("{code:?}: {message}"))
        }
        other => Completion::Fail(other.to_string(), Value::Null),
    }
}

/// Status codes after which a write certainly did not happen.
fn definite(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::InvalidArgument | Code::NotFound | Code::OutOfRange | Code::ResourceExhausted | Code::AlreadyExists
    )
}

/// One worker: runs processes one after another.
pub struct Worker {
    /// Shared state.
    pub ctx: Arc<Ctx>,
    /// Worker number (also picks its home node).
    pub index: usize,
    /// Current process id.
    pub process: i64,
    /// Current process's client.
    pub client: Client,
    /// The worker's generator.
    pub rng: ChaCha8Rng,
}

/// An operation in flight.
pub struct Invocation {
    f: &'static str,
    key: Option<String>,
}

impl Worker {
    /// A worker with its first process.
    pub async fn new(ctx: Arc<Ctx>, index: usize) -> Self {
        let client = ctx.client(index).await;
        let rng = ChaCha8Rng::seed_from_u64(ctx.settings.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
        Self { process: ctx.new_process(), ctx, index, client, rng }
    }

    /// Retires the current process: a new id and a new client.
    pub async fn renew(&mut self) {
        self.process = self.ctx.new_process();
        self.client = self.ctx.client(self.index).await;
    }

    /// Records an invocation.
    pub fn invoke(&self, f: &'static str, key: Option<String>, value: Value) -> Invocation {
        let mut e = Event::new(EventType::Invoke, self.process, f, key.clone(), value);
        e.node = Some(self.ctx.endpoints[self.index % self.ctx.endpoints.len()].clone());
        self.ctx.recorder.record(e);
        Invocation { f, key }
    }

    /// Records a completion; after an unknown outcome the process is retired.
    pub async fn complete(&mut self, inv: Invocation, c: Completion) {
        let unknown = matches!(c, Completion::Info(_));
        self.complete_keep(inv, c);
        if unknown {
            self.renew().await;
        }
    }

    /// Records a completion without retiring the process even if the outcome is unknown (for
    /// operations that change nothing other processes observe directly, like keep-alives).
    pub fn complete_keep(&self, inv: Invocation, c: Completion) {
        let (kind, value, node, error) = match c {
            Completion::Ok(v, node) => (EventType::Ok, v, node, None),
            Completion::Fail(m, v) => (EventType::Fail, v, None, Some(m)),
            Completion::Info(m) => (EventType::Info, Value::Null, None, Some(m)),
        };
        let mut e = Event::new(kind, self.process, inv.f, inv.key, value);
        e.node = node.map(|n| format!("n{n}"));
        e.error = error;
        self.ctx.recorder.record(e);
    }

    /// Records an operation that completes at once.
    pub fn instant(&self, f: &'static str, key: Option<String>, arg: Value) {
        let inv = self.invoke(f, key, arg);
        self.complete_keep(inv, Completion::Ok(Value::Null, None));
    }

    /// Sleeps up to `d`, waking early when the phase ends; false once it is over.
    pub async fn nap(&self, d: Duration) -> bool {
        let mut stop = self.ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
        !self.ctx.stopped()
    }

    /// Runs `op` with a hard deadline (an overrun is an unknown outcome).
    pub async fn bounded<F: std::future::Future<Output = Completion>>(&self, op: F) -> Completion {
        let limit = self.ctx.settings.op_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, op).await {
            Ok(c) => c,
            Err(_) => Completion::Info(format!("no answer within {limit:?}")),
        }
    }

    /// Waits before the next operation to keep the overall rate; false once the phase is over.
    pub async fn pace(&mut self) -> bool {
        if self.ctx.stopped() {
            return false;
        }
        let mean = self.ctx.settings.concurrency as f64 / self.ctx.settings.rate.max(0.001);
        let delay = Duration::from_secs_f64(self.rng.random_range(0.0..2.0 * mean));
        let mut stop = self.ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
        !self.ctx.stopped()
    }
}

/// Runs a final-phase operation until it succeeds or `budget` passes; each attempt is recorded.
/// Returns whether one succeeded.
pub async fn retry_final<F, Fut>(w: &mut Worker, budget: Duration, f: &'static str, key: Option<String>, op: F) -> bool
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Completion>,
{
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        let inv = w.invoke(f, key.clone(), Value::Null);
        let c = w.bounded(op(w.client.clone())).await;
        let ok = matches!(c, Completion::Ok(..));
        w.complete(inv, c).await;
        if ok {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The node id in a response header, if any.
pub fn served_by(header: Option<&conclave_client::proto::ResponseHeader>) -> Option<u64> {
    header.map(|h| h.node_id).filter(|n| *n != 0)
}
