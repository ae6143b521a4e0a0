//! `sspr-logon pin`: connects once, trusting nothing, and prints the key the server presents,
//! so that an administrator can pin it after checking it out of band (trust on first use).

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

pub fn fetch(server: &str) -> Result<String, String> {
    let hostport = server
        .trim()
        .trim_end_matches('/')
        .strip_prefix("https://")
        .ok_or("--server must be https://host[:port]")?;
    // `host`, `host:port`, `[v6]`, `[v6]:port`.
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if h.ends_with(']') || !h.contains(':') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("bad port in {server}"))?,
        ),
        _ => (hostport, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let provider = Arc::new(sspr_agent::tls::provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let mut tls = StreamOwned::new(conn, tcp);
    tls.flush()
        .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    let hash = sspr_agent::tls::spki_sha256(leaf)?;
    Ok(format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    ))
}

/// Accepts any certificate: only used to read the key, never to send anything.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
