//! TLS for the host's outbound connections: one process-wide crypto provider (ring), and one
//! client configuration built at start-up that trusts the Mozilla roots (`webpki-roots`) plus
//! any certificates in the file `SSL_CERT_FILE` names (a private CA, or a local test CA), as
//! OpenSSL-based tools read it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Installs ring as the process's rustls crypto provider. rustls cannot choose one itself when
/// a build links more than one (the native worker's dependencies bring aws-lc-rs), and every
/// TLS client (the host's outbound HTTP, reqwest in the client and the eventing bridge) takes
/// the process default. Idempotent; call it before building any TLS client.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client configuration for outbound https: the Mozilla root certificates, plus those in
/// `extra_roots` (PEM, e.g. from `SSL_CERT_FILE`).
pub fn client_config(extra_roots: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .with_context(|| format!("cannot read certificates from {}", path.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "{} holds no PEM certificates",
            path.display()
        );
        let (added, ignored) = roots.add_parsable_certificates(certificates);
        tracing::info!(
            path = %path.display(),
            added,
            ignored,
            "trusting extra root certificates for outbound https"
        );
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: that is what the outbound connection speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_be_readable_certificates() {
        assert!(client_config(None).is_ok());
        let dir = std::env::temp_dir().join(format!("mp3conv-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(
            format!("{err:#}").contains("no PEM certificates"),
            "{err:#}"
        );
        let missing = dir.join("missing.pem");
        assert!(client_config(Some(&missing)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
