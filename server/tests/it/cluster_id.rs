//! Cluster ids with real processes: a member whose data dir comes from another cluster is
//! refused by the cluster it is started in (and refuses it), instead of having its log silently
//! overwritten or disrupting the cluster's elections.

use std::process::{Command, Stdio};
use std::time::Duration;

use conclave_client::{Client, GetOptions};

use crate::{assert_no_panics, binary, cluster, wait_for_registrations};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_another_clusters_data_dir_is_refused() -> anyhow::Result<()> {
    // Cluster B: written to, then stopped; its node 3's data dir is the impostor's.
    let mut b = cluster(3, &[]).await?;
    wait_for_registrations(&b, 3).await?;
    b.client().await?.put("only-in-b", "b").await?;
    // The put is acknowledged once a majority holds it: node 3 (the impostor-to-be) may not yet.
    let b3 = Client::connect(vec![b.node(3).client_addr.clone()]).await?;
    conclave_testkit::wait_for("B's node 3 to apply the put", T, || async {
        let opts = GetOptions { serializable: true, ..Default::default() };
        b3.get_with("only-in-b", opts).await.ok().filter(|r| !r.kvs.is_empty()).map(|_| ())
    })
    .await?;
    for id in 1..=3 {
        b.stop(id)?;
    }
    // Cluster A: its node 3 is replaced by a process with A's addresses and B's data.
    let mut a = cluster(3, &[]).await?;
    wait_for_registrations(&a, 3).await?;
    let client = a.client().await?;
    let a_id = client.status_of(&a.node(1).client_addr).await?.cluster_id;
    a.kill(3)?;
    client.put("only-in-a", "a").await?;
    let n3 = a.node(3);
    let initial: Vec<String> = a.nodes().iter().map(|n| format!("{}={}", n.id, n.peer_addr)).collect();
    let log_path = a.dir.join("impostor.log");
    let _impostor = crate::ServerProcess(
        Command::new(binary())
            .args(["serve", "--node-id", "3", "--data-dir"])
            .arg(&b.node(3).data_dir)
            .args(["--client-addr", &n3.client_addr, "--peer-addr", &n3.peer_addr])
            .args(["--initial-cluster", &initial.join(",")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let impostor = Client::connect(vec![n3.client_addr.clone()]).await?;
    let local = |key: &'static str| {
        let impostor = impostor.clone();
        async move {
            let opts = GetOptions { serializable: true, ..Default::default() };
            impostor.get_with(key, opts).await.map(|r| !r.kvs.is_empty()).unwrap_or(false)
        }
    };
    // Either it refuses cluster A's leader (by cluster id), or A's log reaches it.
    conclave_testkit::wait_for("cluster A's leader to reach the impostor", T, || async {
        let log = std::fs::read_to_string(&log_path).ok()?;
        (log.contains("refused a peer message from another cluster") || local("only-in-a").await).then_some(())
    })
    .await?;
    assert!(!local("only-in-a").await, "cluster A's writes were replicated into another cluster's log");
    assert!(local("only-in-b").await, "the impostor keeps its own data");
    let status = impostor.status_of(&n3.client_addr).await?;
    assert!(!status.cluster_id.is_empty() && status.cluster_id != a_id, "B's id kept: {status:?}");
    // Cluster A goes on serving with its two members.
    client.put("still-serving", "a").await?;
    assert_no_panics(&a);
    Ok(())
}
