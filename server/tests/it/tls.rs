//! TLS on the client and peer ports, with certificates generated at test time: a TLS-only
//! cluster forms and serves; the peer port refuses peers without a certificate from the peer CA;
//! the client port refuses clients without a certificate when mutual TLS is on; a rotated
//! certificate is served without a restart; a TLS-only cluster grows by `--join`.

use std::time::Duration;

use conclave_client::{Client, ClientFiles, ClientTls};
use conclave_testkit::tls::{loopback_names, TestCerts};
use conclave_testkit::{wait_for, Cluster, ClusterOptions};
use conclave_tls::test_pki::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{assert_no_panics, binary};

async fn tls_cluster(nodes: usize, args: Vec<String>, client: ClientTls) -> anyhow::Result<Cluster> {
    Cluster::start_with(ClusterOptions {
        nodes,
        extra_args: args,
        binary: Some(binary()),
        client_tls: Some(client),
        ..ClusterOptions::default()
    })
    .await
}

/// A client pinned to `endpoint` with `tls`, failing fast.
async fn client_with(endpoint: &str, tls: Option<ClientTls>) -> anyhow::Result<Client> {
    let mut config = conclave_client::ClientConfig::new(vec![endpoint.to_owned()]);
    config.tls = tls;
    config.discover = false;
    config.call_timeout = Duration::from_secs(2);
    Ok(Client::with_config(config).await?)
}

/// What a peer-port listener answers to the HTTP/2 preface over a TLS connection made with
/// `tls`: `Some(bytes)` when it speaks (its SETTINGS frame), `None` when it refuses.
async fn peer_answers(peer_addr: &str, tls: &ClientTls) -> Option<usize> {
    let attempt = async {
        let target = peer_addr.parse().ok()?;
        let host = peer_addr.rsplit_once(':')?.0;
        let mut s = conclave_tls::dial(target, host, None, Some(tls)).await.ok()?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.ok()?;
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.ok()?; // empty SETTINGS
        s.flush().await.ok()?;
        let mut buf = [0u8; 64];
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => Some(n),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_only_cluster_forms_serves_and_refuses_strangers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = TestCerts::new(dir.path())?;
    let c = tls_cluster(3, certs.server_args(true), certs.client_tls(true)?).await?;
    let client = c.client().await?;
    client.put("k", "v").await?;
    // Writes through a follower travel the peer port (forwarded to the leader) over mutual TLS.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = c.nodes().iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");
    let via_follower = c.client_of(follower).await?;
    let rev = via_follower.put("k2", "v2").await?;
    for n in c.nodes() {
        c.wait_for_revision(n.id, rev, Duration::from_secs(10)).await?;
    }
    assert_eq!(via_follower.get("k").await?.map(|kv| kv.value), Some(b"v".to_vec()));

    // Client port: mutual TLS required.
    let endpoint = &c.node(leader).client_addr;
    let no_cert = client_with(endpoint, Some(certs.client_tls(false)?)).await?;
    no_cert.put("x", "1").await.expect_err("a client without a certificate is refused");
    // One attempt (a write's retries may end on the call deadline instead): the refusal is a
    // connect failure (nothing sent) saying the server refused the handshake; the reason
    // (CertificateRequired) follows when the alert arrives before the socket closes.
    let e = no_cert.status_of(endpoint).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert!(e.to_string().contains("refused by the server"), "the error says what happened: {e}");
    let plain = client_with(endpoint, None).await?;
    plain.put("x", "1").await.expect_err("a plain-text client is refused");
    let other = TestPki::new(&dir.path().join("other"), "other")?;
    let (rogue_cert, rogue_key) = other.issue("rogue", "mallory", &[])?;
    let rogue_files = ClientFiles { ca: certs.pki.ca(), identity: Some((rogue_cert.clone(), rogue_key.clone())) };
    let rogue = client_with(endpoint, Some(ClientTls::new(rogue_files)?)).await?;
    rogue.put("x", "1").await.expect_err("a client certificate from another CA is refused");
    assert!(client.get("x").await?.is_none(), "no refused client wrote anything");

    // Peer port: only certificates signed by the peer CA. The control shows the probe can pass.
    let peer = &c.node(leader).peer_addr;
    let member = ClientTls::new(ClientFiles { ca: certs.pki.ca(), identity: Some(certs.node_peer.clone()) })?;
    assert!(peer_answers(peer, &member).await.is_some(), "a member's certificate gets an HTTP/2 answer");
    let anonymous = ClientTls::new(ClientFiles { ca: certs.pki.ca(), identity: None })?;
    assert_eq!(peer_answers(peer, &anonymous).await, None, "a peer without a certificate is refused");
    let foreign = ClientTls::new(ClientFiles { ca: certs.pki.ca(), identity: Some((rogue_cert, rogue_key)) })?;
    assert_eq!(peer_answers(peer, &foreign).await, None, "a peer certificate from another CA is refused");
    let mut raw = tokio::net::TcpStream::connect(peer).await?;
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await?.unwrap_or(0);
    assert!(n == 0 || !buf[..n].starts_with(&[0, 0]), "plain HTTP/2 on the peer port gets no HTTP/2 answer");
    assert!(
        c.nodes().iter().any(|n| n.log().contains("TLS handshake refused")),
        "refusals are logged with the remote address"
    );
    client.put("still", "serving").await?;
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_port_certificate_rotates_without_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = TestCerts::new(dir.path())?;
    let args = certs.server_args(false);
    let mut c = tls_cluster(1, args, certs.client_tls(false)?).await?;
    let endpoint = c.node(1).client_addr.clone();
    let trusts_old = || ClientTls::new(ClientFiles { ca: certs.pki.ca(), identity: None });
    client_with(&endpoint, Some(trusts_old()?)).await?.put("a", "1").await?;
    let pid = c.node(1).pid();

    // A new CA signs the replacement, written over the files the node was started with.
    let new_ca = TestPki::new(&dir.path().join("new"), "new")?;
    let trusts_new = || ClientTls::new(ClientFiles { ca: new_ca.ca(), identity: None });
    let refused = client_with(&endpoint, Some(trusts_new()?)).await?.put("b", "early").await;
    assert!(refused.is_err(), "before the rotation the new CA's clients do not trust the node");
    let (cert, key) = new_ca.issue("node-client", "conclave node", &loopback_names())?;
    std::fs::rename(&key, &certs.node_client.1)?;
    std::fs::rename(&cert, &certs.node_client.0)?;

    wait_for("the rotated certificate to be served", Duration::from_secs(10), || async {
        client_with(&endpoint, Some(trusts_new().ok()?)).await.ok()?.put("b", "2").await.ok()
    })
    .await?;
    let old = client_with(&endpoint, Some(trusts_old()?)).await?.put("c", "3").await;
    assert!(old.is_err(), "new connections no longer get the old certificate");
    assert!(c.node_is_running(1) && c.node(1).pid() == pid, "same process: no restart");
    assert!(c.node(1).log().contains("TLS certificates reloaded"));
    assert_no_panics(&c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_only_cluster_grows_by_join() -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir()?;
    let certs = TestCerts::new(dir.path())?;
    let args = certs.server_args(true);
    let c = tls_cluster(3, args.clone(), certs.client_tls(true)?).await?;
    let client = c.client().await?;
    client.put("before", "join").await?;
    let ip: std::net::Ipv4Addr = c.node(1).client_addr.split(':').next().unwrap_or("127.0.0.1").parse()?;
    let [peer, client_addr] = crate::two_free_addrs(ip)?;
    client.member_add(4, &peer, &client_addr).await?;
    let log_path = c.dir.join("node4.log");
    let _node4 = crate::ServerProcess(
        Command::new(binary())
            .args(["serve", "--node-id", "4", "--data-dir"])
            .arg(c.dir.join("node4"))
            .args(["--client-addr", &client_addr, "--peer-addr", &peer, "--join", &c.endpoints().join(",")])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    // The joining member learns its standing from the members' TLS client ports (before the
    // fix it dialed them in plain text and waited forever), then is promoted and serves.
    let joined = wait_for("node 4 to learn it joined as a learner", Duration::from_secs(30), || async {
        std::fs::read_to_string(&log_path).ok().filter(|l| l.contains("joined as a learner"))
    })
    .await;
    assert!(joined.is_ok(), "{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let promoted = wait_for("node 4 promoted", Duration::from_secs(30), || async {
        client.member_promote(4).await.ok().filter(|m| m.iter().any(|m| m.id == 4 && m.voter))
    })
    .await;
    assert!(promoted.is_ok(), "{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let via4 = client_with(&client_addr, Some(certs.client_tls(true)?)).await?;
    let got = wait_for("node 4 serving", Duration::from_secs(30), || async { via4.get("before").await.ok().flatten() })
        .await?;
    assert_eq!(got.value, b"join".to_vec());
    client.member_remove(4, false).await?;
    assert_no_panics(&c);
    Ok(())
}
