//! Membership changes with real processes: a learner is added, refused promotion until it has
//! caught up, started with `--join`, promoted, serves, and is removed; a removal that would leave
//! no live quorum is refused; a member whose disk is wiped under write load rejoins by itself.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_client::{Client, Error, Reason};

use crate::{assert_no_panics, binary, cluster};

const T: Duration = Duration::from_secs(30);

fn voters(members: &[conclave_client::proto::Member]) -> BTreeSet<u64> {
    members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_joins_is_promoted_when_caught_up_and_is_removed() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    let client = c.client().await?;
    for i in 0..200 {
        client.put(format!("k{i}"), "v").await?;
    }
    let ip: Ipv4Addr = c.node(1).client_addr.split(':').next().unwrap_or("127.0.0.1").parse()?;
    let [peer, client_addr] = crate::two_free_addrs(ip)?;
    let members = client.member_add(4, &peer, &client_addr).await?;
    assert!(members.iter().any(|m| m.id == 4 && !m.voter), "added as a learner: {members:?}");
    // Not started yet: it holds nothing, so it cannot be promoted.
    let early = client.member_promote(4).await.expect_err("an empty learner is not promoted");
    assert_eq!(early.reason(), Some(Reason::LearnerNotReady), "{early:?}");
    // Adding the same id again is refused.
    let again = client.member_add(4, &peer, &client_addr).await.expect_err("duplicate id");
    assert_eq!(again.reason(), Some(Reason::MemberExists), "{again:?}");

    let data = c.dir.join("node4");
    let log = std::fs::File::create(c.dir.join("node4.log"))?;
    let _node4 = crate::ServerProcess(
        Command::new(binary())
            .args(["serve", "--node-id", "4", "--data-dir"])
            .arg(&data)
            .args(["--client-addr", &client_addr, "--peer-addr", &peer, "--join", &c.endpoints().join(",")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let members = conclave_testkit::wait_for("the learner to catch up and be promoted", T, || async {
        match client.member_promote(4).await {
            Ok(m) => Some(Ok(m)),
            Err(e) if e.reason() == Some(Reason::LearnerNotReady) => None,
            Err(e) => Some(Err(e)),
        }
    })
    .await??;
    assert_eq!(voters(&members), BTreeSet::from([1, 2, 3, 4]));
    // The new voter serves reads of everything and takes writes.
    let via4 = Client::connect(vec![client_addr.clone()]).await?;
    assert!(via4.get("k199").await?.is_some());
    via4.put("from-4", "x").await?;
    let node4_log = std::fs::read_to_string(c.dir.join("node4.log"))?;
    assert!(node4_log.contains("joined as a learner"), "{node4_log}");

    let members = client.member_remove(4, false).await?;
    assert_eq!(voters(&members), BTreeSet::from([1, 2, 3]));
    assert!(!members.iter().any(|m| m.id == 4));
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_voter_that_would_leave_no_live_quorum_is_refused() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let client = c.client().await?;
    let leader = c.wait_for_leader(T).await?;
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    c.kill(others[0])?;
    let refused = client.member_remove(others[1], false).await.expect_err("no live quorum would remain");
    assert_eq!(refused.reason(), Some(Reason::QuorumAtRisk), "{refused:?}");
    assert!(matches!(refused, Error::Status { code: tonic::Code::FailedPrecondition, .. }));
    // Still a 3-voter cluster, still serving.
    assert_eq!(voters(&client.member_list().await?).len(), 3);
    client.put("still", "serving").await?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_wiped_under_write_load_rejoins_without_losing_acknowledged_writes() -> anyhow::Result<()> {
    let mut c = cluster(3, &["--log", "info,conclave_server::node=debug"]).await?;
    let client = c.client().await?;
    crate::wait_for_registrations(&c, 3).await?;
    let leader = c.wait_for_leader(T).await?;
    let victim = (1..=3).find(|i| *i != leader).unwrap_or(1);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 5_000 {
                    let key = format!("w{w}-{i}");
                    if client.put(&key, "v").await.is_ok() {
                        acked.lock().map(|mut a| a.push(key)).ok();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    conclave_testkit::wait_for("writes before the fault", T, || async {
        (acked.lock().map(|a| a.len()).unwrap_or(0) >= 200).then_some(())
    })
    .await?;
    c.kill(victim)?;
    let dir = c.node(victim).data_dir.clone();
    std::fs::remove_dir_all(&dir)?;
    std::fs::create_dir_all(&dir)?;
    c.restart(victim)?;
    let before = acked.lock().map(|a| a.len()).unwrap_or(0);
    conclave_testkit::wait_for("the wiped member to be a voter again", T, || async {
        let leader = c.wait_for_leader(T).await.ok()?;
        let st = c.status(leader).await.ok()?;
        let log = std::fs::read_to_string(&c.node(victim).log_path).ok()?;
        (voters(&st.members).len() == 3 && log.contains("rejoined")).then_some(())
    })
    .await
    .map_err(|e| {
        let log = std::fs::read_to_string(&c.node(victim).log_path).unwrap_or_default();
        let others: String =
            c.nodes().iter().map(|n| std::fs::read_to_string(&n.log_path).unwrap_or_default()).collect();
        let others: String = others
            .lines()
            .filter(|l| l.contains("rejoin") || l.contains("learner") || l.contains("panicked") || l.contains("assert"))
            .collect::<Vec<_>>()
            .join("\n");
        anyhow::anyhow!("{e}; the wiped member's log:\n{log}\nmembership lines:\n{others}")
    })?;
    conclave_testkit::wait_for("writes after the rejoin", T, || async {
        (acked.lock().map(|a| a.len()).unwrap_or(0) >= before + 200).then_some(())
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let resp = client
        .get_with("w", conclave_client::GetOptions { prefix: true, keys_only: true, ..Default::default() })
        .await?;
    let stored: BTreeSet<Vec<u8>> = resp.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(k.as_bytes())).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // The rejoined member holds them too.
    let last = client.put("final", "x").await?;
    c.wait_for_revision(victim, last, T).await?;
    assert_no_panics(&c);
    Ok(())
}
