//! Rolling upgrades: writes are proposed at the lowest log format level among the members
//! (`log_entry::format`). A member restarted with `CONCLAVE_TELL_LOG_FORMAT=0` stands in for a
//! build from before levels (it tells level 0 on every peer message); while it is a member, the
//! leader proposes what such a build decodes, and the level-1 behaviour comes back once it
//! tells the current level again. Real processes under `--auth`; the observable level-1
//! behaviour is session ownership (`SessionOpenOwned`; lowered, a session has no owner).

use std::time::Duration;

use conclave_client::proto::PermissionType;
use conclave_client::Client;
use conclave_testkit::{wait_for, Cluster};

use crate::assert_no_panics;
use crate::auth::{auth_cluster, client_as, denied, root, user_with_prefix};

const T: Duration = Duration::from_secs(30);
const TELL: &str = "CONCLAVE_TELL_LOG_FORMAT";

async fn user_on(c: &Cluster, id: u64, user: &str) -> anyhow::Result<Client> {
    client_as(c, vec![c.node(id).client_addr.clone()], user, &format!("{user}-pw")).await
}

/// Waits until the leader has heard `level` from `member` and proposes at `cluster`.
async fn leader_hears(c: &Cluster, member: u64, level: u32, cluster: u32) -> anyhow::Result<u64> {
    wait_for(&format!("the leader to hear level {level} from node {member}"), T, || async {
        let leader = c.wait_for_leader(T).await.ok()?;
        let s = c.status(leader).await.ok()?;
        let told = s.members.iter().find(|m| m.id == member)?.log_format;
        (told == level && s.cluster_log_format == cluster).then_some(leader)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_follow_the_lowest_log_format_among_the_members() -> anyhow::Result<()> {
    let (mut c, _dir) = auth_cluster(3, &[]).await?;
    let root = root(&c).await?;
    for user in ["a", "b"] {
        user_with_prefix(&root, user, PermissionType::Readwrite, &format!("/{user}/")).await?;
    }
    let leader = c.wait_for_leader(T).await?;
    let current = c.status(leader).await?.log_format;
    assert!(current >= 1, "this build decodes level 1 at least, it says {current}");
    let old = c.nodes().iter().map(|n| n.id).find(|&id| id != leader).expect("a follower");
    leader_hears(&c, old, current, current).await?;

    // Every member on the current level: a's session is a's.
    let (a, b) = (user_on(&c, leader, "a").await?, user_on(&c, leader, "b").await?);
    let owned = a.session_open(Duration::from_secs(60)).await?;
    denied(b.session_close(owned).await);

    // A follower comes back as an "older build": the leader proposes level 0 from then on.
    c.stop(old)?;
    c.set_env(old, TELL, Some("0"))?;
    c.restart(old)?;
    let leader = leader_hears(&c, old, 0, 0).await?;
    assert_eq!(c.status(old).await?.log_format, 0, "the member says what it tells");
    let (a, b) = (user_on(&c, leader, "a").await?, user_on(&c, leader, "b").await?);
    let unowned = a.session_open(Duration::from_secs(60)).await?;
    b.session_close(unowned).await?;
    // A user's write (level 1: checked again at apply) taken by the older member, and one
    // taken by the leader, are both applied as plain writes that every member decodes.
    let a_old = user_on(&c, old, "a").await?;
    a_old.put("/a/through-old", "1").await?;
    a.put("/a/through-leader", "1").await?;
    for key in ["/a/through-old", "/a/through-leader"] {
        // Linearizable, served by the older member: it has applied (decoded) both.
        assert!(a_old.get(key).await?.is_some(), "{key} on the older member");
    }

    // The "older build" leads: a follower hands it a user's write and a session open lowered
    // to level 0 (it refuses anything above, as an older build cannot decode it).
    root.move_leader(Some(old)).await?;
    let newer = c.nodes().iter().map(|n| n.id).find(|&id| id != old).expect("another member");
    wait_for("the follower to hear level 0 from its leader", T, || async {
        let s = c.status(newer).await.ok()?;
        let leader = s.members.iter().find(|m| m.id == old)?;
        (s.leader_id == old && leader.log_format == 0).then_some(())
    })
    .await?;
    let (a_new, b_new) = (user_on(&c, newer, "a").await?, user_on(&c, newer, "b").await?);
    a_new.put("/a/to-older-leader", "1").await?;
    let unowned = a_new.session_open(Duration::from_secs(60)).await?;
    b_new.session_close(unowned).await?;

    // Upgraded again: the level-1 behaviour is back.
    c.stop(old)?;
    c.set_env(old, TELL, None)?;
    c.restart(old)?;
    let leader = leader_hears(&c, old, current, current).await?;
    let (a, b) = (user_on(&c, leader, "a").await?, user_on(&c, leader, "b").await?);
    let owned = a.session_open(Duration::from_secs(60)).await?;
    denied(b.session_close(owned).await);
    a.session_close(owned).await?;
    assert_no_panics(&c);
    Ok(())
}
