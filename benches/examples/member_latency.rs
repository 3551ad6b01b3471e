//! Put, linearizable get and serializable get latency by member, and the ZooKeeper port's
//! setData and getData (right after the write, and again): one sequential client on a plain tonic channel
//! (the generic client's transport), pinned to each member of a fresh 3-member cluster in turn,
//! so a write through a follower (forwarded to the leader) can be told apart from one sent to
//! the leader. The generic profile's put rows mix the two (round-robin: two writes in three go
//! through a follower). A follower's linearizable get asks the leader for a read index (one
//! forwarded call, nothing to replicate): the cost of the hop alone.
//!
//! `CONCLAVE_BIN=target/release/conclave cargo run --release -p conclave-bench --example
//! member_latency` (2 rounds × 3 members × 2,000 puts of 256 bytes after 200 warm-up puts, and
//! as many setData through each member's ZooKeeper port).

use std::time::{Duration, Instant};

use conclave_proto::v1::kv_client::KvClient;
use conclave_proto::v1::{KeyRange, PutRequest, RangeRequest};
use conclave_testkit::{Cluster, ClusterOptions};
use tonic::transport::Endpoint;
use zookeeper_client as zk;

const WARM_UP: usize = 200;
const MEASURED: usize = 2_000;
/// The members' ZooKeeper port (each member on its own loopback IP).
const ZK_PORT: u16 = 21_810;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let c = Cluster::start_with(ClusterOptions {
        nodes: 3,
        env: vec![("CONCLAVE_ZK_ADDR".into(), format!("{{ip}}:{ZK_PORT}"))],
        ..ClusterOptions::default()
    })
    .await?;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    for round in 1..=2 {
        for n in c.nodes() {
            let mut kv = KvClient::new(Endpoint::from_shared(format!("http://{}", n.client_addr))?.connect().await?);
            let mut puts = Vec::with_capacity(MEASURED);
            let mut gets = Vec::with_capacity(MEASURED);
            let mut local = Vec::with_capacity(MEASURED);
            for i in 0..WARM_UP + MEASURED {
                let key = format!("k{}", i % 100).into_bytes();
                let t = Instant::now();
                kv.put(PutRequest { key: key.clone(), value: vec![b'v'; 256], ..Default::default() }).await?;
                let put = t.elapsed();
                let range = KeyRange { key, ..Default::default() };
                let t = Instant::now();
                kv.range(RangeRequest { range: Some(range.clone()), ..Default::default() }).await?;
                let get = t.elapsed();
                let t = Instant::now();
                kv.range(RangeRequest { range: Some(range), serializable: true, ..Default::default() }).await?;
                if i >= WARM_UP {
                    puts.push(put);
                    gets.push(get);
                    local.push(t.elapsed());
                }
            }
            let role = if n.id == leader { "leader" } else { "follower" };
            let zk_addr = format!("{}:{ZK_PORT}", n.ip().expect("node ip"));
            let zk = zk::Client::connector().connect(&zk_addr).await?;
            let path = format!("/member-latency-{}-{round}", n.id);
            zk.create(&path, b"0", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await?;
            let mut sets = Vec::with_capacity(MEASURED);
            let mut zk_gets = Vec::with_capacity(MEASURED);
            let mut zk_gets2 = Vec::with_capacity(MEASURED);
            for i in 0..WARM_UP + MEASURED {
                let t = Instant::now();
                zk.set_data(&path, &[b'v'; 256], None).await?;
                let set = t.elapsed();
                let t = Instant::now();
                zk.get_data(&path).await?;
                let get = t.elapsed();
                let t = Instant::now();
                zk.get_data(&path).await?;
                if i >= WARM_UP {
                    sets.push(set);
                    zk_gets.push(get);
                    zk_gets2.push(t.elapsed());
                }
            }
            println!(
                "round {round}, member {} ({role}), ZooKeeper port: setData {}; getData right after {}; getData again {}",
                n.id,
                summary(sets),
                summary(zk_gets),
                summary(zk_gets2)
            );
            println!(
                "round {round}, member {} ({role}): put {}; get linearizable {}; get serializable {}",
                n.id,
                summary(puts),
                summary(gets),
                summary(local)
            );
        }
    }
    Ok(())
}

/// p50 / p90 / p99 of `lat`, in ms.
fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let ms = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    format!("p50 {:.3} ms, p90 {:.3}, p99 {:.3}", ms(0.5), ms(0.9), ms(0.99))
}
