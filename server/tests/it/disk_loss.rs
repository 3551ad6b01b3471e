//! A member that lost its disk never votes with an empty log (issue: acknowledged writes lost
//! when a StatefulSet pod comes back with a replaced volume). It rejoins as a learner, catches
//! up, and is promoted back to a voter without manual steps.

use std::time::Duration;

use crate::{assert_no_panics, cluster};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_a_wiped_data_dir_does_not_vote_and_rejoins_as_a_learner() -> anyhow::Result<()> {
    let mut c = cluster(3, &[]).await?;
    let leader = c.wait_for_leader(T).await?;
    let followers: Vec<u64> = c.nodes().iter().map(|n| n.id).filter(|id| *id != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    // Every member has registered (taken part) before the faults start.
    let client = c.client().await?;
    crate::wait_for_registrations(&c, 3).await?;

    // F1 misses the writes; L and F2 hold them.
    c.kill(f1)?;
    for i in 0..100 {
        client.put(format!("k{i}"), format!("v{i}")).await?;
    }
    c.kill(leader)?;
    c.kill(f2)?;
    // F2 comes back with an empty data dir (same command line), F1 with its old log; L stays down.
    let f2_dir = c.node(f2).data_dir.clone();
    std::fs::remove_dir_all(&f2_dir)?;
    std::fs::create_dir_all(&f2_dir)?;
    c.restart(f2)?;
    c.restart(f1)?;

    // F1 alone lacks the writes: F2 must not vote for it. Watch for a while (many election
    // timeouts): no leader may appear while L is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        for id in [f1, f2] {
            if let Ok(st) = c.status(id).await {
                assert!(
                    st.leader_id == 0 || st.leader_id == leader,
                    "node {} reports leader {} while the only member holding the writes is down",
                    id,
                    st.leader_id
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // L returns: every acknowledged write is there.
    c.restart(leader)?;
    c.wait_for_leader(T).await?;
    for i in 0..100 {
        let kv = client.get(format!("k{i}")).await?;
        assert_eq!(kv.map(|kv| kv.value), Some(format!("v{i}").into_bytes()), "k{i} lost");
    }
    // F2 is re-added as a learner and promoted back to a voter, by itself.
    let voters = |st: &conclave_client::proto::StatusResponse| {
        st.members.iter().filter(|m| m.voter).map(|m| m.id).collect::<Vec<_>>()
    };
    conclave_testkit::wait_for("the wiped member to be a voter again", T, || async {
        let leader = c.wait_for_leader(T).await.ok()?;
        let st = c.status(leader).await.ok()?;
        (voters(&st).contains(&f2) && voters(&st).len() == 3).then_some(())
    })
    .await?;
    let log = std::fs::read_to_string(&c.node(f2).log_path)?;
    assert!(log.contains("rejoins as a learner"), "F2 did not take the rejoin path:\n{log}");
    // And it serves the data itself.
    let last = client.put("after", "rejoin").await?;
    c.wait_for_revision(f2, last, T).await?;
    assert_no_panics(&c);
    Ok(())
}
