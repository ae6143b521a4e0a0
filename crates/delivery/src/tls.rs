//! TLS client settings shared by the senders: rustls with the ring provider, TLS 1.2 and 1.3
//! only, Mozilla's roots (webpki-roots) plus an optional private CA from a PEM file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ConfigError;

/// Reads every certificate in a PEM file. An unreadable file, or one without a certificate,
/// is a configuration error naming the setting.
pub(crate) fn load_ca_file(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(format!("{what}: cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(format!("{what}: {} is not valid PEM: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!(
            "{what}: {} holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A rustls client configuration with an explicit provider. Several crates in the process may
/// enable rustls providers, so nothing here relies on a process-wide default.
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
    what: &str,
) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| {
            ConfigError::new(format!(
                "{what}: a certificate in the CA file is unusable: {e}"
            ))
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| ConfigError::new(format!("{what}: TLS setup failed: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

/// Whether a TLS failure (unknown issuer, wrong name, handshake alert) is somewhere in the
/// error's chain. lettre and reqwest both report these as connection errors; telling them
/// apart gives the admin the right hint. `io::Error` hides its payload from `source()`, so it
/// is unwrapped with `get_ref`.
pub(crate) fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<rustls::Error>() {
            return true;
        }
        let in_io = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| is_tls_error(inner));
        if in_io {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = load_ca_file(&p, "sms.ca_file").unwrap_err();
        assert!(
            e.0.contains("sms.ca_file") && e.0.contains("no certificate"),
            "{e}"
        );
        let e = load_ca_file(&dir.path().join("nope.pem"), "smtp.ca_file").unwrap_err();
        assert!(e.0.contains("cannot read"), "{e}");
    }

    #[test]
    fn finds_tls_errors_inside_io_errors() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert!(is_tls_error(&tls));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_error(&plain));
    }

    #[test]
    fn builds_with_webpki_roots() {
        let c = client_config(&[], "x").unwrap();
        assert!(c.alpn_protocols.is_empty());
    }
}
