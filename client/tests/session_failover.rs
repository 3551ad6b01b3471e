//! A session's keep-alives leave a member that stopped answering within the keep-alive budget
//! (half the TTL), so freezing the member a client talks to does not expire its session.

use std::time::Duration;

use conclave_client::{Session, SessionState};
use conclave_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_member_does_not_cost_a_session_its_life() -> anyhow::Result<()> {
    let mut c = Cluster::start(3).await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let client = c.client().await?;
    client.put("warm-up", "x").await?; // the client now talks to the leader
    let session = Session::open(&client, Duration::from_secs(2)).await?;
    let mut states = session.subscribe();
    // Freeze the member this client's keep-alives go to (the leader) for well over a TTL.
    c.pause(leader)?;
    let watch_states = async {
        loop {
            if states.changed().await.is_err() {
                return None;
            }
            if *states.borrow() == SessionState::Expired {
                return Some(());
            }
        }
    };
    let expired = tokio::time::timeout(Duration::from_secs(6), watch_states).await;
    c.resume(leader)?;
    assert!(!matches!(expired, Ok(Some(()))), "the session expired while its client kept trying");
    // And the cluster still knows it.
    let info = client.session_info(session.id()).await?;
    assert_eq!(info.session_id, session.id());
    Ok(())
}
