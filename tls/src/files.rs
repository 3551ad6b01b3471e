//! PEM loading and the reload-on-change holder behind [`crate::ServerTls`] and [`crate::ClientTls`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file that cannot be used, or a configuration rustls refuses; the message names the
/// file and what it should hold.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    pub(crate) fn new(path: &Path, what: &str, e: impl std::fmt::Display) -> Self {
        Self(format!("TLS {what} {}: {e}", path.display()))
    }

    pub(crate) fn config(e: &dyn std::fmt::Display) -> Self {
        Self(format!("TLS configuration: {e}"))
    }
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::new(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::new(path, what, e))?;
    if certs.is_empty() {
        return Err(Error::new(path, what, "no PEM CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::new(path, "private key", e))
}

type Fingerprint = Vec<Option<(SystemTime, u64)>>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths.iter().map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

/// A configuration built from files, rebuilt when their modification time or size changes.
pub(crate) struct Reloading<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

type Build<T> = Box<dyn Fn() -> Result<T, Error> + Send + Sync>;

struct Inner<T> {
    paths: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<(Fingerprint, Arc<T>)>,
}

impl<T> Reloading<T> {
    /// Builds once from `paths` with `build`.
    pub(crate) fn new(
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let seen = fingerprint(&paths);
        let first = Arc::new(build()?);
        Ok(Self { inner: Arc::new(Inner { paths, build: Box::new(build), state: Mutex::new((seen, first)) }) })
    }

    /// The configuration for the next handshake: rebuilt first if the files changed since the
    /// last look; the previous one when the changed files do not load (logged).
    pub(crate) fn current(&self) -> Arc<T> {
        let now = fingerprint(&self.inner.paths);
        let mut state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 != now {
            state.0 = now;
            match (self.inner.build)() {
                Ok(config) => {
                    state.1 = Arc::new(config);
                    tracing::info!(files = ?self.inner.paths, "TLS certificates reloaded");
                }
                Err(e) => tracing::warn!("TLS files changed but do not load ({e}); keeping the previous certificates"),
            }
        }
        state.1.clone()
    }
}
