//! TLS on the ZooKeeper port: it takes the client port's options (`--client-cert/--client-key`,
//! client certificates required with `--client-ca`). A client with a certificate from the CA
//! gets a session; one without a certificate, or speaking plain text, gets no ZooKeeper answer
//! and the refusal is logged; kazoo connects over TLS (when `target/kazoo-venv` exists).

use std::path::PathBuf;
use std::time::Duration;

use conclave_client::ClientTls;
use conclave_proto::zookeeper::op;
use conclave_server::zk::codec::{frame, open_acl, ConnectResponse, Reader, Writer};
use conclave_testkit::tls::TestCerts;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::assert_no_panics;
use crate::zookeeper::{new_session, read_frame, zk_addr, zk_cluster_tls};

/// Runs the connect handshake over `s`; the session's response, or `None` when the server
/// closed the connection or answered nothing within 5 s.
async fn handshake(s: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> Option<ConnectResponse> {
    let attempt = async {
        s.write_all(&frame(&new_session().encode())).await.ok()?;
        ConnectResponse::decode(&read_frame(s).await.ok()?).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten()
}

/// A TLS connection to the ZooKeeper port `addr` made with `tls`, if the handshake passes.
async fn dial(addr: &str, tls: &ClientTls) -> Option<conclave_tls::MaybeTlsStream> {
    let host = addr.rsplit_once(':')?.0;
    conclave_tls::dial(addr.parse().ok()?, host, None, Some(tls)).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_zookeeper_port_serves_tls_with_the_client_ports_options() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = TestCerts::new(dir.path())?;
    let z = zk_cluster_tls(certs.server_args(true), Some(certs.client_tls(true)?)).await?;
    let addr = zk_addr(&z, 1);

    // With a client certificate: a session, then a create answered over TLS.
    let with_cert = certs.client_tls(true)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut s, session) = loop {
        if let Some(mut s) = dial(&addr, &with_cert).await {
            if let Some(session) = handshake(&mut s).await {
                break (s, session);
            }
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no ZooKeeper session over TLS within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(session.timeout_ms > 0, "a session was granted");
    let mut w = Writer::default();
    w.int(1).int(op::CREATE).string("/over-tls").buffer(b"x").acls(&[open_acl()]).int(0);
    s.write_all(&frame(&w.into_inner())).await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s)).await??;
    let mut r = Reader::new(&reply);
    let (xid, _zxid, err) = (r.int()?, r.long()?, r.int()?);
    assert_eq!((xid, err, r.string()?.as_str()), (1, 0, "/over-tls"));

    // Without a certificate (mutual TLS), or in plain text: no ZooKeeper answer.
    let anonymous = certs.client_tls(false)?;
    let refused = match dial(&addr, &anonymous).await {
        None => true,
        Some(mut s) => handshake(&mut s).await.is_none(),
    };
    assert!(refused, "a client without a certificate gets no session");
    let mut plain = tokio::net::TcpStream::connect(&addr).await?;
    assert!(handshake(&mut plain).await.is_none(), "a plain-text client gets no session");
    let logged = conclave_testkit::wait_for("the refusal in the log", Duration::from_secs(10), || async {
        z.c.nodes()
            .iter()
            .any(|n| n.log().contains("port=\"zookeeper\"") && n.log().contains("TLS handshake refused"))
            .then_some(())
    })
    .await;
    assert!(logged.is_ok(), "refusals on the ZooKeeper port are logged with the port's name");

    kazoo_over_tls(&certs, &addr)?;
    assert_no_panics(&z.c);
    Ok(())
}

/// kazoo (`KazooClient(use_ssl=True, ...)`) creates and reads a node over mutual TLS, when the
/// venv `server/tests/zk/run_kazoo.sh` builds exists; otherwise says how to get it.
fn kazoo_over_tls(certs: &TestCerts, addr: &str) -> anyhow::Result<()> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/kazoo-venv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPED the kazoo part: {} is missing; run server/tests/zk/run_kazoo.sh once to create it",
            python.display()
        );
        return Ok(());
    }
    let script = r#"
import sys
from kazoo.client import KazooClient
addr, ca, cert, key = sys.argv[1:5]
zk = KazooClient(hosts=addr, use_ssl=True, verify_certs=True, ca=ca, certfile=cert, keyfile=key)
zk.start(timeout=30)
zk.create("/kazoo-tls", b"hello")
data, stat = zk.get("/over-tls")
print("got", zk.get("/kazoo-tls")[0].decode(), data.decode())
zk.stop()
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(addr)
        .arg(certs.pki.ca())
        .arg(&certs.client.0)
        .arg(&certs.client.1)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("got hello x"),
        "kazoo over TLS: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
