//! Certificates for a TLS test cluster, generated at test time: one CA, a client-port and a
//! peer-port certificate shared by every node (naming every 127.0.0.x address, since nodes get
//! their IPs at start), and a client certificate.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use conclave_client::{ClientFiles, ClientTls};
use conclave_tls::test_pki::TestPki;

/// A test CA and the certificates a cluster and its clients use.
pub struct TestCerts {
    /// The CA that signed everything below.
    pub pki: TestPki,
    /// Client-port certificate and key of every node.
    pub node_client: (PathBuf, PathBuf),
    /// Peer-port certificate and key of every node.
    pub node_peer: (PathBuf, PathBuf),
    /// A client's certificate and key (common name `client`).
    pub client: (PathBuf, PathBuf),
}

/// `localhost` and every 127.0.0.x address (where test nodes listen).
pub fn loopback_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    names.extend((1..=254).map(|x| Ipv4Addr::new(127, 0, 0, x).to_string()));
    names
}

impl TestCerts {
    /// Generates the CA and certificates into `dir`.
    ///
    /// # Errors
    /// When generation or writing fails.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        Self::with_names(dir, &loopback_names())
    }

    /// Like [`TestCerts::new`], with node certificates naming `names` (DNS names or IPs).
    ///
    /// # Errors
    /// When generation or writing fails.
    pub fn with_names(dir: &Path, names: &[String]) -> anyhow::Result<Self> {
        let pki = TestPki::new(dir, "cluster")?;
        let node_client = pki.issue("node-client", "conclave node", names)?;
        let node_peer = pki.issue("node-peer", "conclave peer", names)?;
        let client = pki.issue("client", "client", &[])?;
        Ok(Self { pki, node_client, node_peer, client })
    }

    /// Flags of a node: TLS on both ports, mutual TLS on the peer port, and on the client port
    /// when `client_mtls`.
    pub fn server_args(&self, client_mtls: bool) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        let mut args = vec![
            "--client-cert".into(),
            path(&self.node_client.0),
            "--client-key".into(),
            path(&self.node_client.1),
            "--peer-cert".into(),
            path(&self.node_peer.0),
            "--peer-key".into(),
            path(&self.node_peer.1),
            "--peer-ca".into(),
            path(&self.pki.ca()),
        ];
        if client_mtls {
            args.extend(["--client-ca".into(), path(&self.pki.ca())]);
        }
        args
    }

    /// A client's TLS: trusts the CA; presents the client certificate when `with_cert`.
    ///
    /// # Errors
    /// When the files do not load.
    pub fn client_tls(&self, with_cert: bool) -> anyhow::Result<ClientTls> {
        let identity = with_cert.then(|| self.client.clone());
        Ok(ClientTls::new(ClientFiles { ca: self.pki.ca(), identity })?)
    }
}
