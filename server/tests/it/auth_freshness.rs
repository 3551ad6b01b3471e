//! `--auth` changes acknowledged through the leader hold at once on every member: a follower
//! that has not applied a new user, password, grant or token secret yet must not refuse on
//! its older state (it checks a refusal again after a linearizable barrier). Real processes;
//! the changes go through a client pinned to the leader, the checked requests through clients
//! pinned to a follower, each right after the change was acknowledged.

use std::time::Duration;

use conclave_client::proto::PermissionType;
use conclave_client::Reason;
use conclave_testkit::{wait_for, Cluster};

use crate::assert_no_panics;
use crate::auth::{auth_cluster, client_as, ROOT_PASSWORD};

/// Rounds of change-then-use; each is a fresh chance for the follower to lag.
const ROUNDS: usize = 10;

async fn leader_and_follower(c: &Cluster) -> anyhow::Result<(String, String)> {
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = c.nodes().iter().find(|n| n.id != leader).expect("a follower");
    Ok((c.node(leader).client_addr.clone(), follower.client_addr.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn users_passwords_and_grants_hold_on_a_follower_as_soon_as_acknowledged() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(3, &[]).await?;
    let (on_leader, on_follower) = leader_and_follower(&c).await?;
    let root = wait_for("the root user", Duration::from_secs(20), || async {
        client_as(&c, vec![on_leader.clone()], "root", ROOT_PASSWORD).await.ok()
    })
    .await?;
    for i in 0..ROUNDS {
        let (user, prefix, extra) = (format!("u{i}"), format!("/u{i}/"), format!("/x{i}/"));
        root.user_add(&user, "pw1").await?;
        root.role_add(&user).await?;
        root.role_grant_permission(&user, PermissionType::Readwrite, prefix.as_bytes(), true).await?;
        root.user_grant_role(&user, &user).await?;
        // A user created a moment ago authenticates and writes through the follower.
        let u = client_as(&c, vec![on_follower.clone()], &user, "pw1").await?;
        u.put(&format!("{prefix}k"), "v").await?;
        // A permission granted a moment ago is honoured there.
        root.role_grant_permission(&user, PermissionType::Readwrite, extra.as_bytes(), true).await?;
        u.put(&format!("{extra}k"), "v").await?;
        assert!(u.get(&format!("{extra}k")).await?.is_some());
        // A password changed a moment ago is the one the follower accepts.
        root.user_change_password(&user, "pw2").await?;
        let again = client_as(&c, vec![on_follower.clone()], &user, "pw2").await?;
        again.put(&format!("{prefix}k"), "w").await?;
        // (A client authenticates at its first request.)
        let stale = client_as(&c, vec![on_follower.clone()], &user, "pw1").await?;
        let e = stale.get(&format!("{prefix}k")).await.expect_err("the old password is refused");
        assert_eq!(e.reason(), Some(Reason::AuthFailed), "{e}");
    }
    assert_no_panics(&c);
    Ok(())
}

/// The very first token of a cluster, asked of a follower: the follower proposes the token
/// secret through the leader and signs with it once it applied it, never answering
/// "secret unset".
#[tokio::test(flavor = "multi_thread")]
async fn the_first_token_can_come_from_a_follower() -> anyhow::Result<()> {
    for _ in 0..3 {
        let (c, _dir) = auth_cluster(3, &[]).await?;
        let (_, on_follower) = leader_and_follower(&c).await?;
        // Until the root user exists the answer is AUTH_FAILED; nothing else is acceptable.
        // (A client authenticates at its first request.)
        let root = client_as(&c, vec![on_follower.clone()], "root", ROOT_PASSWORD).await?;
        wait_for("a root token from a follower", Duration::from_secs(20), || async {
            match root.put("/k", "v").await {
                Ok(_) => Some(Ok(())),
                Err(e) if e.reason() == Some(Reason::AuthFailed) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .await??;
        assert_no_panics(&c);
    }
    Ok(())
}

/// A member cut off from its leader cannot vouch for credentials: a client that must
/// authenticate there is told it has no leader (retriable), never "authentication is
/// required".
#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_a_leader_says_so_to_a_client_that_authenticates() -> anyhow::Result<()> {
    let (mut c, _dir) = auth_cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    let root = crate::auth::root(&c).await?;
    let revision = root.put("/k", "v").await?;
    let ids: Vec<u64> = c.nodes().iter().map(|n| n.id).collect();
    let survivor = *ids.iter().find(|id| **id != leader).expect("a follower");
    c.wait_for_revision(survivor, revision, Duration::from_secs(20)).await?;
    for id in ids.into_iter().filter(|id| *id != survivor) {
        c.kill(id)?;
    }
    let mut config = c.client_config(vec![c.node(survivor).client_addr.clone()]);
    config.credentials = Some(conclave_client::Credentials { user: "root".into(), password: ROOT_PASSWORD.into() });
    config.call_timeout = Duration::from_secs(3);
    let lonely = conclave_client::Client::with_config(config).await?;
    let e = lonely.get("/k").await.expect_err("no leader to vouch for the credentials");
    assert_eq!((e.code(), e.reason()), (tonic::Code::Unavailable, None), "{e}");
    Ok(())
}

/// A permission revoked through the leader is refused through a follower that has not applied
/// the revocation yet: apply checks the write again (`Command::AsUser`). The follower is paused
/// while the revocation commits without it, so the write reaches it before the revocation does.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_permission_is_refused_through_a_lagging_follower() -> anyhow::Result<()> {
    let (mut c, _dir) = auth_cluster(3, &[]).await?;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = c.nodes().iter().find(|n| n.id != leader).expect("a follower").id;
    let on_leader = c.node(leader).client_addr.clone();
    let root = wait_for("the root user", Duration::from_secs(20), || async {
        let root = client_as(&c, vec![on_leader.clone()], "root", ROOT_PASSWORD).await.ok()?;
        root.user_list().await.ok().map(|_| root)
    })
    .await?;
    crate::auth::user_with_prefix(&root, "r", PermissionType::Readwrite, "/r/").await?;
    let u = client_as(&c, vec![c.node(follower).client_addr.clone()], "r", "r-pw").await?;
    u.put("/r/k", "v").await?;
    for i in 0..ROUNDS {
        let granted = format!("/g{i}/");
        root.role_grant_permission("r", PermissionType::Readwrite, granted.as_bytes(), true).await?;
        u.put(&format!("{granted}k"), "in time").await?;
        c.pause(follower)?;
        root.role_revoke_permission("r", granted.as_bytes(), true).await?;
        let late = {
            let (u, key) = (u.clone(), format!("{granted}late"));
            tokio::spawn(async move { u.put(&key, "too late").await })
        };
        // Not a wait for a condition: lets the write reach the paused member's socket before
        // it resumes. The assertions below hold whatever the timing.
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.resume(follower)?;
        let e = late.await?.expect_err("revoked before the write was sent");
        assert_eq!((e.code(), e.reason()), (tonic::Code::PermissionDenied, Some(Reason::PermissionDenied)), "{e}");
        assert_eq!(root.get(&format!("{granted}late")).await?, None, "round {i}: a revoked write landed");
    }
    assert_no_panics(&c);
    Ok(())
}
