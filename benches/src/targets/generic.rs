//! Conclave through a "generic gRPC client": what a Go, Java or Python user of the public API,
//! or etcd's `benchmark` tool, gets. Plain tonic channels generated from `conclave-proto`, one
//! per member, each request sent to the next member in turn (round-robin, so two thirds of the
//! writes go through a follower); no leader-following, no custom HTTP/2 channel, no request ids
//! and no retries: a failed request is counted as an error by the load generator, as etcd's
//! `benchmark` counts it.

use std::sync::atomic::{AtomicUsize, Ordering};

use conclave_proto::v1::counter_client::CounterClient;
use conclave_proto::v1::kv_client::KvClient;
use conclave_proto::v1::{CounterAddRequest, KeyRange, PutRequest, RangeRequest};
use tonic::transport::{Channel, Endpoint};

use super::{BoxFut, Kv};

/// One generic user: a lazily connected channel per member, requests spread round-robin.
pub struct GenericKv {
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl GenericKv {
    /// A user over `endpoints` (`host:port`), starting at member `start` (so that users with
    /// consecutive numbers start on different members).
    ///
    /// # Errors
    /// When an endpoint is not a valid URI authority.
    pub fn new(endpoints: &[String], start: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
        let channels = endpoints
            .iter()
            .map(|e| Ok(Endpoint::from_shared(format!("http://{e}"))?.connect_lazy()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { channels, next: AtomicUsize::new(start % endpoints.len()) })
    }

    /// The channel of the next member in turn.
    fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
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
