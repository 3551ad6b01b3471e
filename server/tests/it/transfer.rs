//! Leadership transfer with real processes: `move-leader` to a named voter and to the most
//! up-to-date one, refusals, and SIGTERM of the leader (it hands off before it exits), each
//! under 8 writers that must see no error and lose no acknowledged write. The longest gap
//! between acknowledged writes is printed (measured, not asserted: benches/ owns figures).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_client::{Client, Error};
use conclave_testkit::Cluster;

use crate::{assert_no_panics, cluster, wait_for_registrations};

const T: Duration = Duration::from_secs(30);
const WRITERS: usize = 8;

/// Closed-loop writers recording every acknowledged key (with its time) and every error.
struct Writers {
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(client: &Client) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..WRITERS)
            .map(|w| {
                let (client, acked, errors, stop) = (client.clone(), acked.clone(), errors.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && i < 20_000 {
                        let key = format!("t{w}-{i}");
                        match client.put(&key, "v").await {
                            Ok(_) => acked.lock().map(|mut a| a.push((Instant::now(), key))).unwrap_or(()),
                            Err(e) => errors.lock().map(|mut a| a.push(format!("{key}: {e}"))).unwrap_or(()),
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Self { acked, errors, stop, tasks }
    }

    fn count(&self) -> usize {
        self.acked.lock().map(|a| a.len()).unwrap_or(0)
    }

    async fn wait_for_more(&self, n: usize) -> anyhow::Result<()> {
        let target = self.count() + n;
        conclave_testkit::wait_for("more acknowledged writes", T, || async { (self.count() >= target).then_some(()) })
            .await
    }

    /// Stops the writers; checks every acknowledged write is stored and nothing failed; returns
    /// the longest gap between two acknowledgements.
    async fn finish(self, client: &Client) -> anyhow::Result<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await?;
        }
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        assert!(errors.is_empty(), "{} writes failed, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
        let mut acked = self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        acked.sort();
        let resp = client
            .get_with("t", conclave_client::GetOptions { prefix: true, keys_only: true, ..Default::default() })
            .await?;
        let stored: BTreeSet<Vec<u8>> = resp.kvs.into_iter().map(|kv| kv.key).collect();
        let lost: Vec<&String> = acked.iter().map(|(_, k)| k).filter(|k| !stored.contains(k.as_bytes())).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost: {:?}",
            lost.len(),
            acked.len(),
            &lost[..5.min(lost.len())]
        );
        Ok(acked.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or_default())
    }
}

async fn leader_seen_by(c: &Cluster, id: u64) -> anyhow::Result<u64> {
    Ok(c.status(id).await?.leader_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn move_leader_hands_off_to_the_named_voter_without_failing_a_write() -> anyhow::Result<()> {
    let c = cluster(3, &[]).await?;
    wait_for_registrations(&c, 3).await?;
    let client = c.client().await?;
    let old = c.wait_for_leader(T).await?;
    let target = (1..=3).find(|i| *i != old).unwrap_or(1);
    let writers = Writers::start(&client);
    writers.wait_for_more(300).await?;

    let started = Instant::now();
    let new = client.move_leader(Some(target)).await?;
    let took = started.elapsed();
    assert_eq!(new, target, "leadership went to the named voter");
    for id in 1..=3 {
        let seen = conclave_testkit::wait_for("every member to follow the new leader", T, || async {
            leader_seen_by(&c, id).await.ok().filter(|l| *l == target)
        })
        .await?;
        assert_eq!(seen, target);
    }
    writers.wait_for_more(300).await?;

    // Without a target: the most up-to-date voter other than the leader.
    let third = client.move_leader(None).await?;
    assert!(third != target, "moved away from {target}: {third}");
    assert!((1..=3).contains(&third));
    writers.wait_for_more(300).await?;

    // Refusals: the leader itself (asked again if an election moved leadership meanwhile), a
    // non-member.
    let mut refused = None;
    for _ in 0..5 {
        let leader = c.wait_for_leader(T).await?;
        match client.move_leader(Some(leader)).await {
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(now) => assert_eq!(now, leader, "a transfer to {leader} happened: it did not lead when asked"),
        }
    }
    let refused = refused.expect("the leader refuses to hand leadership to itself");
    assert!(matches!(refused, Error::Status { code: tonic::Code::InvalidArgument, .. }), "{refused:?}");
    let refused = client.move_leader(Some(42)).await.expect_err("not a member");
    assert!(matches!(refused, Error::Status { code: tonic::Code::InvalidArgument, .. }), "{refused:?}");

    let gap = writers.finish(&client).await?;
    println!("move-leader took {took:?}; longest gap between acknowledged writes {gap:?}");

    assert_no_panics(&c);
    Ok(())
}

/// A rolling restart: SIGTERM each member in turn (the leader first), restart it, wait until
/// it serves again. A stopping leader hands off before it exits: when its process is gone, the
/// others already follow a new leader (without the hand-off they still name the dead one for
/// an election timeout).
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_hands_leadership_off_and_fails_no_write() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    wait_for_registrations(&c, 3).await?;
    let client = c.client().await?;
    let writers = Writers::start(&client);
    writers.wait_for_more(300).await?;

    let first = c.wait_for_leader(T).await?;
    let order: Vec<u64> = std::iter::once(first).chain((1..=3).filter(|i| *i != first)).collect();
    for id in order {
        let leader = c.wait_for_leader(T).await?;
        c.stop(id)?;
        if id == leader {
            for other in (1..=3).filter(|i| *i != id) {
                let seen = leader_seen_by(&c, other).await?;
                let log = c.node(id).log();
                let hand_off: Vec<&str> =
                    log.lines().filter(|l| l.contains("transfer") || l.contains("hand")).collect();
                assert!(
                    seen != id && seen != 0,
                    "node {other} still names node {seen} as leader after leader {id} exited: it did not hand off; \
                     its log: {hand_off:#?}"
                );
            }
        }
        writers.wait_for_more(100).await?;
        c.restart(id)?;
        conclave_testkit::wait_for("the restarted member to serve", T, || async {
            let st = c.status(id).await.ok()?;
            (st.leader_id != 0).then_some(())
        })
        .await?;
        writers.wait_for_more(100).await?;
    }
    let gap = writers.finish(&client).await?;
    println!("rolling restart of 3 members: longest gap between acknowledged writes {gap:?}");
    assert_no_panics(&c);
    Ok(())
}

/// With 5 voters the old leader's vote and the target's own are not a quorum: the target also
/// needs a follower whose lease has run out. The transfer still completes, without a failed write.
#[tokio::test(flavor = "multi_thread")]
async fn move_leader_in_a_five_voter_cluster() -> anyhow::Result<()> {
    let c = cluster(5, &[]).await?;
    wait_for_registrations(&c, 5).await?;
    let client = c.client().await?;
    let old = c.wait_for_leader(T).await?;
    let target = (1..=5).rev().find(|i| *i != old).unwrap_or(1);
    let writers = Writers::start(&client);
    writers.wait_for_more(200).await?;
    let started = Instant::now();
    // With 5 voters another member can win the election the target was told to start (seen on a
    // loaded machine): that is refused TRANSFER_FAILED, and a retry moves it from the new leader.
    let mut attempts = 0;
    let new = loop {
        match client.move_leader(Some(target)).await {
            Err(e) if e.reason() == Some(conclave_client::Reason::TransferFailed) && attempts < 3 => {
                println!("move-leader to {target}: {e}; retrying");
                attempts += 1;
            }
            other => break other?,
        }
    };
    let took = started.elapsed();
    assert_eq!(new, target);
    writers.wait_for_more(200).await?;
    let gap = writers.finish(&client).await?;
    println!("5 voters: move-leader took {took:?}; longest gap between acknowledged writes {gap:?}");
    assert_no_panics(&c);
    Ok(())
}

/// Kills every follower of a 3-member cluster, then sends a write the leader appends but can
/// never commit. Returns the leader, a client of it and the write's task.
async fn isolated_leader_with_a_write_in_flight(
    c: &mut Cluster,
) -> anyhow::Result<(u64, Client, tokio::task::JoinHandle<conclave_client::Result<u64>>)> {
    wait_for_registrations(c, 3).await?;
    // The leader may change between finding it and killing the others (a loaded machine): then
    // the survivor is a follower; bring the others back and try again.
    // The client is made (and has written) while the cluster is whole: a client made after the
    // kills may spend its first calls on members it cannot reach.
    let mut attempts = 0;
    let (leader, client) = loop {
        let leader = c.wait_for_leader(T).await?;
        let client = c.client_of(leader).await?;
        client.put("before", "v").await?;
        for id in (1..=3).filter(|id| *id != leader) {
            c.kill(id)?;
        }
        if c.status(leader).await?.role == "leader" {
            break (leader, client);
        }
        attempts += 1;
        anyhow::ensure!(attempts < 3, "the leader kept changing while its followers were killed");
        for id in (1..=3).filter(|id| *id != leader) {
            c.restart(id)?;
        }
    };
    let appended = c.status(leader).await?.last_log_index;
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.put("stuck", "v").await }
    });
    // Usually the write is appended at once. In about one full `it` run in three it was not
    // within 30 s (cause not found: perhaps queued behind a batch proposed just before the
    // followers died, which cannot commit either); it is uncommitted and unanswered all the
    // same, so the test goes on after a bounded wait and says so.
    let appended = conclave_testkit::wait_for("the write to reach the isolated leader's log", T / 3, || async {
        (c.status(leader).await.ok()?.last_log_index > appended).then_some(())
    })
    .await;
    if let Err(e) = appended {
        println!("{e} (the write finished: {}); going on", stuck.is_finished());
    }
    Ok((leader, client, stuck))
}

/// A leader that has lost its quorum, with a write it can never commit, still stops on SIGTERM:
/// the hand-off waits for its in-flight writes only within its deadline. (It used to wait for
/// them without one, and the process never exited.)
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_without_quorum_and_a_write_in_flight_stops_on_sigterm() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let (leader, _client, stuck) = isolated_leader_with_a_write_in_flight(&mut c).await?;
    let started = Instant::now();
    c.stop(leader)?;
    println!("isolated leader stopped {:?} after SIGTERM", started.elapsed());
    assert!(stuck.await?.is_err(), "a write without a quorum was acknowledged");
    assert_no_panics(&c);
    Ok(())
}

/// A move-leader that cannot drain the leader's writes fails within its deadline and leaves
/// writes flowing once the quorum is back (the pause it gave up on holds nothing back).
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_move_leader_without_quorum_holds_no_write_back() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let (leader, client, _stuck) = isolated_leader_with_a_write_in_flight(&mut c).await?;
    let e = client.move_leader(None).await.expect_err("a transfer without a quorum");
    println!("move-leader without a quorum: {e}");
    for id in (1..=3).filter(|id| *id != leader) {
        c.restart(id)?;
    }
    let after = conclave_testkit::wait_for("a write once the quorum is back", T, || async {
        client.put("after", "v").await.ok()
    })
    .await?;
    assert!(after > 0);
    assert_no_panics(&c);
    Ok(())
}
