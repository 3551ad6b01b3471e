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
//! Watch fan-out ([`start_watchers`]): one watch stream per watcher (no multiplexing), over 64
//! plain channels spread over the members, the way a user of the raw gRPC API watches.

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Plain channels the generic watchers share (as many as the etcd target's watchers use).
const WATCH_CHANNELS: usize = 64;

/// Lazily connected plain channels, one per member, handed out round-robin.
struct RoundRobin {
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// Channels to `endpoints` (`host:port`), starting at member `start` (so that users with
    /// consecutive numbers start on different members). Plain text only.
    fn new(endpoints: &[String], start: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
        anyhow::ensure!(super::tls::get().is_none(), "the generic client profiles run without --tls");
        let channels = endpoints
            .iter()
            .map(|e| Ok(Endpoint::from_shared(format!("http://{e}"))?.connect_lazy()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { channels, next: AtomicUsize::new(start % endpoints.len()) })
    }

    /// The channel of the next member in turn.
    fn next(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }
}

/// One generic user of Conclave.
pub struct GenericKv(RoundRobin);

impl GenericKv {
    /// A user over `endpoints` (`host:port`), starting at member `start`.
    ///
    /// # Errors
    /// When an endpoint is not a valid URI authority, or TLS is on.
    pub fn new(endpoints: &[String], start: usize) -> anyhow::Result<Self> {
        RoundRobin::new(endpoints, start).map(Self)
    }

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

/// One generic user of etcd: the same calls as the etcd target's own client (a compare-and-swap
/// loop for the counter), each on the next member's plain channel, without retries.
pub struct GenericEtcdKv(RoundRobin);

impl GenericEtcdKv {
    /// A user over `endpoints` (`host:port`), starting at member `start`.
    ///
    /// # Errors
    /// When an endpoint is not a valid URI authority, or TLS is on.
    pub fn new(endpoints: &[String], start: usize) -> anyhow::Result<Self> {
        RoundRobin::new(endpoints, start).map(Self)
    }

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
/// [`WATCH_CHANNELS`] plain channels (see [`spawn_watchers`]).
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
    let channels = RoundRobin::new(endpoints, 0)?;
    let channels: Vec<Channel> = (0..WATCH_CHANNELS.min(n.max(1))).map(|_| channels.next()).collect();
    Ok(spawn_watchers(channels, n, key, tx, api, watch_stream::<Channel>))
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
