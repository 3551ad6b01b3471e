//! `--tls`: one CA generated at start signs every member's certificates (naming every 127.0.0.x
//! and 127.0.1.x address, where members listen); clients verify servers against it (server-only
//! TLS on client ports) and members authenticate each other with it (mutual TLS on peer ports).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;

use conclave_client::ClientTls;
use conclave_testkit::tls::TestCerts;

/// Certificates and the clients' TLS of a `--tls` run.
pub struct BenchTls {
    /// Files of the members.
    pub certs: TestCerts,
    /// What every client uses (trusts the CA, presents no certificate).
    pub client: ClientTls,
}

static TLS: OnceLock<BenchTls> = OnceLock::new();

/// Turns TLS on for every target started from now on; certificates go to `dir`.
///
/// # Errors
/// When the certificates cannot be generated.
pub fn enable(dir: &Path) -> anyhow::Result<()> {
    let mut names = vec!["localhost".to_owned()];
    for third in [0, 1] {
        names.extend((1..=254).map(|x| Ipv4Addr::new(127, 0, third, x).to_string()));
    }
    let certs = TestCerts::with_names(dir, &names)?;
    let client = certs.client_tls(false)?;
    let _ = TLS.set(BenchTls { certs, client });
    Ok(())
}

/// The run's TLS, if `--tls`.
pub fn get() -> Option<&'static BenchTls> {
    TLS.get()
}
