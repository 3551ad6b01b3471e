//! TLS for Conclave's ports (transport layer, shared by the server and the client crate).
//!
//! - [`ServerTls`]: a listener's rustls configuration from a certificate chain, a private key and
//!   optionally a CA whose certificates clients must present (mutual TLS).
//! - [`ClientTls`]: an outgoing connection's configuration: the CA that signs the servers and
//!   optionally this side's own certificate and key (for servers that require one).
//! - [`MaybeTlsStream`]: a TCP stream with or without TLS, for code that serves or dials both.
//!
//! Rotation without restart: both re-read their PEM files before a handshake when any file's
//! modification time or size changed. A new set that does not load (half-written, key not
//! matching the certificate) is logged and the previous configuration stays in use until the
//! files load again; only the first load at start-up fails hard. Connections already open keep
//! the certificates they were made with. Only TLS 1.2 and 1.3 with rustls's safe defaults (ring
//! provider); ALPN `h2`.

mod dial;
mod files;
pub mod identity;
mod stream;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

pub use dial::dial;
pub use files::Error;
use files::{load_certs, load_key, Reloading};
pub use stream::MaybeTlsStream;

/// The ALPN protocol every Conclave port speaks.
const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &std::path::Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca, "CA certificate")? {
        roots.add(cert).map_err(|e| Error::new(ca, "CA certificate", e))?;
    }
    Ok(roots)
}

/// PEM files of a listener: its certificate chain and key, and (mutual TLS) the CA that signs
/// the certificates its callers must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, callers must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS configuration, reloaded when its files change (see the crate docs).
#[derive(Clone)]
pub struct ServerTls {
    config: Reloading<ServerConfig>,
}

impl ServerTls {
    /// Loads the files once (failing now if they do not load).
    ///
    /// # Errors
    /// [`Error`] naming the file that cannot be read or parsed, or the mismatch.
    pub fn new(files: ServerFiles) -> Result<Self, Error> {
        let mut paths = vec![files.cert.clone(), files.key.clone()];
        paths.extend(files.client_ca.clone());
        let build = move || -> Result<ServerConfig, Error> {
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::config(&e))?;
            let builder = match &files.client_ca {
                Some(ca) => {
                    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| Error::new(ca, "CA certificate", e))?;
                    builder.with_client_cert_verifier(verifier)
                }
                None => builder.with_no_client_auth(),
            };
            let certs = load_certs(&files.cert, "certificate")?;
            let key = load_key(&files.key)?;
            let mut config = builder.with_single_cert(certs, key).map_err(|e| Error::new(&files.key, "key", e))?;
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            Ok(config)
        };
        Ok(Self { config: Reloading::new(paths, build)? })
    }

    /// The TLS handshake on an accepted connection, with the current certificates.
    ///
    /// # Errors
    /// The handshake failed (no or untrusted client certificate, protocol mismatch, I/O).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<MaybeTlsStream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.current());
        let tls = acceptor.accept(tcp).await?;
        Ok(MaybeTlsStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }
}

/// PEM files of a dialing side: the CA that signs the servers, and optionally this side's own
/// certificate and key (required by servers with mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFiles {
    /// CA the server's certificate must be signed by.
    pub ca: PathBuf,
    /// This side's certificate chain and key, presented when the server asks.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A dialing side's TLS configuration, reloaded when its files change (see the crate docs).
#[derive(Clone)]
pub struct ClientTls {
    config: Reloading<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads the files once (failing now if they do not load).
    ///
    /// # Errors
    /// [`Error`] naming the file that cannot be read or parsed, or the mismatch.
    pub fn new(files: ClientFiles) -> Result<Self, Error> {
        let mut paths = vec![files.ca.clone()];
        if let Some((cert, key)) = &files.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        let build = move || -> Result<ClientConfig, Error> {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::config(&e))?
                .with_root_certificates(roots(&files.ca)?);
            let mut config = match &files.identity {
                Some((cert, key)) => builder
                    .with_client_auth_cert(load_certs(cert, "certificate")?, load_key(key)?)
                    .map_err(|e| Error::new(key, "key", e))?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            Ok(config)
        };
        Ok(Self { config: Reloading::new(paths, build)? })
    }

    /// The TLS handshake on a connected socket to `host` (a DNS name or an IP address, which the
    /// server's certificate must name), with the current configuration.
    ///
    /// # Errors
    /// An invalid host name, or the handshake failed (untrusted server, I/O).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> std::io::Result<MaybeTlsStream> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("server name {host:?}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.current());
        let tls = connector.connect(name, tcp).await?;
        Ok(MaybeTlsStream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
    }
}

#[cfg(test)]
mod tests;
