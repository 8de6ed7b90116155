//! TLS on the public listener, with rustls: TLS 1.2 and 1.3 only (rustls implements nothing
//! older), HTTP/1.1. The certificate chain and key come from `[server] tls_cert` / `tls_key`;
//! a reload (SIGHUP) that loads a new pair swaps it for every new handshake, while connections
//! already open keep theirs.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate every handshake presents: the last one loaded.
#[derive(Debug)]
pub struct Certificate {
    current: ArcSwap<CertifiedKey>,
}

impl Certificate {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Certificate> {
        Arc::new(Certificate {
            current: ArcSwap::new(key),
        })
    }

    /// Presents `key` from the next handshake on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration of the public listener.
pub fn server_config(certificate: Arc<Certificate>) -> rustls::ServerConfig {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&versions)
    .expect("ring supports TLS 1.2 and 1.3")
    .with_no_client_auth()
    .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The certificates in the PEM file at `path`: at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read certificates from {}: {err}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certificates)
}

/// Reads a PEM certificate chain and its private key, and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_certificates(cert)?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("cannot read a private key from {}: {err}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|err| format!("unusable private key in {}: {err}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|err| {
        format!(
            "the key in {} does not match the certificate in {}: {err}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}
