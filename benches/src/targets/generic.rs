//! "Generic gRPC clients": what a Go, Java or Python user of the public API, or etcd's
//! `benchmark` tool, gets. Plain tonic channels, one per member, each request sent to the next
//! member in turn (round-robin, so two thirds of the writes go through a follower); no
//! leader-following, no custom HTTP/2 channel, no request ids and no retries: a failed request
//! is counted as an error by the load generator, as etcd's `benchmark` counts it.
//!
//! The same load generator drives Conclave ([`GenericKv`], `--conclave-client generic`) and etcd
//! ([`GenericEtcdKv`], `--etcd-client generic`), so that the two compare like with like: on this
//! machine the load generator shares two cores with the members, and a plain tonic channel costs
//! it about twice the CPU per call of the custom channel the other profiles use.
//!
//! Connections ([`Connections`]): by default each user has its own channels (etcd's
//! `benchmark --conns 64 --clients 64`: a service per client process). `--generic-conns N` has
//! the users share N sets of channels, user `i` on set `i mod N`, as `benchmark --conns N` does
//! (and a Go service whose goroutines share one `clientv3` client): requests of several users
//! then leave and arrive together on one connection.
//!
//! Watch fan-out ([`start_watchers`]): one watch stream per watcher (no multiplexing), on one
//! plain channel per member (three connections), the way a user of the raw gRPC API watches.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use conclave_proto::v1::counter_client::CounterClient;
use conclave_proto::v1::kv_client::KvClient;
use conclave_proto::v1::watch_client::WatchClient;
use conclave_proto::v1::{
    watch_request, CounterAddRequest, KeyRange, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::etcd_counter::{counter_outcome, counter_state, counter_txn};
use super::AbortOnDrop;
use super::{BoxFut, Kv, Notification};
use crate::etcdpb::etcdserverpb as etcd;

/// Connection sets the generic users of a target share (`--generic-conns`); unset: one set per
/// user. Set once per run, before the targets start (as `--tls` is).
static SHARED_SETS: OnceLock<usize> = OnceLock::new();

/// Has the generic users of every target started from now on share `sets` connection sets.
pub fn share_connections(sets: usize) {
    let _ = SHARED_SETS.set(sets.max(1));
}

/// Lazily connected plain channels to `endpoints` (`host:port`), one per member. Plain text only.
fn connect(endpoints: &[String]) -> anyhow::Result<Arc<[Channel]>> {
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
    anyhow::ensure!(super::tls::get().is_none(), "the generic client profiles run without --tls");
    endpoints.iter().map(|e| Ok(Endpoint::from_shared(format!("http://{e}"))?.connect_lazy())).collect()
}

/// The plain channels of one target's generic users: a set of one channel per member for each
/// user, or, with [`share_connections`], `N` sets shared by the users, user `i` on set `i mod N`.
pub struct Connections {
    endpoints: Vec<String>,
    shared: Option<usize>,
    sets: Mutex<HashMap<usize, Arc<[Channel]>>>,
}

impl Connections {
    /// The connections of a target serving on `endpoints`, shared as [`share_connections`] said.
    pub fn new(endpoints: &[String]) -> Self {
        Self::with_sets(endpoints, SHARED_SETS.get().copied())
    }

    /// The connections of a target serving on `endpoints`: `shared` sets, or a set per user.
    fn with_sets(endpoints: &[String], shared: Option<usize>) -> Self {
        Self { endpoints: endpoints.to_vec(), shared, sets: Mutex::new(HashMap::new()) }
    }

    /// The channels of user `user`, round-robin from member `user mod members` (so that users
    /// with consecutive numbers start on different members).
    fn user(&self, user: usize) -> anyhow::Result<RoundRobin> {
        let channels = match self.shared {
            None => connect(&self.endpoints)?,
            Some(sets) => {
                let mut known = self.sets.lock().map_err(|_| anyhow::anyhow!("connection sets: lock poisoned"))?;
                match known.entry(user % sets) {
                    Entry::Occupied(set) => set.get().clone(),
                    Entry::Vacant(slot) => slot.insert(connect(&self.endpoints)?).clone(),
                }
            }
        };
        Ok(RoundRobin { next: AtomicUsize::new(user % channels.len()), channels })
    }

    /// Generic user `user` of Conclave.
    ///
    /// # Errors
    /// When an endpoint is not a valid URI authority, or TLS is on.
    pub fn conclave_user(&self, user: usize) -> anyhow::Result<GenericKv> {
        self.user(user).map(GenericKv)
    }

    /// Generic user `user` of etcd.
    ///
    /// # Errors
    /// When an endpoint is not a valid URI authority, or TLS is on.
    pub fn etcd_user(&self, user: usize) -> anyhow::Result<GenericEtcdKv> {
        self.user(user).map(GenericEtcdKv)
    }
}

/// One user's channels, one per member, handed out round-robin.
struct RoundRobin {
    channels: Arc<[Channel]>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// The channel of the next member in turn.
    fn next(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }
}

/// One generic user of Conclave ([`Connections::conclave_user`]).
pub struct GenericKv(RoundRobin);

impl GenericKv {
    fn channel(&self) -> Channel {
        self.0.next()
    }
}

impl Kv for GenericKv {
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let req = PutRequest { key: key.into_bytes(), value, ..Default::default() };
            KvClient::new(self.channel()).put(req).await?;
            Ok(())
        })
    }

    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let range = KeyRange { key: key.into_bytes(), ..Default::default() };
            let req = RangeRequest { range: Some(range), serializable: !linearizable, ..Default::default() };
            let r = KvClient::new(self.channel()).range(req).await?.into_inner();
            anyhow::ensure!(!r.kvs.is_empty(), "key not found");
            Ok(())
        })
    }

    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        Box::pin(async move {
            let req = CounterAddRequest { name: counter, delta: 1, request_id: None };
            CounterClient::new(self.channel()).add(req).await?;
            Ok(1)
        })
    }
}

/// One generic user of etcd ([`Connections::etcd_user`]): the same calls as the etcd target's
/// own client (a compare-and-swap loop for the counter), each on the next member's plain
/// channel, without retries.
pub struct GenericEtcdKv(RoundRobin);

impl GenericEtcdKv {
    fn kv(&self) -> etcd::kv_client::KvClient<Channel> {
        etcd::kv_client::KvClient::new(self.0.next())
    }
}

impl Kv for GenericEtcdKv {
    fn put(&self, key: String, value: Vec<u8>) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.kv().put(etcd::PutRequest { key: key.into_bytes(), value, ..Default::default() }).await?;
            Ok(())
        })
    }

    fn get(&self, key: String, linearizable: bool) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let req = etcd::RangeRequest { key: key.into_bytes(), serializable: !linearizable, ..Default::default() };
            let r = self.kv().range(req).await?.into_inner();
            anyhow::ensure!(!r.kvs.is_empty(), "key not found");
            Ok(())
        })
    }

    fn increment(&self, counter: String) -> BoxFut<'_, anyhow::Result<u32>> {
        Box::pin(async move {
            let key = counter.into_bytes();
            let first = self.kv().range(etcd::RangeRequest { key: key.clone(), ..Default::default() }).await?;
            let (mut value, mut mod_rev) = counter_state(&first.into_inner().kvs);
            for attempt in 1..=10_000u32 {
                let resp = self.kv().txn(counter_txn(&key, value, mod_rev)).await?.into_inner();
                match counter_outcome(resp) {
                    None => return Ok(attempt),
                    Some(seen) => (value, mod_rev) = seen,
                }
            }
            anyhow::bail!("counter increment did not succeed in 10,000 attempts")
        })
    }
}

/// Whose Watch API a generic watcher speaks.
#[derive(Clone, Copy, Debug)]
pub enum WatchApi {
    /// `conclave.v1.Watch`.
    Conclave,
    /// `etcdserverpb.Watch`.
    Etcd,
}

/// Starts `n` watchers of `key` over `endpoints`, each on a watch stream of its own, over
/// one plain channel per member (three connections; watcher `i` on member `i mod 3`'s, see
/// [`spawn_watchers`]).
///
/// # Errors
/// When an endpoint is not a valid URI authority, or TLS is on.
pub fn start_watchers(
    endpoints: &[String],
    n: usize,
    key: String,
    tx: mpsc::UnboundedSender<Notification>,
    api: WatchApi,
) -> anyhow::Result<Box<dyn Send>> {
    Ok(spawn_watchers(connect(endpoints)?.to_vec(), n, key, tx, api, watch_stream::<Channel>))
}

/// Whether a watcher's receiver is still there (sends it one [`Notification`]).
type Notify = Box<dyn Fn() -> bool + Send + Sync>;

/// Starts `n` watchers of `key`, watcher `i` on `channels[i % len]`, each on a watch stream of
/// its own (`open`: [`watch_stream`] for the channel's type); each sends a [`Notification`] per
/// response carrying changes. A broken stream is opened again after 100 ms (no resume logic:
/// changes meanwhile are missed, and counted so). The watchers stop when the returned value is
/// dropped.
pub fn spawn_watchers<C: Clone + Send + 'static>(
    channels: Vec<C>,
    n: usize,
    key: String,
    tx: mpsc::UnboundedSender<Notification>,
    api: WatchApi,
    open: fn(C, Vec<u8>, WatchApi, Notify) -> BoxFut<'static, bool>,
) -> Box<dyn Send> {
    let tasks: Vec<AbortOnDrop> = (0..n)
        .map(|i| {
            let (ch, tx, key) = (channels[i % channels.len()].clone(), tx.clone(), key.clone().into_bytes());
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    let tx = tx.clone();
                    if open(ch.clone(), key.clone(), api, Box::new(move || tx.send((i, Instant::now())).is_ok())).await
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }))
        })
        .collect();
    Box::new(tasks)
}

/// One watch stream on `key` over `ch` (a plain tonic channel, or Conclave's own channel for
/// the etcd target's native watchers): `notify` for each response with changes. `true` when
/// `notify` found the receiver gone, `false` when the stream ended or failed.
pub fn watch_stream<C>(ch: C, key: Vec<u8>, api: WatchApi, notify: Notify) -> BoxFut<'static, bool>
where
    C: tonic::client::GrpcService<tonic::body::Body> + Send + 'static,
    C::Error: Into<tonic::codegen::StdError>,
    C::Future: Send,
    C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    Box::pin(async move {
        match api {
            WatchApi::Conclave => {
                let range = KeyRange { key, ..Default::default() };
                let create = WatchRequest {
                    request: Some(watch_request::Request::Create(WatchCreateRequest {
                        range: Some(range),
                        ..Default::default()
                    })),
                };
                let (req_tx, req_rx) = mpsc::channel(1);
                let _ = req_tx.send(create).await;
                let opened = WatchClient::new(ch).watch(ReceiverStream::new(req_rx)).await;
                relay(opened, |r| !r.events.is_empty(), &notify).await
            }
            WatchApi::Etcd => {
                let create = etcd::WatchCreateRequest { key, ..Default::default() };
                let request = etcd::WatchRequest {
                    request_union: Some(etcd::watch_request::RequestUnion::CreateRequest(create)),
                };
                let (req_tx, req_rx) = mpsc::channel(1);
                let _ = req_tx.send(request).await;
                let opened = etcd::watch_client::WatchClient::new(ch).watch(ReceiverStream::new(req_rx)).await;
                relay(opened, |r| !r.events.is_empty(), &notify).await
            }
        }
    })
}

/// Relays one opened watch stream (see [`watch_stream`]).
async fn relay<T>(
    opened: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    has_changes: fn(&T) -> bool,
    notify: &Notify,
) -> bool {
    let Ok(stream) = opened else { return false };
    let mut stream = stream.into_inner();
    while let Ok(Some(r)) = stream.message().await {
        if has_changes(&r) && !notify() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Vec<String> {
        (1..=3).map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The distinct channel sets `users` users get.
    fn distinct_sets(c: &Connections, users: usize) -> usize {
        let mut sets: Vec<Arc<[Channel]>> = Vec::new();
        for u in 0..users {
            let set = c.user(u).expect("a user").channels;
            if !sets.iter().any(|s| Arc::ptr_eq(s, &set)) {
                sets.push(set);
            }
        }
        sets.len()
    }

    #[tokio::test]
    async fn users_share_as_many_connection_sets_as_asked() {
        let shared = Connections::with_sets(&endpoints(), Some(8));
        assert_eq!(distinct_sets(&shared, 64), 8);
        let (a, b, c) = (shared.user(3).expect("user"), shared.user(11).expect("user"), shared.user(4).expect("user"));
        assert!(Arc::ptr_eq(&a.channels, &b.channels), "users 3 and 11 share set 3");
        assert!(!Arc::ptr_eq(&a.channels, &c.channels), "users 3 and 4 do not");
        // Users sharing a set still start on different members.
        assert_ne!(a.next.load(Ordering::Relaxed), b.next.load(Ordering::Relaxed));

        let own = Connections::with_sets(&endpoints(), None);
        assert_eq!(distinct_sets(&own, 64), 64, "by default every user has its own set");
    }
}
