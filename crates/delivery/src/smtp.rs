//! Email through an SMTP relay.
//!
//! Connections are kept open between messages (up to `pool_size`), so a burst of codes does
//! not pay a TCP + TLS + EHLO + AUTH round trip per message.
//!
//! # Deadline
//!
//! Every send is one SMTP transaction bounded, as a whole, by `timeout_secs`: taking or
//! opening a connection (TCP, TLS, greeting, EHLO, STARTTLS, AUTH), MAIL, RCPT, DATA and the
//! reply to the end of the message. lettre's own `timeout` bounds only the TCP connect of its
//! async client (0.11: `AsyncNetworkStream::connect_tokio1`); a relay that accepts the
//! connection and then says nothing would hold its pooled transport forever. That is why
//! this module drives lettre's `AsyncSmtpConnection` itself rather than `AsyncSmtpTransport`:
//! a transaction cut short by the deadline drops (closes) its connection, where lettre's pool
//! would put a connection with a reply still outstanding back for the next message.
//!
//! # Once, and the same Message-ID
//!
//! `send` returns as soon as the relay answered 250 to the end of DATA, before anything else
//! happens on the connection (it is parked for reuse; no QUIT), so the worker records the
//! message as sent at the earliest possible moment. Should a copy still be sent twice (the
//! process died in between), both carry the same `Message-ID`, built from the outbox row
//! alone: `<sspr.{id}.{created_at}@{domain of smtp.from}>`.
//!
//! # TLS
//!
//! rustls in both cases: Mozilla's roots (webpki-roots) plus the optional `ca_file`, TLS 1.2
//! and 1.3 only (rustls has no older versions at all). STARTTLS is lettre's, built from
//! [`lettre::transport::smtp::client::TlsParameters`] (lettre 0.11 takes no ready
//! `rustls::ClientConfig`; it uses ring, the `ring` feature). Implicit TLS (port 465) is done
//! here with tokio-rustls and the configuration the SMS client uses ([`crate::tls`]), because
//! the socket is opened here (next section) and handed to lettre already encrypted.
//!
//! # Nagle (`TCP_NODELAY`)
//!
//! The end of DATA is written as the body and then a separate `"\r\n.\r\n"`, then the reply
//! is read: a write-write-read pattern in which Nagle holds the terminator until the relay's
//! delayed ACK of the body arrives, up to ~40 ms on Linux, on every message of a reused
//! connection: about 22 messages/s per connection, 90/s with the default `pool_size` of 4
//! (`bench/delivery.py`). lettre 0.11 never calls `set_nodelay` on the sockets it opens, so the
//! socket is opened here, with Nagle off, and handed to lettre
//! (`AsyncSmtpConnection::connect_with_transport`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters, TlsVersion,
};
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use sspr_app::ports::OutboxMessage;
use sspr_domain::mask;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::secret::{read_secret_file, redact};
use crate::{ConfigError, SendError, Sender};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all. Only with `allow_insecure = true`, for a relay on the same host.
    None,
}

/// The `[smtp]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults to 587 (starttls), 465 (implicit) or 25 (none).
    pub port: Option<u16>,
    pub tls: SmtpTls,
    /// Permits `tls = "none"`.
    pub allow_insecure: bool,
    /// Empty: no authentication.
    pub username: String,
    /// Never read from the configuration file: see [`SmtpConfig::load_secrets`].
    #[serde(skip)]
    pub password: String,
    pub password_file: Option<PathBuf>,
    /// Sender address, e.g. `"Password reset <sspr@example.com>"`.
    pub from: String,
    /// PEM file with a private CA, trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// Deadline for one whole send: connecting (TCP, TLS, greeting, EHLO, AUTH) and the
    /// transaction up to the relay's answer to the message.
    pub timeout_secs: u64,
    /// Most connections open to the relay, and so most emails sent at the same time.
    pub pool_size: u32,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            tls: SmtpTls::Starttls,
            allow_insecure: false,
            username: String::new(),
            password: String::new(),
            password_file: None,
            from: String::new(),
            ca_file: None,
            timeout_secs: 15,
            pool_size: 4,
        }
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("allow_insecure", &self.allow_insecure)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("password_file", &self.password_file)
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl SmtpConfig {
    /// Reads `password` from `password_file` when one is set (the CLI may instead fill
    /// `password` itself).
    pub fn load_secrets(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.password_file {
            self.password = read_secret_file(path, "smtp.password_file")?;
        }
        Ok(())
    }

    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        })
    }

    /// Checks everything that can be checked without a network; returns the parsed sender.
    pub fn validate(&self) -> Result<Mailbox, ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::new(
                "smtp.host is empty: set it to your mail relay, e.g. \"smtp.example.com\"",
            ));
        }
        if self.tls == SmtpTls::None && !self.allow_insecure {
            return Err(ConfigError::new(
                "smtp.tls = \"none\" sends codes and credentials in clear text: use \"starttls\" or \"implicit\", \
                 or set smtp.allow_insecure = true for a relay on this host",
            ));
        }
        if self.port == Some(0) {
            return Err(ConfigError::new("smtp.port must be between 1 and 65535"));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 40 {
            // The worker's deadline is this plus 2 s, and the lease (60 s) must outlast it.
            return Err(ConfigError::new(
                "smtp.timeout_secs must be between 1 and 40",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(ConfigError::new("smtp.pool_size must be between 1 and 64"));
        }
        if !self.username.is_empty() && self.password.is_empty() {
            return Err(ConfigError::new(
                "smtp.username is set but no password: set smtp.password_file to a file holding it",
            ));
        }
        if self.username.is_empty() && !self.password.is_empty() {
            return Err(ConfigError::new(
                "smtp.password is set but smtp.username is empty",
            ));
        }
        let from: Mailbox = self.from.parse().map_err(|_| {
            ConfigError::new(format!(
                "smtp.from {:?} is not an address: use \"sspr@example.com\" or \"Password reset <sspr@example.com>\"",
                self.from
            ))
        })?;
        Ok(from)
    }
}

/// How long an idle connection is kept for the next message.
const IDLE_KEEP: Duration = Duration::from_secs(60);

/// Email through an SMTP relay, with connections kept open between messages.
pub struct SmtpSender {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// STARTTLS (lettre's).
    tls_params: Option<TlsParameters>,
    /// Implicit TLS (ours): the connector and the name the certificate must carry.
    implicit: Option<(TlsConnector, ServerName<'static>)>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    pool_size: usize,
    /// Open connections not in use, with when they were parked.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    from: Mailbox,
}

impl SmtpSender {
    /// Connects, greets and (if configured) authenticates, then hangs up: `sspr doctor`.
    /// Bounded by `timeout_secs` like a send.
    pub async fn check(&self) -> Result<(), String> {
        let check = async {
            let mut conn = self.connect().await.map_err(|e| e.to_string())?;
            if !conn.test_connected().await {
                return Err("the server did not answer NOOP".to_string());
            }
            let _ = conn.quit().await;
            Ok(())
        };
        match tokio::time::timeout(self.timeout, check).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no complete answer within {}s (smtp.timeout_secs)",
                self.timeout.as_secs()
            )),
        }
    }

    /// Builds the sender. Connects lazily, on the first message. Must be called within a
    /// tokio runtime.
    pub fn new(cfg: &SmtpConfig) -> Result<Self, ConfigError> {
        let from = cfg.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "SmtpSender::new must be called within a tokio runtime",
            ));
        }
        let host = cfg.host.trim().to_string();
        let (tls_params, implicit) = match cfg.tls {
            SmtpTls::None => (None, None),
            SmtpTls::Starttls => (Some(tls_parameters(cfg, &host)?), None),
            SmtpTls::Implicit => (None, Some(implicit_tls(cfg, &host)?)),
        };
        let credentials = (!cfg.username.is_empty())
            .then(|| Credentials::new(cfg.username.clone(), cfg.password.clone()));
        Ok(Self {
            host,
            port: cfg.effective_port(),
            tls: cfg.tls,
            tls_params,
            implicit,
            credentials,
            hello: ClientId::default(),
            timeout: Duration::from_secs(cfg.timeout_secs),
            pool_size: cfg.pool_size as usize,
            idle: Mutex::new(Vec::new()),
            from,
        })
    }

    /// The deadline for one send (`timeout_secs`).
    pub fn deadline(&self) -> Duration {
        self.timeout
    }

    /// The `Message-ID` of the email for an outbox row: the same for every copy of that row,
    /// whichever instance sends it.
    pub fn message_id(&self, msg: &OutboxMessage) -> String {
        format!(
            "<sspr.{}.{}@{}>",
            msg.id,
            msg.created_at,
            self.from.email.domain()
        )
    }

    fn build_message(&self, msg: &OutboxMessage) -> Result<Message, SendError> {
        let to = parse_recipient(&msg.recipient)?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .message_id(Some(self.message_id(msg)))
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone())
            // The error names a header, never its content.
            .map_err(|e| {
                SendError::permanent("invalid_message", format!("cannot build the email: {e}"))
            })
    }

    /// A TCP connection to the relay with Nagle off, to the first of its addresses that
    /// accepts. Bounded by the send's deadline, like everything else in it.
    async fn tcp(&self) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            )
        }))
    }

    /// A new connection: TCP, implicit TLS, greeting, EHLO, STARTTLS, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failed> {
        let tcp = self.tcp().await.map_err(Failed::Connect)?;
        let stream: Box<dyn AsyncTokioStream> = match &self.implicit {
            Some((connector, name)) => Box::new(ImplicitTls(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(Failed::Connect)?,
            )),
            None => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let (SmtpTls::Starttls, Some(params)) = (self.tls, &self.tls_params) {
            // Required: fails when the relay does not offer STARTTLS.
            conn.starttls(params.clone(), &self.hello).await?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, c).await?;
        }
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(AsyncSmtpConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A parked connection that still answers NOOP, or a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, Failed> {
        loop {
            let parked = self.idle().pop();
            let Some((mut conn, since)) = parked else {
                return self.connect().await;
            };
            if since.elapsed() < IDLE_KEEP && conn.test_connected().await {
                return Ok(conn);
            }
            close(conn);
        }
    }

    /// One transaction. Returns right after the relay's answer to the end of DATA; the
    /// connection is parked for the next message without another round trip.
    async fn transaction(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), Failed> {
        let mut conn = self.connection().await?;
        conn.send(envelope, raw).await?;
        if !conn.has_broken() {
            let mut idle = self.idle();
            if idle.len() < self.pool_size {
                idle.push((conn, Instant::now()));
                return Ok(());
            }
        }
        close(conn);
        Ok(())
    }
}

/// Why a transaction failed.
#[derive(Debug)]
enum Failed {
    /// lettre's: a reply, or its I/O once connected.
    Smtp(lettre::transport::smtp::Error),
    /// Ours, before lettre has the connection: name lookup, TCP, implicit TLS.
    Connect(io::Error),
}

impl From<lettre::transport::smtp::Error> for Failed {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        Self::Smtp(e)
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smtp(e) => e.fmt(f),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
        }
    }
}

impl Failed {
    fn kind(&self) -> SmtpFailure {
        match self {
            Self::Smtp(e) => SmtpFailure::of(e),
            Self::Connect(e) if e.kind() == io::ErrorKind::TimedOut => SmtpFailure::Timeout,
            Self::Connect(e) if crate::tls::is_tls_error(e) => SmtpFailure::Tls,
            Self::Connect(_) => SmtpFailure::Connection,
        }
    }
}

/// A connection with implicit TLS, in the shape lettre takes a ready stream.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// The connector for implicit TLS: the same trust as STARTTLS (public roots plus `ca_file`).
fn implicit_tls(
    cfg: &SmtpConfig,
    host: &str,
) -> Result<(TlsConnector, ServerName<'static>), ConfigError> {
    let extra = match &cfg.ca_file {
        Some(path) => crate::tls::load_ca_file(path, "smtp.ca_file")?,
        None => Vec::new(),
    };
    let config = crate::tls::client_config(&extra, "smtp.ca_file")?;
    let name = ServerName::try_from(host.to_string()).map_err(|_| {
        ConfigError::new(format!(
            "smtp.host {host:?} is not a name or address a certificate can be checked against"
        ))
    })?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// Says QUIT and closes, in the background and within a few seconds: nobody waits for it.
fn close(mut conn: AsyncSmtpConnection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.abort()).await;
    });
}

fn tls_parameters(cfg: &SmtpConfig, host: &str) -> Result<TlsParameters, ConfigError> {
    let mut b = TlsParameters::builder(host.to_string())
        .certificate_store(CertificateStore::WebpkiRoots)
        .set_min_tls_version(TlsVersion::Tlsv12);
    if let Some(path) = &cfg.ca_file {
        for der in crate::tls::load_ca_file(path, "smtp.ca_file")? {
            let cert = Certificate::from_der(der.to_vec()).map_err(|e| {
                ConfigError::new(format!("smtp.ca_file: unusable certificate: {e}"))
            })?;
            b = b.add_root_certificate(cert);
        }
    }
    b.build_rustls()
        .map_err(|e| ConfigError::new(format!("smtp: TLS setup failed: {e}")))
}

/// The stored recipient must be exactly one bare address. lettre's `Mailbox` parser stops
/// after the first mailbox and ignores the rest, so the round trip is compared too: a list,
/// a display name or trailing text would otherwise slip through.
pub(crate) fn parse_recipient(raw: &str) -> Result<Mailbox, SendError> {
    let bad = || {
        SendError::permanent(
            "invalid_recipient",
            format!("recipient {} is not a single address", mask::email(raw)),
        )
    };
    let trimmed = raw.trim();
    let mb: Mailbox = trimmed.parse().map_err(|_| bad())?;
    if mb.name.is_some() || mb.email.to_string() != trimmed {
        return Err(bad());
    }
    Ok(mb)
}

/// What went wrong, reduced to what decides retrying. Kept apart from lettre's error type,
/// whose constructors are private, so the mapping can be tested on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpFailure {
    /// 4xx reply.
    Transient,
    /// 5xx reply.
    Permanent,
    Timeout,
    Tls,
    /// An unparsable reply.
    Protocol,
    /// lettre refused before sending (bad envelope etc.).
    Client,
    /// Refused, reset, unresolvable, pool shut down…
    Connection,
}

impl SmtpFailure {
    fn of(e: &lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() {
            Self::Permanent
        } else if e.is_transient() {
            Self::Transient
        } else if e.is_timeout() {
            Self::Timeout
        } else if e.is_tls() || crate::tls::is_tls_error(e) {
            Self::Tls
        } else if e.is_response() {
            Self::Protocol
        } else if e.is_client() {
            Self::Client
        } else {
            Self::Connection
        }
    }

    pub(crate) fn into_error(self, detail: String) -> SendError {
        match self {
            Self::Permanent => SendError::permanent("rejected", detail),
            Self::Client => SendError::permanent("invalid_message", detail),
            Self::Transient => SendError::retryable("deferred", detail),
            Self::Timeout => SendError::retryable("timeout", detail),
            // A certificate problem needs the admin, but the message may still go out within
            // its retries once they fix it; after the last one it is given up like any other.
            Self::Tls => SendError::retryable("tls", detail),
            Self::Protocol => SendError::retryable("protocol", detail),
            Self::Connection => SendError::retryable("connection", detail),
        }
    }
}

#[async_trait]
impl Sender for SmtpSender {
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        let email = self.build_message(msg)?;
        let raw = email.formatted();
        match tokio::time::timeout(self.timeout, self.transaction(email.envelope(), &raw)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // lettre's message is the server's reply text or an I/O error: no body, but a
                // reply may quote the recipient, which the log should only see masked.
                let detail = format!("smtp: {e}")
                    .replace(msg.recipient.trim(), &mask::email(&msg.recipient));
                Err(e.kind().into_error(detail))
            }
            // The transaction, and its connection, are dropped: nothing half-done is reused.
            Err(_) => Err(SmtpFailure::Timeout.into_error(format!(
                "smtp: no complete answer from {}:{} within {}s (smtp.timeout_secs)",
                self.host,
                self.port,
                self.timeout.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SmtpConfig {
        SmtpConfig {
            host: "smtp.example.com".into(),
            from: "sspr@example.com".into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_with_defaults_and_refuses_unknown_fields() {
        let c: SmtpConfig =
            toml::from_str("host = \"mx\"\nfrom = \"a@b.c\"\ntls = \"implicit\"").unwrap();
        assert_eq!(c.effective_port(), 465);
        assert_eq!(c.timeout_secs, 15);
        assert_eq!(c.pool_size, 4);
        assert!(toml::from_str::<SmtpConfig>("hots = \"mx\"").is_err());
        assert!(toml::from_str::<SmtpConfig>("tls = \"ssl\"").is_err());
        // A password in the file itself is refused: it belongs in password_file.
        assert!(toml::from_str::<SmtpConfig>("password = \"x\"").is_err());
        assert_eq!(base().effective_port(), 587);
    }

    #[test]
    fn validation_says_what_to_fix() {
        assert!(base().validate().is_ok());
        let e = SmtpConfig {
            tls: SmtpTls::None,
            ..base()
        }
        .validate()
        .unwrap_err();
        assert!(e.0.contains("allow_insecure"), "{e}");
        assert!(
            SmtpConfig {
                tls: SmtpTls::None,
                allow_insecure: true,
                ..base()
            }
            .validate()
            .is_ok()
        );
        assert!(
            SmtpConfig {
                host: " ".into(),
                ..base()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("smtp.host")
        );
        assert!(
            SmtpConfig {
                from: "nobody".into(),
                ..base()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("smtp.from")
        );
        assert!(
            SmtpConfig {
                username: "u".into(),
                ..base()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("password_file")
        );
        assert!(
            SmtpConfig {
                timeout_secs: 0,
                ..base()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmtpConfig {
                pool_size: 0,
                ..base()
            }
            .validate()
            .is_err()
        );
        let named = SmtpConfig {
            from: "Password reset <sspr@example.com>".into(),
            ..base()
        };
        assert_eq!(
            named.validate().unwrap().email.to_string(),
            "sspr@example.com"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let c = SmtpConfig {
            username: "u".into(),
            password: "hunter2".into(),
            ..base()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("<redacted>"), "{s}");
    }

    #[test]
    fn recipient_must_be_one_bare_address() {
        assert!(parse_recipient("alice@example.com").is_ok());
        assert!(parse_recipient(" alice@example.com ").is_ok());
        for bad in [
            "alice@example.com, mallory@evil.test",
            "alice@example.com mallory@evil.test",
            "Alice <alice@example.com>",
            "alice@example.com\r\nBcc: mallory@evil.test",
            "alice",
            "",
        ] {
            let e = parse_recipient(bad).unwrap_err();
            assert!(!e.retryable && e.class == "invalid_recipient", "{bad:?}");
            assert!(!e.detail.contains("mallory"), "{}", e.detail);
        }
    }

    #[test]
    fn classifies_failures() {
        let d = || "d".to_string();
        assert!(!SmtpFailure::Permanent.into_error(d()).retryable);
        assert!(!SmtpFailure::Client.into_error(d()).retryable);
        for f in [
            SmtpFailure::Transient,
            SmtpFailure::Timeout,
            SmtpFailure::Tls,
            SmtpFailure::Protocol,
            SmtpFailure::Connection,
        ] {
            assert!(f.into_error(d()).retryable, "{f:?}");
        }
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let e = SmtpSender::new(&base()).err().unwrap();
        assert!(e.0.contains("tokio runtime"));
    }

    /// With Nagle on, the end of DATA waited for the relay's delayed ACK on every message of a
    /// reused connection (a burst capped at ~170 messages/s, `bench/delivery.py`).
    #[tokio::test]
    async fn relay_sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = SmtpConfig {
            host: "localhost".into(),
            port: Some(listener.local_addr().unwrap().port()),
            tls: SmtpTls::None,
            allow_insecure: true,
            ..base()
        };
        let s = SmtpSender::new(&cfg).unwrap();
        // `localhost` may resolve to ::1 first, where nothing listens: the next address is
        // tried.
        let stream = s.tcp().await.unwrap();
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn refused_connection_is_retryable() {
        // Bind then drop: nothing listens on the port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            allow_insecure: true,
            timeout_secs: 5,
            ..base()
        };
        let s = SmtpSender::new(&cfg).unwrap();
        let msg = OutboxMessage::new(
            sspr_app::ports::Channel::Email,
            "bob@example.com",
            "Your code",
            "123456",
            0,
        );
        let e = s.send(&msg).await.unwrap_err();
        assert!(e.retryable, "{e:?}");
        assert!(!e.detail.contains("123456"));
    }
}
