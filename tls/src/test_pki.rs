//! Certificates generated at test time (feature `test-pki`): a CA and leaf certificates signed by
//! it, written as PEM files. For tests only: keys are written unencrypted next to the certificates.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::Error;

/// A CA in a directory, issuing leaf certificates.
pub struct TestPki {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::config(&e)
}

impl TestPki {
    /// A new CA named `name`, its certificate written to `dir/{name}-ca.pem`.
    ///
    /// # Errors
    /// When the key cannot be generated or the file written.
    pub fn new(dir: &Path, name: &str) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).map_err(err)?;
        std::fs::create_dir_all(dir).map_err(err)?;
        let pki = Self { dir: dir.to_path_buf(), name: name.to_owned(), issuer: Issuer::new(params, key) };
        std::fs::write(pki.ca(), cert.pem()).map_err(err)?;
        Ok(pki)
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues a certificate with common name `cn` for `names` (DNS names or IP addresses),
    /// usable by servers and clients; writes `dir/{stem}.pem` and `dir/{stem}-key.pem` (replacing
    /// them, as a rotation would) and returns (certificate, key) paths.
    ///
    /// # Errors
    /// When signing or writing fails.
    pub fn issue(&self, stem: &str, cn: &str, names: &[String]) -> Result<(PathBuf, PathBuf), Error> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        let (cert_path, key_path) = (self.dir.join(format!("{stem}.pem")), self.dir.join(format!("{stem}-key.pem")));
        // Key first, then the certificate: a reader between the two sees a mismatch and keeps
        // its previous pair (see `Reloading`).
        write_replacing(&key_path, &key.serialize_pem())?;
        write_replacing(&cert_path, &cert.pem())?;
        Ok((cert_path, key_path))
    }
}

/// Writes through a temporary file and a rename, as a careful operator (or cert-manager) does.
fn write_replacing(path: &Path, contents: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
