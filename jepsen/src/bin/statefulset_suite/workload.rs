//! The clients that run throughout the suite, as an application would through the client
//! Service: they talk to the initial pods' addresses and let members forward (no discovery: the
//! members advertise DNS names only the pods resolve).
//! - a **writer** puts `ctr/w/SEQ` = SEQ one after another and records every acknowledgement;
//! - a **job manager** holds a session and campaigns with the client's `LeaderElection` recipe,
//!   and while it leads, writes a fenced heartbeat every 500 ms.
//!
//! Every event has a timestamp so each step can be judged on its own window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use conclave_client::proto as pb;
use conclave_client::recipes::{LeaderElection, LeaderToken, LeadershipEvent, RevokePolicy};
use conclave_client::{Client, ClientConfig, Error, GetOptions, Session};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Prefix of the writer's keys.
const PREFIX: &str = "ctr/w/";
/// The job manager's session TTL: a few seconds, so that an outage of the cluster as a whole
/// longer than that would show as a lost leadership.
pub const JM_TTL: Duration = Duration::from_secs(3);

/// What the clients saw.
#[derive(Default)]
pub struct Events {
    /// Acknowledged writes: (seq, when).
    pub acks: Vec<(u64, Instant)>,
    /// Writes whose outcome is unknown (may or may not be applied).
    pub indeterminate: Vec<u64>,
    /// Client errors: (when, who, message, transient). Transient: the cluster was unreachable
    /// or the outcome unknown (UNAVAILABLE, DEADLINE_EXCEEDED, indeterminate); anything else is
    /// unexpected.
    pub errors: Vec<(Instant, &'static str, String, bool)>,
    /// Leadership grants of the job manager.
    pub grants: Vec<(Instant, u64)>,
    /// Leadership losses: (when, reason).
    pub revocations: Vec<(Instant, String)>,
    /// Fenced heartbeats accepted.
    pub heartbeats: u64,
}

/// Figures of one time window.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Writes acknowledged in the window.
    pub acked: usize,
    /// Longest time without an acknowledgement in the window (its edges count).
    pub longest_gap: Duration,
    /// Client errors in the window.
    pub errors: Vec<String>,
    /// Of which unexpected (not transient).
    pub unexpected: Vec<String>,
    /// Leadership losses in the window.
    pub revocations: Vec<String>,
}

impl Events {
    /// The figures of `[from, to]`.
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        let mut last = from;
        let mut w = Window::default();
        for (_, t) in self.acks.iter().filter(|(_, t)| *t >= from && *t <= to) {
            w.longest_gap = w.longest_gap.max(t.duration_since(last));
            last = *t;
            w.acked += 1;
        }
        w.longest_gap = w.longest_gap.max(to.duration_since(last));
        for (_, who, m, transient) in self.errors.iter().filter(|(t, ..)| *t >= from && *t <= to) {
            w.errors.push(format!("{who}: {m}"));
            if !transient {
                w.unexpected.push(format!("{who}: {m}"));
            }
        }
        w.revocations =
            self.revocations.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, r)| r.clone()).collect();
        w
    }
}

/// The running clients.
pub struct Workload {
    /// What they saw so far.
    pub events: Arc<Mutex<Events>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    client: Client,
}

fn lock(events: &Mutex<Events>) -> std::sync::MutexGuard<'_, Events> {
    events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `err` only says the cluster could not be reached or the outcome is unknown.
fn transient(err: &Error) -> bool {
    use tonic::Code;
    matches!(err, Error::Indeterminate(_) | Error::Unavailable(_))
        || matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded)
}

/// A client pinned to `endpoints`, as through a Kubernetes Service.
///
/// # Errors
/// Malformed endpoints.
pub async fn service_client(endpoints: Vec<String>) -> Result<Client> {
    let mut config = ClientConfig::new(endpoints);
    config.discover = false;
    Ok(Client::with_config(config).await?)
}

impl Workload {
    /// Starts the writer and the job manager against `endpoints`.
    ///
    /// # Errors
    /// Malformed endpoints.
    pub async fn start(endpoints: Vec<String>) -> Result<Self> {
        let events = Arc::new(Mutex::new(Events::default()));
        let (stop, stopped) = watch::channel(false);
        let writer = service_client(endpoints.clone()).await?;
        let jm = service_client(endpoints.clone()).await?;
        let tasks = vec![
            tokio::spawn(write_loop(writer, events.clone(), stopped.clone())),
            tokio::spawn(job_manager(jm, events.clone(), stopped)),
        ];
        Ok(Self { events, stop, tasks, client: service_client(endpoints).await? })
    }

    /// Waits until the writer has a write acknowledged after now, up to `limit`.
    ///
    /// # Errors
    /// When it has not: the writer is stuck.
    pub async fn wait_progress(&self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if lock(&self.events).acks.last().is_some_and(|(_, t)| *t > start) {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the writer had no write acknowledged for {limit:?}: stuck")
    }

    /// Waits until the job manager leads, up to `limit`.
    ///
    /// # Errors
    /// When it does not.
    pub async fn wait_leadership(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            {
                let e = lock(&self.events);
                let granted = e.grants.last().map(|(t, _)| *t);
                let revoked = e.revocations.last().map(|(t, _)| *t);
                if granted.is_some() && granted > revoked {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the job manager did not lead within {limit:?}")
    }

    /// Stops the clients, then reads every key back and checks every acknowledged write.
    /// Returns (acknowledged, found, indeterminate).
    ///
    /// # Errors
    /// A lost or wrong write (named), or a failure to read.
    pub async fn stop_and_verify(self) -> Result<(usize, usize, usize)> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        let stored = read_all(&self.client).await?;
        let e = lock(&self.events);
        let mut lost = Vec::new();
        for (seq, _) in &e.acks {
            match stored.get(seq) {
                Some(v) if *v == seq.to_string() => {}
                Some(v) => lost.push(format!("{seq} (holds {v:?})")),
                None => lost.push(seq.to_string()),
            }
        }
        if !lost.is_empty() {
            bail!(
                "{} acknowledged writes lost or wrong: {}",
                lost.len(),
                lost.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
            );
        }
        Ok((e.acks.len(), stored.len(), e.indeterminate.len()))
    }
}

/// Every `ctr/w/` key, linearizably, in pages.
async fn read_all(client: &Client) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    let mut from = PREFIX.as_bytes().to_vec();
    let mut end = PREFIX.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    loop {
        let opts = GetOptions { range_end: end.clone(), limit: 2000, ..Default::default() };
        let page = client.get_with(&from, opts).await?;
        for kv in &page.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(seq) = key.strip_prefix(PREFIX).and_then(|s| s.parse::<u64>().ok()) {
                out.insert(seq, String::from_utf8_lossy(&kv.value).into_owned());
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(kv)) => {
                from = kv.key.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

async fn write_loop(client: Client, events: Arc<Mutex<Events>>, stop: watch::Receiver<bool>) {
    for seq in 1u64.. {
        if *stop.borrow() {
            return;
        }
        let result = client.put(format!("{PREFIX}{seq:010}"), seq.to_string()).await;
        let now = Instant::now();
        {
            let mut e = lock(&events);
            match result {
                Ok(_) => e.acks.push((seq, now)),
                Err(Error::Indeterminate(i)) => {
                    e.indeterminate.push(seq);
                    e.errors.push((now, "writer", format!("indeterminate: {i}"), true));
                }
                Err(err) => e.errors.push((now, "writer", err.to_string(), transient(&err))),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens a session (retrying), campaigns, and heartbeats while leading; opens a new session
/// when the old one is gone.
async fn job_manager(client: Client, events: Arc<Mutex<Events>>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let session = match Session::open(&client, JM_TTL).await {
            Ok(s) => Arc::new(s),
            Err(err) => {
                let t = transient(&err);
                lock(&events).errors.push((Instant::now(), "job manager", format!("session open: {err}"), t));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let election = match LeaderElection::new(&client, session, "ctr", b"jm-0", RevokePolicy::OnExpired) {
            Ok(e) => e,
            Err(err) => {
                lock(&events).errors.push((Instant::now(), "job manager", format!("election: {err}"), false));
                return;
            }
        };
        let mut campaign = election.campaign();
        let mut token: Option<LeaderToken> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = election.resign().await;
                    return;
                }
                ev = campaign.recv() => match ev {
                    Some(LeadershipEvent::Granted(t)) => {
                        lock(&events).grants.push((Instant::now(), t.epoch));
                        token = Some(t);
                    }
                    Some(LeadershipEvent::Revoked(why)) => {
                        lock(&events).revocations.push((Instant::now(), why));
                        token = None;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if let Some(t) = &token {
                        heartbeat(&client, t, &events).await;
                    }
                }
            }
        }
    }
}

/// One fenced write of the leader.
async fn heartbeat(client: &Client, token: &LeaderToken, events: &Mutex<Events>) {
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: b"ctr/jm/heartbeat".to_vec(),
            value: token.epoch.to_string().into_bytes(),
            ..Default::default()
        })),
    };
    let req = pb::TxnRequest { compare: vec![LeaderElection::fence(token)], success: vec![put], ..Default::default() };
    match client.txn(req).await {
        Ok(r) if r.succeeded => lock(events).heartbeats += 1,
        Ok(_) => lock(events).errors.push((Instant::now(), "job manager", "fenced heartbeat refused".into(), false)),
        Err(err) => {
            let t = transient(&err);
            lock(events).errors.push((Instant::now(), "job manager", format!("heartbeat: {err}"), t));
        }
    }
}
