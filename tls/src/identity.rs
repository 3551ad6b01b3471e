//! The identity a verified client certificate names, for authentication (`conclave serve
//! --auth` with `--client-ca`): its subject's common name, or its first DNS name when it has no
//! CN (etcd's rule). The certificate was verified against the client CA during the handshake.

use tonic::transport::server::TcpConnectInfo;

/// What tonic records about each connection (request extensions): the TCP addresses, and the
/// user name of the client certificate, if the client presented one.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Local and remote addresses.
    pub tcp: TcpConnectInfo,
    /// The client certificate's CN (or first DNS SAN); `None` without a certificate.
    pub client_name: Option<String>,
}

/// The CN, else the first DNS SAN, of a DER certificate; `None` when it has neither or does not parse.
pub fn certificate_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        if !cn.is_empty() {
            return Some(cn.to_owned());
        }
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
        _ => None,
    })
}
