//! Backup and restore with real processes: `snapshot save` from a live member while writes go
//! on, `conclave restore` of three new members from the file, the new cluster serving the same
//! keys (values, revisions, versions) and counters and continuing the revisions, and `hashkv`
//! agreeing between the old and the new cluster at the snapshot's revision. Plus a measurement
//! of save and restore for 100k keys (printed, not asserted).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conclave_client::proto::{request_op, PutRequest, RequestOp, TxnRequest};
use conclave_client::{Client, GetOptions, RangeResult};

use crate::{assert_no_panics, binary, cluster};

const T: Duration = Duration::from_secs(30);

/// A cluster of `n` members restored from `file` under `dir`: (client endpoints, processes).
fn restore_and_start(file: &Path, dir: &Path, n: u64) -> anyhow::Result<(Vec<String>, Vec<crate::ServerProcess>)> {
    // An IP of its own (not 127.0.0.1, whose outgoing connections take ephemeral ports too).
    let ip = Ipv4Addr::new(127, 0, 0, 251);
    let free = conclave_testkit::free_addrs(ip, 2 * n as usize)?;
    let addrs: Vec<(String, String)> = free.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let initial: Vec<String> = addrs.iter().enumerate().map(|(i, (_, peer))| format!("{}={peer}", i + 1)).collect();
    let initial = initial.join(",");
    let mut procs = Vec::new();
    for (i, (client_addr, peer)) in addrs.iter().enumerate() {
        let (id, data) = ((i + 1).to_string(), dir.join(format!("restored{}", i + 1)));
        let out = Command::new(binary())
            .arg("restore")
            .arg(file)
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-id", &id, "--initial-cluster", &initial])
            .output()?;
        anyhow::ensure!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::File::create(dir.join(format!("restored{id}.log")))?;
        let args = ["--node-id", &id, "--client-addr", client_addr, "--peer-addr", peer, "--initial-cluster", &initial];
        let mut serve = Command::new(binary());
        serve.arg("serve").arg("--data-dir").arg(&data).args(args).stdout(Stdio::null()).stderr(log);
        procs.push(crate::ServerProcess(serve.spawn()?));
    }
    Ok((addrs.into_iter().map(|(c, _)| c).collect(), procs))
}

/// Every key, at `revision` (0: current), linearizable.
async fn everything(client: &Client, revision: u64) -> anyhow::Result<RangeResult> {
    Ok(client.get_with("", GetOptions { prefix: true, revision, ..GetOptions::default() }).await?)
}

/// Each endpoint's hash at `revision`, waiting until every one can answer.
async fn hashes(client: &Client, endpoints: &[String], revision: u64) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for ep in endpoints {
        let h =
            conclave_testkit::wait_for("hashkv", T, || async { client.hash_kv_of(ep, revision).await.ok() }).await?;
        assert_eq!(h.revision, revision);
        out.push(h.hash);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_saved_live_restores_a_new_cluster_with_the_same_data_and_hash() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    let client = c.client().await?;
    for i in 0..300 {
        client.put(format!("k{i:03}"), format!("v{i}")).await?;
    }
    for i in 0..50 {
        client.put(format!("k{i:03}"), format!("again{i}")).await?;
    }
    client.delete("k299", false).await?;
    client.counter_add("hits", 42).await?;
    let session = client.session_open(Duration::from_secs(60)).await?;
    client.put_ephemeral("owned", "by-session", session).await?;

    // Writes keep going while the snapshot is taken from a member (no pause).
    let writer = {
        let client = c.client().await?;
        tokio::spawn(async move {
            for i in 0..100 {
                client.put(format!("during{i:03}"), "x").await?;
            }
            anyhow::Ok(())
        })
    };
    let file = c.dir.join("backup.db");
    let saved = client.snapshot_save(&c.node(2).client_addr, &file).await?;
    writer.await??;
    assert!(!Path::new(&format!("{}.tmp", file.display())).exists(), "the temp file was renamed");
    assert_eq!(std::fs::metadata(&file)?.len(), saved.size);
    assert!(saved.revision >= 352, "the snapshot holds at least the writes made before it: {saved:?}");
    let old = everything(&client, saved.revision).await?;
    let old_hashes = hashes(&client, &c.endpoints(), saved.revision).await?;
    assert!(old_hashes.iter().all(|h| *h == old_hashes[0]), "old members disagree: {old_hashes:?}");

    let dir = c.dir.join("new");
    std::fs::create_dir_all(&dir)?;
    let (endpoints, _procs) = restore_and_start(&file, &dir, 3)?;
    let refused = Command::new(binary())
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.join("restored1"))
        .args(["--node-id", "1", "--initial-cluster", "1=127.0.0.1:1"])
        .output()?;
    assert!(!refused.status.success(), "a non-empty data dir is refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));

    let restored = Client::connect(endpoints.clone()).await?;
    let new = conclave_testkit::wait_for("the restored cluster to serve", T, || async {
        everything(&restored, 0).await.ok()
    })
    .await?;
    assert_eq!(new.revision, saved.revision, "the new cluster starts at the snapshot's revision");
    assert_eq!(new.kvs, old.kvs, "every key, value, revision and version as at the snapshot");
    assert_eq!(new.kvs.iter().find(|kv| kv.key == b"k007").map(|kv| kv.version), Some(2));
    assert!(new.kvs.iter().all(|kv| kv.key != b"k299"));
    assert_eq!(restored.counter_get("hits", false).await?.value, 42);
    let new_hashes = hashes(&restored, &endpoints, saved.revision).await?;
    assert_eq!(new_hashes, old_hashes, "hashkv at the snapshot revision: old and new clusters agree");
    // A new cluster id: the same on every restored member, not the original's.
    let old_id = client.status_of(&c.node(1).client_addr).await?.cluster_id;
    let mut new_ids = BTreeSet::new();
    for ep in &endpoints {
        new_ids.insert(restored.status_of(ep).await?.cluster_id);
    }
    assert_eq!(new_ids.len(), 1, "restored members agree on the cluster id: {new_ids:?}");
    assert!(!old_id.is_empty() && !new_ids.contains(&old_id), "restore made a new cluster id ({old_id} before)");
    let next = restored.put("after-restore", "y").await?;
    assert_eq!(next, saved.revision + 1, "revisions continue from the snapshot's");
    assert_no_panics(&c);
    Ok(())
}

/// Writes `n` keys of 100 bytes in transactions of 128 puts, 4 at a time.
async fn load(client: &Client, n: usize) -> anyhow::Result<()> {
    let put = |i: usize| RequestOp {
        request: Some(request_op::Request::Put(PutRequest {
            key: format!("key{i:06}").into_bytes(),
            value: vec![b'v'; 100],
            ..PutRequest::default()
        })),
    };
    let batches: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(128).map(<[usize]>::to_vec).collect();
    for group in batches.chunks(4) {
        let txns = group
            .iter()
            .map(|b| client.txn(TxnRequest { success: b.iter().map(|i| put(*i)).collect(), ..TxnRequest::default() }));
        for r in futures::future::join_all(txns).await {
            r?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn measure_save_and_restore_of_100k_keys() -> anyhow::Result<()> {
    const KEYS: usize = 100_000;
    let c = cluster(3, &[]).await?;
    let client = c.client().await?;
    load(&client, KEYS).await?;
    let file: PathBuf = c.dir.join("backup-100k.db");
    let started = Instant::now();
    let saved = client.snapshot_save(&c.node(1).client_addr, &file).await?;
    let save_took = started.elapsed();
    let dir = c.dir.join("new");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let (endpoints, _procs) = restore_and_start(&file, &dir, 3)?;
    let restore_took = started.elapsed();
    let restored = Client::connect(endpoints).await?;
    let count = conclave_testkit::wait_for("the restored cluster to serve", T, || async {
        restored.get_with("key", GetOptions { prefix: true, count_only: true, ..GetOptions::default() }).await.ok()
    })
    .await?;
    let serving_took = started.elapsed();
    assert_eq!(count.count, KEYS as u64);
    println!(
        "backup of {KEYS} keys (100-byte values): {} bytes ({:.1} MiB), revision {}; snapshot save {:?}; \
         restore of 3 members {:?}; restored cluster serving a linearizable count after {:?}",
        saved.size,
        saved.size as f64 / (1024.0 * 1024.0),
        saved.revision,
        save_took,
        restore_took,
        serving_took
    );
    Ok(())
}
