//! `--auth`: identities, tokens and per-key permissions across every public API, against real
//! processes. Root is created from `--root-password-file`; users, roles and tokens are checked
//! on followers, after a leader kill, after a restart of every member and on a member that
//! caught up by snapshot.

use std::sync::Arc;
use std::time::Duration;

use conclave_client::proto::{self as pb, PermissionType};
use conclave_client::recipes::state_handle_store::StateHandleStore;
use conclave_client::recipes::{CheckpointIdCounter, LeaderElection, LeaderToken, LeadershipEvent, RevokePolicy};
use conclave_client::{Client, Credentials, Error, Reason, Session, WatchEvent, WatchOptions};
use conclave_testkit::{wait_for, Cluster};
use tonic::Code;

use crate::{assert_no_panics, cluster};

pub(crate) const ROOT_PASSWORD: &str = "root-pw";

/// An `--auth` cluster of `n` members whose root password is [`ROOT_PASSWORD`].
pub(crate) async fn auth_cluster(n: usize, extra: &[&str]) -> anyhow::Result<(Cluster, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("root-password");
    std::fs::write(&file, format!("{ROOT_PASSWORD}\n"))?;
    let file = file.to_string_lossy().into_owned();
    let mut args = vec!["--auth", "--root-password-file", &file];
    args.extend_from_slice(extra);
    let c = cluster(n, &args).await?;
    c.wait_for_leader(Duration::from_secs(20)).await?;
    Ok((c, dir))
}

pub(crate) async fn client_as(
    c: &Cluster,
    endpoints: Vec<String>,
    user: &str,
    password: &str,
) -> anyhow::Result<Client> {
    let mut config = c.client_config(endpoints);
    config.credentials = Some(Credentials { user: user.into(), password: password.into() });
    config.discover = config.endpoints.len() > 1;
    Ok(Client::with_config(config).await?)
}

/// A root client, once root exists (it is created in the background at start-up).
pub(crate) async fn root(c: &Cluster) -> anyhow::Result<Client> {
    let client = client_as(c, c.endpoints(), "root", ROOT_PASSWORD).await?;
    wait_for("the root user", Duration::from_secs(20), || async { client.user_list().await.ok() }).await?;
    Ok(client)
}

/// Creates `user` with a role of the same name granted `perm` on `prefix`.
pub(crate) async fn user_with_prefix(
    root: &Client,
    user: &str,
    perm: PermissionType,
    prefix: &str,
) -> anyhow::Result<()> {
    root.user_add(user, &format!("{user}-pw")).await?;
    root.role_add(user).await?;
    root.role_grant_permission(user, perm, prefix.as_bytes(), true).await?;
    root.user_grant_role(user, user).await?;
    Ok(())
}

pub(crate) fn refused<T: std::fmt::Debug>(r: Result<T, Error>, code: Code, reason: Reason) -> Error {
    let e = r.expect_err("refused");
    assert_eq!((e.code(), e.reason()), (code, Some(reason)), "{e}");
    e
}

pub(crate) fn denied<T: std::fmt::Debug>(r: Result<T, Error>) -> Error {
    refused(r, Code::PermissionDenied, Reason::PermissionDenied)
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_and_tokens_work_on_every_member_and_die_with_their_user() -> anyhow::Result<()> {
    let (mut c, _dir) = auth_cluster(3, &[]).await?;
    let root = root(&c).await?;

    // No credentials, or wrong ones: UNAUTHENTICATED, saying which.
    let anonymous = c.client().await?;
    let e = refused(anonymous.put("/a/k", "v").await, Code::Unauthenticated, Reason::AuthRequired);
    assert!(e.to_string().contains("--auth"), "{e}");
    assert!(anonymous.status_of(&c.nodes()[0].client_addr).await.is_ok(), "status needs no identity");
    let wrong = client_as(&c, c.endpoints(), "root", "nope").await?;
    refused(wrong.get("/a/k").await, Code::Unauthenticated, Reason::AuthFailed);

    user_with_prefix(&root, "alice", PermissionType::Readwrite, "/a/").await?;
    // A token issued by the leader is checked by a follower on its own.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = c.nodes().iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");
    let rev = root.put("/other", "x").await?;
    c.wait_for_revision(follower, rev, Duration::from_secs(10)).await?;
    let alice = client_as(&c, vec![c.node(follower).client_addr.clone()], "alice", "alice-pw").await?;
    alice.put("/a/k", "1").await?;
    let e = denied(alice.get("/b/k").await);
    assert!(e.to_string().contains("alice") && e.to_string().contains("/b/k"), "{e}");

    // The leader dies: the token still works (the secret is replicated).
    c.kill(leader)?;
    c.wait_for_new_leader(leader, Duration::from_secs(20)).await?;
    alice.put("/a/k", "2").await?;
    assert_eq!(alice.get("/a/k").await?.map(|kv| kv.value), Some(b"2".to_vec()));

    // Deleting the user kills its token: the client cannot get a new one either.
    root.user_delete("alice").await?;
    let e = alice.put("/a/k", "3").await.expect_err("a deleted user is refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    // Non-root users administer nothing.
    user_with_prefix(&root, "bob", PermissionType::Read, "/b/").await?;
    let running = c.running_endpoints();
    let bob = client_as(&c, running, "bob", "bob-pw").await?;
    denied(bob.user_add("eve", "pw").await);
    denied(bob.role_list().await);
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_apply_to_every_api() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &[]).await?;
    let root = root(&c).await?;
    user_with_prefix(&root, "u", PermissionType::Readwrite, "/u/").await?;
    root.role_grant_permission("u", PermissionType::Read, b"/ro/", true).await?;
    root.put("/ro/k", "r").await?;
    root.put("/x/k", "x").await?;
    let u = client_as(&c, c.endpoints(), "u", "u-pw").await?;

    // KV.
    u.put("/u/k", "1").await?;
    denied(u.put("/ro/k", "1").await);
    assert_eq!(u.get("/ro/k").await?.map(|kv| kv.value), Some(b"r".to_vec()));
    denied(u.get("/x/k").await);
    denied(u.delete("/x/", true).await);
    denied(u.delete("/", true).await);
    assert_eq!(u.delete("/u/", true).await?, 1);

    // A transaction touching one forbidden key (in a branch that would not run) is refused whole.
    let put = |k: &str| pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: k.into(),
            value: b"t".to_vec(),
            ..Default::default()
        })),
    };
    let ok = pb::TxnRequest { success: vec![put("/u/t1")], failure: vec![put("/u/t2")], ..Default::default() };
    assert!(u.txn(ok).await?.succeeded);
    let mixed = pb::TxnRequest { success: vec![put("/u/t3")], failure: vec![put("/x/t")], ..Default::default() };
    let e = denied(u.txn(mixed).await);
    assert!(e.to_string().contains("/x/t"), "{e}");
    assert_eq!(u.get("/u/t3").await?, None, "nothing of the refused txn was applied");
    let children = pb::TxnRequest {
        compare: vec![pb::Compare {
            target: Some(pb::compare::Target::Children(pb::ChildrenCompare {
                prefix: b"/x/".to_vec(),
                ..Default::default()
            })),
        }],
        success: vec![put("/u/t4")],
        ..Default::default()
    };
    denied(u.txn(children).await);

    // Watches: the watched key or prefix needs read.
    let mut w = u.watch("/x/", WatchOptions { prefix: true, ..Default::default() });
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .map_err(|_| anyhow::anyhow!("no answer to a forbidden watch"))?;
    assert!(matches!(&first, Some(Err(e)) if e.code() == Code::PermissionDenied), "{first:?}");
    // From the next revision, not "from now": the put may land before the watch is set up.
    let next = root.put("/ro/k", "r").await? + 1;
    let mut w = u.watch("/ro/", WatchOptions { prefix: true, start_revision: next, ..Default::default() });
    root.put("/ro/k2", "r2").await?;
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match w.next().await {
                Some(Ok(WatchEvent::Changes { events, .. })) => return Some(events),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no event on an allowed watch"))?
    .expect("a change event");
    assert_eq!(event[0].kv.as_ref().map(|kv| kv.key.clone()), Some(b"/ro/k2".to_vec()));

    // Counters and leases: names are keys.
    assert_eq!(u.counter_add("/u/c", 5).await?, 0);
    denied(u.counter_add("/x/c", 1).await);
    denied(u.counter_get("/x/c", false).await);
    assert_eq!(u.counter_get("/ro/c", false).await?.value, 0, "read is enough to read a counter");
    denied(u.counter_set("/ro/c", 1).await);
    // Long enough not to expire between these calls on a loaded machine (no keep-alives here).
    let session = u.session_open(Duration::from_secs(60)).await?;
    assert!(u.lease_acquire("/u/l", session, b"me", 0).await?.granted);
    denied(u.lease_acquire("/x/l", session, b"me", 0).await);
    denied(u.lease_get("/x/l", false).await);
    // Sessions need an identity only; listing every session is root's.
    denied(u.session_list().await);
    u.session_close(session).await?;

    // Cluster administration is root's.
    denied(u.move_leader(None).await);
    let dir = tempfile::tempdir()?;
    denied(u.snapshot_save(&c.nodes()[0].client_addr, &dir.path().join("s")).await);
    root.snapshot_save(&c.nodes()[0].client_addr, &dir.path().join("s")).await?;
    assert!(u.member_list().await?.len() == 1, "listing members needs an identity only");

    // Revoking the permission applies to the next request.
    root.role_revoke_permission("u", b"/u/", true).await?;
    denied(u.put("/u/k", "1").await);
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_are_renewed_transparently() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &["--auth-token-ttl", "1"]).await?;
    let root = root(&c).await?;
    user_with_prefix(&root, "u", PermissionType::Readwrite, "/u/").await?;
    // A raw token expires after the TTL...
    let (channel, token) = raw_token(&c, "u", "u-pw").await?;
    let get = |token: String| {
        let channel = channel.clone();
        async move {
            let mut req = tonic::Request::new(pb::RangeRequest {
                range: Some(pb::KeyRange { key: b"/u/k".to_vec(), ..Default::default() }),
                ..Default::default()
            });
            req.metadata_mut().insert(conclave_proto::TOKEN_METADATA, token.parse().expect("ascii"));
            pb::kv_client::KvClient::new(channel).range(req).await
        }
    };
    get(token.clone()).await?;
    let expired = wait_for("the token to expire", Duration::from_secs(10), || async {
        get(token.clone()).await.err().filter(|s| s.code() == Code::Unauthenticated)
    })
    .await?;
    assert_eq!(conclave_proto::errors::reason_of(&expired), Some(Reason::TokenExpired), "{expired:?}");
    // ...while a client renews its own: every call succeeds across several expiries, the
    // serializable reads (one attempt at the member at hand first) too, and so does a first
    // request that is one (the client authenticates lazily).
    let u = client_as(&c, c.endpoints(), "u", "u-pw").await?;
    let serializable = || conclave_client::GetOptions { serializable: true, ..Default::default() };
    assert!(u.get_with("/u/k", serializable()).await?.kvs.is_empty());
    let until = tokio::time::Instant::now() + Duration::from_millis(3_500);
    let mut n = 0u64;
    while tokio::time::Instant::now() < until {
        n += 1;
        u.put("/u/k", n.to_string()).await?;
        assert_eq!(u.get_with("/u/k", serializable()).await?.kvs.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n > 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_state_survives_full_restart_and_snapshot_install() -> anyhow::Result<()> {
    let (mut c, _dir) =
        auth_cluster(3, &["--snapshot-logs", "20", "--logs-kept-after-snapshot", "5", "--history-revisions", "50"])
            .await?;
    let root = root(&c).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let lagging = c.nodes().iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");
    c.kill(lagging)?;
    // Users, roles and permissions made while the member is down reach it by snapshot only.
    user_with_prefix(&root, "u", PermissionType::Readwrite, "/u/").await?;
    let mut last = 0;
    for i in 0..200 {
        last = root.put(format!("/k{}", i % 20), "v").await?;
    }
    c.restart(lagging)?;
    c.wait_for_revision(lagging, last, Duration::from_secs(30)).await?;
    assert!(c.status(lagging).await?.snapshot_index > 0, "the member installed a snapshot");
    check_user_on(&c, lagging).await?;
    // Every member restarted: users, roles and the token secret come back from disk.
    c.kill_all();
    for id in 1..=3 {
        c.restart(id)?;
    }
    c.wait_for_leader(Duration::from_secs(20)).await?;
    for id in 1..=3 {
        check_user_on(&c, id).await?;
    }
    assert_no_panics(&c);
    Ok(())
}

/// User `u` (readwrite on `/u/`) authenticates on member `id` and is held to its permission there.
async fn check_user_on(c: &Cluster, id: u64) -> anyhow::Result<()> {
    let u = client_as(c, vec![c.node(id).client_addr.clone()], "u", "u-pw").await?;
    u.put("/u/k", "v").await?;
    denied(u.get("/k1").await);
    Ok(())
}

/// Campaigns in `cluster_id`'s election on `session` and waits for the grant.
async fn lead(
    client: &Client,
    session: &Arc<Session>,
    cluster_id: &str,
) -> anyhow::Result<(LeaderElection, LeaderToken)> {
    let election = LeaderElection::new(client, session.clone(), cluster_id, b"jm", RevokePolicy::OnExpired)?;
    let mut events = election.campaign();
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
        Some(LeadershipEvent::Granted(t)) => Ok((election, t)),
        other => anyhow::bail!("expected a grant in {cluster_id}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_manager_cluster_works_in_its_prefix_and_cannot_touch_another() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &[]).await?;
    let root = root(&c).await?;
    user_with_prefix(&root, "flink-a", PermissionType::Readwrite, "/conclave/ha/A/").await?;
    user_with_prefix(&root, "flink-b", PermissionType::Readwrite, "/conclave/ha/B/").await?;
    let a = client_as(&c, c.endpoints(), "flink-a", "flink-a-pw").await?;
    let b = client_as(&c, c.endpoints(), "flink-b", "flink-b-pw").await?;

    // Cluster B's recipes work in B's prefix.
    let sb = Arc::new(Session::open(&b, Duration::from_secs(5)).await?);
    let (eb, tb) = lead(&b, &sb, "B").await?;
    let counter_b = CheckpointIdCounter::new(&b, "B", "job-1", Some(tb.clone()))?;
    counter_b.start().await?;
    assert_eq!(counter_b.get_and_increment().await?, 1);
    let store_b = StateHandleStore::new(&b, &sb, "B", "checkpoints", Some(tb.clone()))?;
    store_b.add_and_lock("chk-1", b"s3://b").await?;

    // Cluster A's own recipes: election, checkpoint counter, pointers.
    let sa = Arc::new(Session::open(&a, Duration::from_secs(5)).await?);
    let (ea, ta) = lead(&a, &sa, "A").await?;
    assert!(ea.has_leadership(&ta).await?);
    let counter_a = CheckpointIdCounter::new(&a, "A", "job-1", Some(ta.clone()))?;
    counter_a.start().await?;
    assert_eq!(counter_a.get_and_increment().await?, 1);
    assert_eq!(counter_a.get_and_increment().await?, 2);
    let store_a = StateHandleStore::new(&a, &sa, "A", "checkpoints", Some(ta.clone()))?;
    store_a.add_and_lock("chk-1", b"s3://a").await?;
    assert_eq!(store_a.get_and_lock("chk-1").await?.value, b"s3://a".to_vec());

    // A cannot read or change B's keys, counters or leases, nor campaign in B's election.
    let into_b = StateHandleStore::new(&a, &sa, "B", "checkpoints", None)?;
    denied(into_b.get_and_lock("chk-1").await);
    denied(into_b.add_and_lock("chk-2", b"evil").await);
    denied(a.get("/conclave/ha/B/").await);
    denied(a.delete("/conclave/ha/B/", true).await);
    denied(a.counter_set("/conclave/ha/B/checkpoint-id/job-1", 0).await);
    denied(a.lease_get("/conclave/ha/B/leader", false).await);
    denied(a.lease_acquire("/conclave/ha/B/leader", sa.id(), b"evil", 0).await);
    denied(CheckpointIdCounter::new(&a, "B", "job-1", None)?.get().await);
    // B's state is intact.
    assert_eq!(counter_b.get().await?, 2);
    assert_eq!(store_b.get_and_lock("chk-1").await?.value, b"s3://b".to_vec());
    assert!(eb.has_leadership(&tb).await?);
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_names_the_user_on_an_mtls_port() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = conclave_testkit::tls::TestCerts::new(dir.path())?;
    let mut args = certs.server_args(true);
    args.push("--auth".into());
    let c = conclave_testkit::Cluster::start_with(conclave_testkit::ClusterOptions {
        nodes: 1,
        extra_args: args,
        binary: Some(crate::binary()),
        client_tls: Some(certs.client_tls(true)?),
        ..Default::default()
    })
    .await?;
    c.wait_for_leader(Duration::from_secs(20)).await?;
    let as_cert = |cn: &str| -> anyhow::Result<conclave_client::ClientTls> {
        let identity = certs.pki.issue(cn, cn, &[])?;
        Ok(conclave_client::ClientTls::new(conclave_client::ClientFiles {
            ca: certs.pki.ca(),
            identity: Some(identity),
        })?)
    };
    let connect = |tls: conclave_client::ClientTls| {
        let mut config = c.client_config(c.endpoints());
        config.tls = Some(tls);
        Client::with_config(config)
    };
    // A certificate named root is root, without any password (no root user exists here).
    let root = connect(as_cert("root")?).await?;
    user_with_prefix(&root, "alice", PermissionType::Readwrite, "/a/").await?;
    root.put("/b/k", "b").await?;
    // Alice's certificate is Alice: her role applies.
    let alice = connect(as_cert("alice")?).await?;
    alice.put("/a/k", "1").await?;
    let e = denied(alice.get("/b/k").await);
    assert!(e.to_string().contains("alice"), "{e}");
    denied(alice.user_list().await);
    // A certificate of a user that does not exist may do nothing.
    let stranger = connect(as_cert("mallory")?).await?;
    denied(stranger.get("/a/k").await);
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auth_nothing_is_asked() -> anyhow::Result<()> {
    let c = cluster(1, &[]).await?;
    let anonymous = c.client().await?;
    anonymous.put("/any/k", "v").await?;
    // Administration is open (a cluster can be prepared before members restart with --auth),
    // and credentials a client carries are never asked for.
    anonymous.user_add("u", "pw").await?;
    anonymous.role_add("r").await?;
    assert_eq!(anonymous.user_list().await?, vec!["u".to_owned()]);
    let with_credentials = client_as(&c, c.endpoints(), "u", "wrong password").await?;
    assert_eq!(with_credentials.get("/any/k").await?.map(|kv| kv.value), Some(b"v".to_vec()));
    Ok(())
}

/// A change delivered by a watch: its revision and the keys of its events.
type Change = (u64, Vec<Vec<u8>>);

/// The next change of `w` (progress notifications skipped), its error, or `None` once it ended;
/// fails when nothing comes in 15 s.
async fn next_change(w: &mut conclave_client::Watcher) -> anyhow::Result<Option<Result<Change, Error>>> {
    let next = async {
        loop {
            match w.next().await {
                Some(Ok(WatchEvent::Changes { revision, events })) => {
                    let keys = events.into_iter().filter_map(|e| e.kv.map(|kv| kv.key)).collect();
                    return Some(Ok((revision, keys)));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(Err(e)),
                None => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), next)
        .await
        .map_err(|_| anyhow::anyhow!("the watch was silent for 15 s"))
}

fn change(revision: u64, key: &str) -> Option<Change> {
    Some((revision, vec![key.as_bytes().to_vec()]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_watch_ends_when_its_permission_or_its_user_does() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &[]).await?;
    let root = root(&c).await?;
    // Alice reads /a/ through role "alice" and /c/ through role "alice-c"; Bob reads /b/.
    user_with_prefix(&root, "alice", PermissionType::Read, "/a/").await?;
    root.role_add("alice-c").await?;
    root.role_grant_permission("alice-c", PermissionType::Read, b"/c/", true).await?;
    root.user_grant_role("alice", "alice-c").await?;
    user_with_prefix(&root, "bob", PermissionType::Read, "/b/").await?;
    let alice = client_as(&c, c.endpoints(), "alice", "alice-pw").await?;
    let bob = client_as(&c, c.endpoints(), "bob", "bob-pw").await?;
    let from = root.put("/start", "").await? + 1;
    let opts = WatchOptions { prefix: true, start_revision: from, ..Default::default() };
    // Alice's two watches share one stream.
    let (mut wa, mut wc, mut wb) =
        (alice.watch("/a/", opts.clone()), alice.watch("/c/", opts.clone()), bob.watch("/b/", opts));
    let (ra, rc, rb) = (root.put("/a/1", "1").await?, root.put("/c/1", "1").await?, root.put("/b/1", "1").await?);
    assert_eq!(next_change(&mut wa).await?.transpose()?, change(ra, "/a/1"));
    assert_eq!(next_change(&mut wc).await?.transpose()?, change(rc, "/c/1"));
    assert_eq!(next_change(&mut wb).await?.transpose()?, change(rb, "/b/1"));

    // The permission is revoked from Alice's role: her /a/ watch ends with PERMISSION_DENIED
    // instead of delivering the next change; her /c/ watch, on the same stream, goes on.
    root.role_revoke_permission("alice", b"/a/", true).await?;
    root.put("/a/2", "2").await?;
    let rc2 = root.put("/c/2", "2").await?;
    let end = next_change(&mut wa).await?.expect("an error, not the end nor a change");
    let e = denied(end);
    assert!(e.to_string().contains("/a/") && e.to_string().contains("alice"), "{e}");
    assert!(next_change(&mut wa).await?.is_none(), "the watch ended");
    assert_eq!(next_change(&mut wc).await?.transpose()?, change(rc2, "/c/2"), "the other watch resumed, nothing lost");
    // The role granting /c/ is revoked from Alice: her token dies with it (TOKEN_EXPIRED), the
    // client authenticates again, and the member refuses the watch when it is created again.
    root.user_revoke_role("alice", "alice-c").await?;
    root.put("/c/3", "3").await?;
    denied(next_change(&mut wc).await?.expect("an error, not the end nor a change"));
    assert!(next_change(&mut wc).await?.is_none(), "the watch ended");

    // Bob is deleted: his watch ends with an authentication (or permission) error.
    root.user_delete("bob").await?;
    root.put("/b/2", "2").await?;
    let e = next_change(&mut wb).await?.expect("an error").expect_err("no change after the user is deleted");
    assert!(matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied), "{e}");
    assert!(next_change(&mut wb).await?.is_none(), "the watch ended");
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_outlives_its_tokens_without_losing_or_repeating_a_change() -> anyhow::Result<()> {
    let (c, _dir) = auth_cluster(1, &["--auth-token-ttl", "1"]).await?;
    let root = root(&c).await?;
    user_with_prefix(&root, "u", PermissionType::Read, "/u/").await?;
    // A raw watch stream ends when its token expires, even with nothing to deliver.
    let (channel, token) = raw_token(&c, "u", "u-pw").await?;
    let (keep, requests) = tokio::sync::mpsc::unbounded_channel();
    keep.send(pb::WatchRequest {
        request: Some(pb::watch_request::Request::Create(pb::WatchCreateRequest {
            range: Some(pb::KeyRange { key: b"/u/".to_vec(), prefix: true, ..Default::default() }),
            ..Default::default()
        })),
    })?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(requests));
    req.metadata_mut().insert(conclave_proto::TOKEN_METADATA, token.parse()?);
    let mut raw = pb::watch_client::WatchClient::new(channel).watch(req).await?.into_inner();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match raw.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(s) => return Some(s),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the watch stream outlived its token"))?
    .expect("the stream ends with an error");
    assert_eq!(
        (end.code(), conclave_proto::errors::reason_of(&end)),
        (Code::Unauthenticated, Some(Reason::TokenExpired)),
        "{end:?}"
    );

    // The Rust client's watch runs across several expiries: it authenticates again and resumes
    // from its last delivered revision + 1, so it sees every change once, in order.
    let u = client_as(&c, c.endpoints(), "u", "u-pw").await?;
    let from = root.put("/u/start", "").await? + 1;
    let mut w = u.watch("/u/", WatchOptions { prefix: true, start_revision: from, ..Default::default() });
    let mut expected = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(3_500);
    while tokio::time::Instant::now() < until {
        let key = format!("/u/k{}", expected.len());
        expected.push(change(root.put(&key, "v").await?, &key).expect("a change"));
        // Writes spread over several token lifetimes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expected.len() > 10, "{} writes", expected.len());
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match next_change(&mut w).await? {
            Some(Ok(change)) => got.push(change),
            other => anyhow::bail!("after {} changes: {other:?}", got.len()),
        }
    }
    assert_eq!(got, expected);
    assert_no_panics(&c);
    Ok(())
}

/// A channel to the first member and a token of `user` from it (no renewal).
async fn raw_token(c: &Cluster, user: &str, password: &str) -> anyhow::Result<(conclave_client::GrpcChannel, String)> {
    let channel =
        conclave_client::GrpcChannel::new(&c.nodes()[0].client_addr, Default::default()).map_err(anyhow::Error::msg)?;
    let token = pb::auth_client::AuthClient::new(channel.clone())
        .authenticate(pb::AuthenticateRequest { name: user.into(), password: password.into() })
        .await?
        .into_inner()
        .token;
    Ok((channel, token))
}
