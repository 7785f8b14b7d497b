//! A certificate authority made for one test, and TLS servers with certificates it signs:
//! the stand-in for a public webhook receiver or email provider over https.

use std::path::PathBuf;
use std::sync::Arc;

/// A CA generated for the test, its certificate written to a PEM file (for `SSL_CERT_FILE`).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mp3conv test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_file = dir.path().join("ca.pem");
        std::fs::write(&pem_file, certificate.pem()).unwrap();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem_file,
            _dir: dir,
        }
    }

    /// A TLS acceptor whose certificate, signed by this CA, names `host` (and 127.0.0.1).
    pub fn acceptor(&self, host: &str) -> tokio_rustls::TlsAcceptor {
        let params =
            rcgen::CertificateParams::new(vec![host.to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
