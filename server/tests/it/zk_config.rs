//! `/zookeeper/config` watches on real processes: Curator's `EnsembleTracker` (Flink's HA runs
//! it) watches the node and re-reads the ensemble when it fires, so a membership change must
//! fire it, once per watch, and a reconnecting client's `setWatches` must set it again instead
//! of reporting the node deleted.

use std::net::Ipv4Addr;
use std::time::Duration;

use conclave_proto::zookeeper::{event, op};
use conclave_server::zk::codec::Reader;

use crate::assert_no_panics;
use crate::zookeeper::{new_session, zk_addr, zk_cluster_with, Zk};

const CONFIG: &str = "/zookeeper/config";

/// `/zookeeper/config`'s text as read through `zk`, setting a watch when `watch`.
async fn config(zk: &mut Zk, watch: bool) -> anyhow::Result<String> {
    let r = zk.read(op::GET_DATA, CONFIG, watch).await?;
    anyhow::ensure!(r.err == 0, "getData {CONFIG}: error {}", r.err);
    Ok(String::from_utf8(Reader::new(&r.body).buffer()?.unwrap_or_default().to_vec())?)
}

/// Waits (bounded) until `zk` has received the config's NodeDataChanged event; fails on any
/// other event about the node.
async fn config_changed(zk: &mut Zk) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let about_config: Vec<i32> = zk.events.iter().filter(|(_, p)| p == CONFIG).map(|(k, _)| *k).collect();
        anyhow::ensure!(
            about_config.iter().all(|k| *k == event::NODE_DATA_CHANGED),
            "unexpected events on {CONFIG}: {about_config:?}"
        );
        if !about_config.is_empty() {
            anyhow::ensure!(about_config.len() == 1, "a one-time watch fired {} times", about_config.len());
            zk.events.clear();
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no NodeDataChanged on {CONFIG} within 20 s");
        // Any request lets the events that came meanwhile be read.
        zk.read(op::EXISTS, "/", false).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_watch_fires_when_the_membership_changes() -> anyhow::Result<()> {
    let z = zk_cluster_with(&[]).await?;
    let client = z.c.client().await?;
    let mut a = Zk::connect(&zk_addr(&z, 1), new_session()).await?;
    let mut b = Zk::connect(&zk_addr(&z, 3), new_session()).await?;
    // Every member registers its ZooKeeper address after it starts: wait for all three.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let all = loop {
        let text = config(&mut a, false).await?;
        if text.matches(';').count() == 3 {
            break text;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "ZooKeeper addresses missing: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!all.contains("server.4="), "{all}");

    // a watches with getData, b with exists and then re-sends it with setWatches (as a client
    // does after a reconnect): ZooKeeper's reserved node must not be reported deleted.
    config(&mut a, true).await?;
    assert_eq!(b.read(op::EXISTS, CONFIG, true).await?.err, 0);
    let zxid = b.last_zxid;
    let r = b.call(op::SET_WATCHES, |w| {
        w.long(zxid).strings(&[CONFIG]).strings::<&str>(&[]).strings::<&str>(&[]);
    });
    assert_eq!(r.await?.err, 0);
    assert!(b.events.is_empty(), "setWatches on an unchanged config: {:?}", b.events);

    // A learner is added: both watches fire, once.
    let ip: Ipv4Addr = z.c.node(1).client_addr.split(':').next().unwrap_or("127.0.0.1").parse()?;
    let [peer, client_addr] = crate::two_free_addrs(ip)?;
    client.member_add(4, &peer, &client_addr).await?;
    config_changed(&mut a).await?;
    config_changed(&mut b).await?;
    let with_learner = config(&mut a, true).await?;
    assert!(with_learner.contains("server.4=") && with_learner.contains(":observer"), "{with_learner}");

    // Fired watches are gone: only a's new one fires when the learner is removed.
    client.member_remove(4, false).await?;
    config_changed(&mut a).await?;
    let without = config(&mut a, false).await?;
    assert!(!without.contains("server.4="), "{without}");
    b.read(op::EXISTS, "/", false).await?;
    assert!(b.events.is_empty(), "b's one-time watch fired again: {:?}", b.events);
    assert_no_panics(&z.c);
    Ok(())
}
