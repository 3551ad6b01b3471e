use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::test_pki::TestPki;
use crate::{ClientFiles, ClientTls, ServerFiles, ServerTls};

fn localhost() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// Serves one byte echo per accepted connection until dropped.
async fn echo_server(tls: ServerTls) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = tls.accept(tcp).await {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                        let _ = s.flush().await;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Whether a TLS round trip through the echo server works with this client configuration.
async fn round_trip(addr: &str, client: &ClientTls) -> bool {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut s = client.connect("127.0.0.1", tcp).await?;
        s.write_all(b"x").await?;
        s.flush().await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        std::io::Result::Ok(b == *b"x")
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), attempt).await, Ok(Ok(true)))
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path(), "main").expect("ca");
    let other = TestPki::new(dir.path(), "other").expect("ca");
    let (cert, key) = pki.issue("server", "server", &localhost()).expect("issue");
    let (client_cert, client_key) = pki.issue("client", "alice", &[]).expect("issue");
    let (rogue_cert, rogue_key) = other.issue("rogue", "mallory", &[]).expect("issue");
    let server = ServerTls::new(ServerFiles { cert, key, client_ca: Some(pki.ca()) }).expect("server");
    let (addr, task) = echo_server(server).await;

    let with = |identity| ClientTls::new(ClientFiles { ca: pki.ca(), identity }).expect("client");
    assert!(round_trip(&addr, &with(Some((client_cert, client_key)))).await, "a client of the CA gets through");
    assert!(!round_trip(&addr, &with(None)).await, "no certificate: refused");
    assert!(!round_trip(&addr, &with(Some((rogue_cert, rogue_key)))).await, "another CA's certificate: refused");
    let wrong_ca = ClientTls::new(ClientFiles { ca: other.ca(), identity: None }).expect("client");
    assert!(!round_trip(&addr, &wrong_ca).await, "a server the client's CA did not sign is refused");
    task.abort();
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = TestPki::new(dir.path(), "old").expect("ca");
    let new_ca = TestPki::new(dir.path(), "new").expect("ca");
    let (cert, key) = old_ca.issue("server", "server", &localhost()).expect("issue");
    let server = ServerTls::new(ServerFiles { cert, key, client_ca: None }).expect("server");
    let (addr, task) = echo_server(server).await;
    let trusts_old = ClientTls::new(ClientFiles { ca: old_ca.ca(), identity: None }).expect("client");
    let trusts_new = ClientTls::new(ClientFiles { ca: new_ca.ca(), identity: None }).expect("client");
    assert!(round_trip(&addr, &trusts_old).await);
    assert!(!round_trip(&addr, &trusts_new).await);

    // A half-written rotation (a key that does not match) keeps the old pair in service.
    std::fs::write(dir.path().join("server-key.pem"), new_ca_key_pem(&new_ca, dir.path())).expect("write");
    assert!(round_trip(&addr, &trusts_old).await, "a broken rotation keeps serving the previous certificate");

    new_ca.issue("server", "server", &localhost()).expect("rotate");
    assert!(round_trip(&addr, &trusts_new).await, "the new certificate is served");
    assert!(!round_trip(&addr, &trusts_old).await, "the old one is gone");
    task.abort();
}

/// A private key that matches no certificate in use.
fn new_ca_key_pem(pki: &TestPki, dir: &std::path::Path) -> Vec<u8> {
    let (_, key) = pki.issue("unrelated", "x", &[]).expect("issue");
    assert!(key.starts_with(dir));
    std::fs::read(key).expect("read")
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path(), "main").expect("ca");
    let (cert, _) = pki.issue("a", "a", &localhost()).expect("issue");
    let (_, other_key) = pki.issue("b", "b", &localhost()).expect("issue");
    let missing = dir.path().join("missing.pem");
    let e = ServerTls::new(ServerFiles { cert: missing.clone(), key: other_key.clone(), client_ca: None })
        .err()
        .expect("missing file");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = ServerTls::new(ServerFiles { cert, key: other_key, client_ca: None }).err().expect("mismatched key");
    assert!(e.to_string().contains("b-key.pem"), "{e}");
    let e = ClientTls::new(ClientFiles { ca: pki.ca().with_file_name("nope.pem"), identity: None }).expect_err("ca");
    assert!(e.to_string().contains("nope.pem"), "{e}");
}
