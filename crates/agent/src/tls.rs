//! How the agent decides to trust the server: TLS 1.2/1.3 only, and one of
//! - pinned public keys (`pin_sha256`): the server's certificate must carry one of them; no CA
//!   is consulted, like an SSH host key;
//! - a CA file (`ca_file`): the chain must lead to a certificate in that file, and only there;
//! - otherwise the system's trusted roots.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::{AgentConfig, ConfigError};

/// The TLS client configuration for `cfg`.
pub fn client_config(cfg: &AgentConfig) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError(format!("TLS setup failed: {e}")))?;
    let config = if !cfg.pins.is_empty() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pins: cfg.pins.clone(),
                algs: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        let roots = match &cfg.ca_file {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError(format!("ca_file {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ConfigError(format!(
            "ca_file {} holds no usable PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(ConfigError(
            "no trusted root certificates found on this system; install ca-certificates or set ca_file"
                .into(),
        ));
    }
    Ok(roots)
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo: what `pin_sha256` holds.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], String> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("bad certificate: {e}"))?;
    Ok(Sha256::digest(ee.subject_public_key_info().as_ref()).into())
}

#[derive(Debug)]
struct Pinned {
    pins: Vec<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The handshake signature checks below prove the server holds the pinned key's private
        // half; that is the whole of the trust decision here.
        let hash = spki_sha256(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self.pins.contains(&hash) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The provider this crate uses, for callers that need one (e.g. to fetch a pin).
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}
