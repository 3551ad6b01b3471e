//! TLS flags of `conclave serve`: the client port and the peer port are configured
//! independently. Validated into [`TlsConfig`] (which files, which side) by [`TlsArgs::validate`];
//! the files themselves are loaded (and reloaded when they change) by `conclave-tls`.

use std::path::PathBuf;

use clap::Args;
use conclave_tls::{ClientFiles, ServerFiles};

/// TLS flags.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM) of the client port. With --client-key: clients connect over TLS.
    /// Re-read when the file changes (rotation without restart).
    #[arg(long, env = "CONCLAVE_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "CONCLAVE_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// CA (PEM) of client certificates: clients must present a certificate it signed (mutual
    /// TLS, as etcd's --client-cert-auth --trusted-ca-file). Without it, any client may connect.
    #[arg(long, env = "CONCLAVE_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Certificate chain (PEM) of this member on the peer port, presented both when serving and
    /// when dialing other members (so it must allow server and client use). Needs --peer-key and
    /// --peer-ca.
    #[arg(long, env = "CONCLAVE_PEER_CERT", value_name = "FILE")]
    pub peer_cert: Option<PathBuf>,
    /// Private key (PEM) of --peer-cert.
    #[arg(long, env = "CONCLAVE_PEER_KEY", value_name = "FILE")]
    pub peer_key: Option<PathBuf>,
    /// CA (PEM) that signs every member's peer certificate: a member accepts peer traffic only
    /// from certificates it signed, and dials only members whose certificates it signed.
    #[arg(long, env = "CONCLAVE_PEER_CA", value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
}

/// Which ports use TLS, with which files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The client port's files (None: plain TCP).
    pub client: Option<ServerFiles>,
    /// The peer port's files (None: plain TCP): served with mutual TLS, and dialed with them.
    pub peer: Option<PeerFiles>,
}

/// A member's peer-port TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFiles {
    /// This member's certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA of every member's certificate.
    pub ca: PathBuf,
}

impl PeerFiles {
    /// The listening side: mutual TLS against the peer CA.
    pub fn server(&self) -> ServerFiles {
        ServerFiles { cert: self.cert.clone(), key: self.key.clone(), client_ca: Some(self.ca.clone()) }
    }

    /// The dialing side: verifies members against the peer CA, presents this member's certificate.
    pub fn client(&self) -> ClientFiles {
        ClientFiles { ca: self.ca.clone(), identity: Some((self.cert.clone(), self.key.clone())) }
    }
}

impl TlsConfig {
    /// How a member started with `--join` dials the other members' client ports: plain when
    /// its own client port is plain (the cluster's are taken to be alike); with TLS otherwise,
    /// trusting `--client-ca` (else the peer CA) and presenting the member's peer certificate
    /// (it has client-auth usage), which a client port with mutual TLS accepts when the same CA
    /// signed it.
    ///
    /// # Errors
    /// TLS on the client port with neither `--client-ca` nor peer TLS: no CA to verify the
    /// members' client-port certificates with.
    pub fn join_dialing(&self) -> Result<Option<ClientFiles>, String> {
        let Some(client) = &self.client else { return Ok(None) };
        let identity = self.peer.as_ref().map(|p| (p.cert.clone(), p.key.clone()));
        match (&client.client_ca, &self.peer) {
            (Some(ca), _) => Ok(Some(ClientFiles { ca: ca.clone(), identity })),
            (None, Some(peer)) => Ok(Some(ClientFiles { ca: peer.ca.clone(), identity })),
            (None, None) => Err("--join with TLS on the client port needs a CA to verify the members' client \
                                 ports with: give --client-ca or the peer TLS flags (--peer-cert, --peer-key, --peer-ca)"
                .into()),
        }
    }
}

impl TlsArgs {
    /// Checks that the flags of each port go together.
    ///
    /// # Errors
    /// A message naming the missing flag.
    pub fn validate(&self) -> Result<TlsConfig, String> {
        let client = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                Some(ServerFiles { cert: cert.clone(), key: key.clone(), client_ca: self.client_ca.clone() })
            }
            (None, None) if self.client_ca.is_some() => {
                return Err("--client-ca needs --client-cert and --client-key (TLS on the client port)".into())
            }
            (None, None) => None,
            _ => return Err("--client-cert and --client-key go together".into()),
        };
        let peer = match (&self.peer_cert, &self.peer_key, &self.peer_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Some(PeerFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() })
            }
            (None, None, None) => None,
            _ => {
                return Err("peer TLS needs all of --peer-cert, --peer-key and --peer-ca (members authenticate \
                            each other with certificates signed by the peer CA)"
                    .into())
            }
        };
        Ok(TlsConfig { client, peer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_a_port_go_together() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(TlsArgs::default().validate(), Ok(TlsConfig::default()));
        let server_only = TlsArgs { client_cert: p("c"), client_key: p("k"), ..TlsArgs::default() };
        assert_eq!(server_only.validate().map(|c| c.client.map(|f| f.client_ca)), Ok(Some(None)));
        let mtls = TlsArgs { client_ca: p("ca"), ..server_only.clone() };
        assert_eq!(mtls.validate().map(|c| c.client.and_then(|f| f.client_ca)), Ok(p("ca")));
        let no_key = TlsArgs { client_cert: p("c"), ..TlsArgs::default() };
        assert!(no_key.validate().expect_err("no key").contains("--client-key"));
        let ca_only = TlsArgs { client_ca: p("ca"), ..TlsArgs::default() };
        assert!(ca_only.validate().is_err());
        let peer_no_ca = TlsArgs { peer_cert: p("c"), peer_key: p("k"), ..TlsArgs::default() };
        assert!(peer_no_ca.validate().expect_err("no ca").contains("--peer-ca"));
        let peer = TlsArgs { peer_ca: p("ca"), ..peer_no_ca };
        assert!(peer.validate().expect("valid").peer.is_some());
    }

    #[test]
    fn join_dials_client_ports_like_they_serve() {
        let p = |s: &str| Some(PathBuf::from(s));
        let config = |args: TlsArgs| args.validate().expect("valid");
        assert_eq!(config(TlsArgs::default()).join_dialing(), Ok(None), "plain client ports: plain");
        let server_only = TlsArgs { client_cert: p("c"), client_key: p("k"), ..TlsArgs::default() };
        assert!(config(server_only.clone()).join_dialing().expect_err("no CA").contains("--client-ca"));
        let with_peer = TlsArgs { peer_cert: p("pc"), peer_key: p("pk"), peer_ca: p("pca"), ..server_only.clone() };
        let files = config(with_peer.clone()).join_dialing().expect("ok").expect("tls");
        assert_eq!((files.ca, files.identity), (PathBuf::from("pca"), Some(("pc".into(), "pk".into()))));
        let mtls = TlsArgs { client_ca: p("cca"), ..with_peer };
        let files = config(mtls).join_dialing().expect("ok").expect("tls");
        assert_eq!(files.ca, PathBuf::from("cca"), "the client CA verifies client ports");
    }
}
